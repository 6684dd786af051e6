#!/usr/bin/env bash
# The GPU checks, as one short run on a machine with one CUDA GPU (about 8 minutes on an H100/H200):
#
#     bash benchmarks/gpu_check.sh MAGNETIC_TILE_DIR OUT_DIR
#
# 1. a real training run at 256 px: the `lama` preset on magnetic tile (50/50 split, seed 0),
#    batch 8, bf16, 300 steps, through the CLI (metrics.jsonl and the last sample grid are kept);
# 2. benchmarks/train_step.py on cuda, bf16, every preset, batch 8 (and lama in fp32);
# 3. benchmarks/synth.py on cuda, bf16, 1600x256 strips, every preset, batch 8;
# 4. `evaluate --device cuda` at the mission's settings: `real` and `control`, 2 seeds, the
#    default U-Net and 2,000 steps (its results.json and wall time: the GPU's cost per run,
#    and whether its scores agree with the CPU's `benchmarks/noise_floor.json` seeds 0 and 1).
# Multi-GPU DDP (NCCL) needs two GPUs: one process per GPU; it is not checked here.
# Each part has its own time limit, so one that hangs does not take the others with it.
# Uses the Python found as `python3` (it must have torch with CUDA, kornia, typer, rich,
# scipy, opencv, pyyaml, matplotlib); the package is taken from src/ without installing.
set -u
DATA=${1:?usage: gpu_check.sh MAGNETIC_TILE_DIR OUT_DIR}
OUT=${2:?usage: gpu_check.sh MAGNETIC_TILE_DIR OUT_DIR}
mkdir -p "$OUT"
export PYTHONPATH=$PWD/src:${PYTHONPATH:-} PYTHONUNBUFFERED=1
RUN=$(mktemp -d)
part() { echo "== $1 ($(date +%T))"; }

part "machine"
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(), 'bf16', torch.cuda.is_bf16_supported())"
    nproc
} | tee "$OUT/machine.txt"

part "real training, lama preset, 256 px, 300 steps"
timeout 200 python3 -m defectgen split "$DATA" --out "$RUN/split.json" --test-fraction 0.5 --seed 0 >/dev/null
start=$(date +%s)
timeout 200 python3 -m defectgen train "$DATA" --split "$RUN/split.json" --out "$RUN/lama256" --preset lama \
    --device cuda --steps 300 --set model.resolution=256 --set batch_size=8 --set sample_every=300 \
    --set checkpoint_every=300 --set log_every=10
echo "train exit $? after $(($(date +%s) - start)) s (start-up included)"
cp "$RUN/lama256/metrics.jsonl" "$OUT/train_lama256_metrics.jsonl" 2>/dev/null
cp "$(ls "$RUN"/lama256/samples/*.png 2>/dev/null | tail -1)" "$OUT/train_lama256_samples.png" 2>/dev/null

part "train step"
timeout 200 python3 benchmarks/train_step.py --device cuda --batch 8 --steps 12 \
    --runs small:128:bf16 lama:256:bf16 big:256:bf16 lama:256:fp32 2>&1 | tee "$OUT/train_step.txt"

part "synthesis"
timeout 120 python3 benchmarks/synth.py --device cuda --batch 8 --n 32 --runs small:bf16 lama:bf16 big:bf16 2>&1 | tee "$OUT/synth.txt"

part "evaluate on the GPU: real and control, 2 seeds, 2,000 steps"
timeout 60 python3 -m defectgen split "$DATA" --out "$RUN/split25.json" --test-fraction 0.5 --seed 0 \
    --label-fraction 0.25 >/dev/null
start=$(date +%s)
timeout 300 python3 -m defectgen evaluate "$DATA" --split "$RUN/split25.json" --out "$RUN/eval_gpu" \
    --arms real,control --seeds 2 --device cuda --set curve=false --set quality_samples=0
echo "evaluate exit $? after $(($(date +%s) - start)) s (4 runs, start-up included)"
cp "$RUN/eval_gpu/results.json" "$OUT/evaluate_cuda_results.json" 2>/dev/null

part "done"
