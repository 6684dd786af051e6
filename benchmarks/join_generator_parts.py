"""Join the slim generator checkpoints that `gpu_pilots.sh` splits for the transfer.

    python benchmarks/join_generator_parts.py FOLDER_WITH_PARTS OUT_FOLDER

`NAME_ema_0.pt`, `NAME_ema_1.pt`, ... -> `OUT_FOLDER/NAME.pt`, a checkpoint with the EMA
generator (fp16 weights; loading copies them into the fp32 model), its config and classes:
what `defectgen synth --checkpoint` and `defectgen evaluate --checkpoint` read.
"""

from __future__ import annotations

import re
import sys
from collections import defaultdict
from pathlib import Path

import torch

from defectgen.gan.checkpoint import FORMAT, save_checkpoint


def main(src: Path, out: Path) -> None:
    parts: dict[str, list[Path]] = defaultdict(list)
    for path in sorted(src.glob("*_ema_*.pt")):
        parts[re.sub(r"_ema_\d+\.pt$", "", path.name)].append(path)
    out.mkdir(parents=True, exist_ok=True)
    for name, paths in parts.items():
        states = [torch.load(p, map_location="cpu", weights_only=True) for p in paths]
        if len(states) != states[0]["parts"]:
            raise SystemExit(f"{name}: {len(states)} of {states[0]['parts']} parts found in {src}")
        joined = {k: states[0][k] for k in ("config", "classes", "image_channels", "step")}
        joined["format"] = FORMAT
        joined["ema"] = {k: v for state in states for k, v in state["ema"].items()}
        save_checkpoint(joined, out / f"{name}.pt")
        print(f"{out / name}.pt: step {joined['step']}, {len(joined['ema'])} tensors")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
