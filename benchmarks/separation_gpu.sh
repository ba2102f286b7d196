#!/usr/bin/env bash
# Separation benchmark on one GPU: separators train side by side on the same GPU for MINUTES
# of training each. By default the U-Net at width 64 and the ResUNet at width 96, which both
# separate 10,000 mixtures in under a minute on 2 CPU cores; RUNS="unet:64" trains one alone.
# Logs and a tarball of every result file go to OUT; the better model's separator_model.pth
# goes there too, in 15 MiB parts (cat OUT/best_model.pth.part* > separator_model.pth).
#
#   benchmarks/separation_gpu.sh path/to/cifar10-jpeg.zip OUT [MINUTES]
#   RUNS="unet:32 resunet:32" EXTRA="--train-limit 2000 --test-limit 500 --device cpu" \
#       benchmarks/separation_gpu.sh ../shared/datasets/cifar10-jpeg.zip /tmp/out 0.05  # smoke
#
# DATA may also be a .tar.xz of the zip's files. The zip is 60 MiB, mostly the same JPEG
# headers 60,000 times over; solid xz compression packs the identical files into 18 MiB, so a
# trained model fits beside them under a device's 64 MiB upload limit:
#   unzip -q cifar10-jpeg.zip -d /tmp/c && tar -C /tmp/c -cf - . | xz -9 -T2 > cifar10-jpeg.tar.xz
# INIT_FROM=separator_model.pth trains that model further (one run, its model and width, a
# fresh schedule peaking at LR, default 2e-3). DEADLINE_S=540 stops training that is
# still running 540 s after the script started, so a slow start cannot cost the whole device
# call: the best weights so far (best_separator.pth) still come back in parts.
#   RUNS=unet:64 INIT_FROM=unet64.pth LR=1e-3 benchmarks/separation_gpu.sh c.tar.xz OUT 6
set -u
start=$SECONDS
data=$(realpath "$1")
out=$(realpath -m "$2")
minutes=${3:-5.5}
work=${WORK:-/tmp/separation_gpu}
python=${PYTHON:-python3}
mkdir -p "$out" "$work"
if [[ $data == *.tar.xz ]]; then  # unpack once; the folder loads exactly as the zip does
    rm -rf "$work/data" && mkdir -p "$work/data" && tar -xJf "$data" -C "$work/data" || exit 1
    data=$work/data
fi
init=()
if [ -n "${INIT_FROM:-}" ]; then
    init=(--init-from "$(realpath "$INIT_FROM")")
fi
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 LATENTLAB_CACHE=$work/cache

(nvidia-smi --query-gpu=name,utilization.gpu,memory.used --format=csv -l 20 >"$out/gpu.log" 2>&1 &)
# decode the images once, into the cache every run reads
$python -c "import sys; sys.path.insert(0, 'src'); from latentlab.data import load_dataset; \
import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available()); \
load_dataset('folder:$data', None, seed=0)" || exit 1

common=(--protocols full --minutes "$minutes" --threads 4 --batch-size 256
        --learning-rate "${LR:-2e-3}" --dataset "folder:$data" "${init[@]}" ${EXTRA:-})
guard=()
if [ -n "${DEADLINE_S:-}" ]; then  # SIGTERM makes training save its state and stop
    left=$((DEADLINE_S - (SECONDS - start)))
    guard=(timeout -s TERM -k 30 $((left > 1 ? left : 1)))
fi
for run in ${RUNS:-unet:64 resunet:96}; do
    model=${run%%:*} width=${run##*:}
    rm -rf "${work:?}/$model$width"  # a run left by an earlier call would be taken for this one's
    "${guard[@]}" $python benchmarks/separation.py --models "$model" --width "$width" \
        --out "$work/$model$width" "${common[@]}" >"$out/$model$width.log" 2>&1 &
done
wait

# both runs in one JSON and one PSNR-time figure; print the name of the better run
best=$($python - "$work" <<'EOF'
import json, sys
from pathlib import Path
sys.path.insert(0, "benchmarks")
import separation
runs = Path(sys.argv[1])
results = {p.parent.name: json.loads(p.read_text()) for p in sorted(runs.glob("*/separation*.json"))}
if results:
    rows = [run for result in results.values() for run in result["runs"]]
    merged = {**next(iter(results.values())), "runs": rows, "side_by_side_on_one_gpu": len(rows) > 1}
    separation.write_json_atomic(merged, runs / "separation-gpu.json")
    separation.plot_curves(rows, runs / "separation-gpu_curve.png")
    print(max(results, key=lambda name: results[name]["runs"][0]["test_psnr"]))
EOF
)
best=$(echo "$best" | tail -1)
echo "better model: ${best:-none}"
model_file=
if [ -n "$best" ]; then
    model_file=$(ls "$work/$best/separation_runs_full"*/separation/*/separator_model.pth)
else  # no run finished: the best weights an interrupted run kept
    model_file=$(ls -t "$work"/*/separation_runs_full*/separation/*/best_separator.pth \
                 2>/dev/null | head -1)
    echo "no run finished; best weights so far: ${model_file:-none}"
fi
if [ -n "$model_file" ]; then
    split -b 15M -d "$model_file" "$out/best_model.pth.part"
fi
tar czf "$out/results.tar.gz" -C "$work" --exclude='*.pth' --exclude=./cache --exclude=./data .
pkill -f "nvidia-smi --query-gpu" 2>/dev/null
ls -la "$out"
