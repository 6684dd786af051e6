#!/usr/bin/env bash
# Generator variants trained side by side on one GPU for a fixed wall time, for the grid-artifact
# question of issue #3 (about 8 minutes on an H100/H200):
#
#     bash benchmarks/gpu_pilots.sh DATA SPLIT OUT_DIR [SECONDS] [DEVICE]
#
# DATA/SPLIT: a dataset and split file (on the device machine: the magnetic tile defect
# folders and the mission split restricted to them, since the transfer is capped at 64 MiB;
# GAN training reads only the training half's defects, so the runs see what they would see
# on the full data). Three runs of the small preset at 128 px with the defaults of 2026-11-27,
# no decoder noise, differing in one generator setting each:
#   control   --set model.generator.upsampling=transposed   (the first decoder: 4x4 stride-2 transposed convolutions)
#   resize    --set model.generator.upsampling=resize       (bilinear 2x + 3x3 convolution)
#   ratio05   control + --set model.generator.ratio_g=0.5   (half instead of 3/4 of the bottleneck Fourier-global)
# Each is killed after SECONDS (default 420); checkpoints every 250 steps. At the end the EMA
# generator of the last step that all three reached is written as a slim fp16 checkpoint
# (`ema`, config, classes: what `defectgen synth` loads), in two files where one would pass the
# device tool's 16 MiB file limit (benchmarks/join_generator_parts.py joins them); sample grids
# and metrics go into one tar file. EXTRA (environment) is appended to every run's options.
set -u
DATA=${1:?usage: gpu_pilots.sh DATA SPLIT OUT_DIR [SECONDS] [DEVICE]}
SPLIT=${2:?usage}
OUT=${3:?usage}
SECONDS_EACH=${4:-420}
DEVICE=${5:-cuda}
mkdir -p "$OUT"
export PYTHONPATH=$PWD/src:${PYTHONPATH:-} PYTHONUNBUFFERED=1 OMP_NUM_THREADS=4
RUN=$(mktemp -d)
echo "== machine ($(date +%T))"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | tee "$OUT/machine.txt"
python3 -c "import torch; print('torch', torch.__version__)" | tee -a "$OUT/machine.txt"

COMMON="--preset small --device $DEVICE --steps 100000 --set sample_every=500 --set checkpoint_every=250 --set keep_checkpoints=40 --set log_every=50 ${EXTRA:-}"
OLD="--set model.generator.upsampling=transposed"
declare -A VARIANT=([control]="$OLD" [resize]="--set model.generator.upsampling=resize" [ratio05]="$OLD --set model.generator.ratio_g=0.5")
echo "== training side by side for $SECONDS_EACH s ($(date +%T))"
for name in control resize ratio05; do
    # shellcheck disable=SC2086
    timeout "$SECONDS_EACH" python3 -m defectgen train "$DATA" --split "$SPLIT" --out "$RUN/$name" \
        $COMMON ${VARIANT[$name]} >"$RUN/$name.log" 2>&1 &
done
wait
echo "== exporting ($(date +%T))"
python3 - "$RUN" "$OUT" <<'EOF'
import re
import sys
from pathlib import Path

import torch

run, out = Path(sys.argv[1]), Path(sys.argv[2])
names = ["control", "resize", "ratio05"]
steps = {n: {int(m.group(1)) for p in (run / n / "checkpoints").glob("step_*.pt")
             if (m := re.match(r"step_(\d+)\.pt", p.name))} for n in names}
common = max(set.intersection(*steps.values()))
print("steps reached:", {n: max(s) for n, s in steps.items()}, "-> exporting step", common)
limit = 15 * 2**20
for n in names:
    state = torch.load(run / n / "checkpoints" / f"step_{common:07d}.pt", map_location="cpu", weights_only=True)
    ema = {k: v.half() if v.is_floating_point() else v for k, v in state["ema"].items()}
    slim = {k: state[k] for k in ("config", "classes", "image_channels")}
    size = sum(v.numel() * v.element_size() for v in ema.values())
    keys = list(ema)
    parts = [keys] if size < limit else [keys[: len(keys) // 2], keys[len(keys) // 2 :]]
    for i, part in enumerate(parts):
        torch.save({**slim, "ema": {k: ema[k] for k in part}, "part": i, "parts": len(parts), "step": common},
                   out / f"{n}_ema_{i}.pt")
EOF
for name in control resize ratio05; do
    cp "$RUN/$name/metrics.jsonl" "$RUN/$name.metrics.jsonl" 2>/dev/null
    mkdir -p "$RUN/grids/$name" && cp "$RUN/$name"/samples/*.png "$RUN/grids/$name/" 2>/dev/null
    tail -c 2000 "$RUN/$name.log"
done
tar -C "$RUN" -cf "$OUT/pilots.tar" grids control.log resize.log ratio05.log \
    control.metrics.jsonl resize.metrics.jsonl ratio05.metrics.jsonl
ls -la "$OUT"
echo "== done ($(date +%T))"
