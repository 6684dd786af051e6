"""How long one studio draw takes: `synth.paint_one` on a 256x256 image with the `small` preset
(weights do not change the cost, so an untrained generator is timed), on this machine's threads.

    python benchmarks/studio_draw.py [--size 256] [--repeats 10] [--precision bf16]

Prints the median and the spread of the wall times, after two warm-up draws.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time

import numpy as np
import torch

from defectgen.models import presets
from defectgen.painter import paint_one


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--precision", choices=("bf16", "fp32"), default="bf16")
    parser.add_argument("--preset", default="small")
    args = parser.parse_args()
    spec = presets.PRESETS[args.preset]
    G = spec.generator.build(1, 4).eval().requires_grad_(False).to(memory_format=torch.channels_last)
    rng = np.random.default_rng(0)
    image = rng.integers(60, 200, (args.size, args.size, 1), dtype=np.uint8)
    masks = np.zeros((4, args.size, args.size), dtype=bool)
    masks[2, args.size // 3 : args.size // 2, args.size // 4 : 3 * args.size // 4] = True
    amp = (
        torch.autocast("cpu", dtype=torch.bfloat16) if args.precision == "bf16" else contextlib.nullcontext()
    )
    times = []
    for repeat in range(args.repeats + 2):
        start = time.perf_counter()
        paint_one(G, image, masks, repeat, 4, torch.device("cpu"), amp)
        if repeat >= 2:
            times.append(time.perf_counter() - start)
    result = {
        "preset": args.preset,
        "size": args.size,
        "precision": args.precision,
        "threads": torch.get_num_threads(),
        "median_s": round(statistics.median(times), 3),
        "min_s": round(min(times), 3),
        "max_s": round(max(times), 3),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
