#!/usr/bin/env bash
# The GPU measurements of the speed issue, in pieces that each fit one call of the device tool
# (10 minutes a call, 30 minutes a session, 64 MiB carried; the machine has its own torch with
# CUDA and no network, and ../shared/data does not travel).
#
# Here, once:
#   bash benchmarks/gpu_session.sh prepare    # 400 + 20 real Cityscapes pairs -> device_data/ (git-ignored, ~15 MB)
# Then one device-tool call per step, each with carry ["device_data"]:
#   bash benchmarks/gpu_session.sh bench      # bench.py: fp32 eager, then bf16 + channels-last + compile + CUDA graphs
#   bash benchmarks/gpu_session.sh numerics   # numerics.py: every option against fp32 on 1000 real steps at 256 px
#   bash benchmarks/gpu_session.sh schedule   # the facades schedule: 80,000 steps (400 pairs x 200 epochs), timed
#   bash benchmarks/gpu_session.sh schedule   # (again, if the first call ran out of time: it resumes)
# Results land in $OUT (the device tool brings them back); copy them into benchmarks/results/
# and the figures, device and date into benchmarks/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=device_data/cityscapes
OUT=${OUT:-runs/gpu_out}
mkdir -p "$OUT"
FAST=(--precision bf16 --channels-last --compile default --cuda-graphs)

install() {
    pip install --no-deps -q -e . 2>&1 | tail -1 || true
    python -c "import torch, pix2pix; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
}

case "${1:-}" in
prepare)
    src=../shared/data/cityscapes
    mkdir -p "$DATA/train" "$DATA/val"
    mapfile -t train < <(find "$src/train" -maxdepth 1 -type f | sort)
    mapfile -t val < <(find "$src/val" -maxdepth 1 -type f | sort)
    cp -n "${train[@]:0:400}" "$DATA/train/"
    cp -n "${val[@]:0:20}" "$DATA/val/"
    du -sh "$DATA"
    ;;
bench)
    install
    python benchmarks/bench.py --device cuda --data "$DATA" --profile --out "$OUT/bench_cuda"
    python benchmarks/bench.py --device cuda --data "$DATA" "${FAST[@]}" --out "$OUT/bench_cuda_fast"
    ;;
numerics)
    install
    python benchmarks/numerics.py --device cuda --data "$DATA" --size 256 --steps 1000 --images 400 --val 20 \
        --work runs/numerics --out "$OUT/numerics_cuda_256px"
    ;;
schedule)
    install
    run=runs/facades_schedule
    # 400 pairs x (100 + 100) epochs at batch 1 = the paper's facades schedule, 80,000 steps
    args=(--data "$DATA" --direction BtoA --epochs 100 --epochs-decay 100 --device cuda --cache device
        --sample-every 10000 --checkpoint-every 10000 --no-progress)
    started=$(date +%s)
    if [ -f "$run/checkpoint.pt" ]; then
        timeout 560 python -m pix2pix train --resume "$run" --no-progress || true
    else
        timeout 560 python -m pix2pix train "${args[@]}" "${FAST[@]}" --run-dir "$run" || true
    fi
    echo "this call: $(($(date +%s) - started)) s"
    tail -n 3 "$run/log.jsonl"
    cp "$run/log.jsonl" "$run/config.json" "$OUT/" 2>/dev/null || true
    ;;
*)
    echo "usage: bash benchmarks/gpu_session.sh prepare|bench|numerics|schedule" >&2
    exit 2
    ;;
esac
