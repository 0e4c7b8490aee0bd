#!/usr/bin/env bash
# Issue 14 on a lent GPU: the reduced reproduction sets, trained and scored there, in calls of the
# device tool (64 MiB carried each way; the machine has its own torch with CUDA, no network, and
# ../shared/data does not travel). Models stay on the device; only the reports come back.
#
# Here, once:
#   bash benchmarks/gpu_reproduce.sh prepare   # Cityscapes at the reduced protocol's load size -> device_data/cityscapes143 (~51 MB)
# Then one device-tool call per step, each with carry ["device_data"]:
#   bash benchmarks/gpu_reproduce.sh segmenter # the FCN-score segmenter of the reduced recipe (15,000 steps at 128 px)
#   bash benchmarks/gpu_reproduce.sh sets      # every reduced set, in order, until the call's time is spent (resumes)
# Results land in $OUT: copy the reports into reports/ with "GPU, DEVICE, DATE" beside them.
#
# What differs from the CPU runs: each half of every pair is resized 256 -> 143 px here (bicubic,
# as the reduced protocol's jitter does) and stored as JPEG quality 95, so the device resizes
# nothing and the data fit in one carry; the JPEG re-encoding changes pixels slightly.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=device_data/cityscapes143
OUT=${OUT:-runs/gpu_out}
WORK=${WORK:-runs/reproduce_gpu}
BUDGET=${BUDGET:-540}  # seconds of one call spent on training
mkdir -p "$OUT"

install() {
    pip install --no-deps -q -e . 2>&1 | tail -1 || true
    python -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no cuda')"
}

case "${1:-}" in
prepare)
    python - "$DATA" <<'EOF'
import sys
from pathlib import Path
from PIL import Image
src, out = Path("../shared/data/cityscapes"), Path(sys.argv[1])
for split in ("train", "val"):
    (out / split).mkdir(parents=True, exist_ok=True)
    for path in sorted((src / split).glob("*.jpg")):
        pair = Image.open(path).convert("RGB")
        w, h = pair.size
        halves = [pair.crop((0, 0, w // 2, h)), pair.crop((w // 2, 0, w, h))]
        small = Image.new("RGB", (286, 143))
        for i, half in enumerate(halves):
            small.paste(half.resize((143, 143), Image.BICUBIC), (143 * i, 0))
        small.save(out / split / path.name, quality=95)
(out / "labels.json").write_bytes((src / "labels.json").read_bytes())
EOF
    du -sh device_data
    ;;
segmenter)
    install
    python -m pix2pix evaluate train-segmenter --data "$DATA" --size 128 --steps 15000 \
        --out "$WORK/segmenter-128px-15000steps" --device cuda --quiet | tee "$OUT/segmenter.txt"
    ;;
sets)
    install
    started=$(date +%s)
    for set in table1 figure7 table3 losses augmentation batch_size table2 table6 seeds; do
        left=$((BUDGET - ($(date +%s) - started)))
        [ "$left" -gt 30 ] || break
        # a stop (timeout's SIGTERM) ends the row at a checkpoint; the next call resumes it
        timeout "$left" python -m pix2pix reproduce "$set" --data "$DATA" --out "$WORK" --device cuda \
            --set workers=4 --quiet > "$OUT/$set.txt" 2>&1 || { echo "$set: stopped (resumes next call)"; break; }
        cp "$WORK/$set-reduced.md" "$WORK/$set-reduced.json" "$OUT/"
        echo "$set: done in $(($(date +%s) - started)) s"
    done
    ;;
*)
    echo "usage: $0 prepare | segmenter | sets" >&2
    exit 2
    ;;
esac
