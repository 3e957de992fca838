#!/usr/bin/env bash
# One GPU check in under 5 minutes: what batching and the fast lane give on a GPU machine.
#
#   bash benchmarks/gpu_check.sh            # uses .venv/bin/python, or $PYTHON
#
# Prints, each step capped by a timeout so the whole run stays under 5 minutes:
#   1. the GPU and torch's view of it;
#   2. CycleGAN: 8 jobs as one batch (what @serve.batch hands a FastWorker) vs one at a time,
#      at 256 and 512 px (on these CPUs batching was 0.76x, so it did not pay there);
#   3. feed-forward instant passes: seconds per image, and N at once vs one after another;
#   4. NST refinement at 512 px: seconds per preset;
#   5. the fast lane end to end: instant jobs idle and while a 512-px balanced refinement runs,
#      on the local and the Ray backend;
#   6. only with RUNTIMES=1 (it takes the run past 5 minutes): onnxruntime vs the PyTorch rebuild
#      of the arbitrary-style networks (benchmarks/feedforward_runtime.py) on the GPU.
# Weights: random VGG19/CycleGAN in the official layouts (same compute as the real ones) and the
# real feed-forward ONNX networks (pulled once into .cache/models).
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" RAY_USAGE_STATS_ENABLED=0
DEVICE="${DEVICE:-cuda}"
step() { printf '\n=== %s\n' "$*"; }
run() { local limit=$1; shift; timeout "$limit" "$@" || echo "(step ended with status $?)"; }
started=$SECONDS

step "1. GPU"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
"$PY" -c 'import torch, onnxruntime as o; print("torch", torch.__version__, "cuda:", torch.cuda.is_available(),
torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-"); print("onnxruntime providers:", o.get_available_providers())'

step "2. CycleGAN batching (8 jobs, batch vs one at a time)"
for size in 256 512; do run 45 "$PY" benchmarks/cyclegan_batching.py --jobs 8 --size "$size" --rounds 2 --device "$DEVICE"; done

step "3. feed-forward instant passes (per image; 8 at once vs one after another)"
run 60 "$PY" benchmarks/fast_lane.py --skip-servers --device "$DEVICE" --concurrent 8 --size 1024

step "4. NST refinement at 512 px (seconds per preset, after a warm-up)"
models=$(mktemp -d)
run 90 "$PY" - "$models" "$DEVICE" <<'PYEOF'
import sys, time
from pathlib import Path
from stylebot.assets import sample_path
from stylebot.imaging import load_image_file, resize_long_side
from stylebot.ml.nst import NSTOptions, stylize
from stylebot.ml.synthetic import make_models_dir
from stylebot.ml.weights import load_backbone
models, device = make_models_dir(Path(sys.argv[1])), sys.argv[2]
net = load_backbone("vgg19", models_dir=models, device=device)
content = resize_long_side(load_image_file(sample_path("chelsea.jpg")), 512)
style = resize_long_side(load_image_file(sample_path("texture_brick.jpg")), 512)
stylize(content, [style], NSTOptions(size=128, preset="fast"), backbone=net)  # warm-up
for preset in ("fast", "balanced", "quality"):
    started = time.perf_counter()
    stylize(content, [style], NSTOptions(size=512, preset=preset), backbone=net)
    print(f"NST {preset:<8} 512 px on {device}: {time.perf_counter() - started:.2f} s")
PYEOF

step "5. fast lane end to end (local and ray)"
run 100 "$PY" benchmarks/fast_lane.py --device "$DEVICE" --runs 3

if [[ "${RUNTIMES:-0}" == 1 ]]; then
  step "6. feed-forward runtimes: onnxruntime vs the PyTorch rebuild"
  run 180 "$PY" benchmarks/feedforward_runtime.py --device "$DEVICE" --runs 3
fi

printf '\n=== done in %d s\n' $((SECONDS - started))
