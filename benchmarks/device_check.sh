#!/usr/bin/env bash
# Every GPU check of issue 13 in one command, for a GPU machine that is lent for minutes
# (docs/performance.md §9):
#
#   bash benchmarks/device_check.sh prepare        # here, in the workflow's environment (snakemake): writes .devcheck/
#   bash benchmarks/device_check.sh run [OUTDIR]   # on the GPU machine, from the repository root (needs no snakemake)
#   bash benchmarks/device_check.sh smoke [OUTDIR] # `run`'s steps on the CPU with tiny settings: checks the script
#
# `prepare` writes what `run` needs and a GPU machine may lack: the paper grid's `patchlesion cost` arguments
# (the grid that `snakemake cost` plans, the jobs' settings), the inputs of that plan made from what ships
# with the package (HAM10000's index and the authors' split from data/authors_ham_split.csv, the ISIC 2018
# test set's 1,511 images, whose number alone is used), and copies of the pure-Python packages
# pretrainedmodels and munch (SE-ResNeXt-50). `.devcheck/` is ignored by git; carry it to the machine.
#
# `run` needs python3 with torch (CUDA), pandas, scikit-learn, pillow, pyyaml and pytest. In order, each
# step with its own time limit (about 9 minutes in all, most of it the cost plan), the output of each in
# OUTDIR (default: device-check/):
#   env.txt       the machine: GPU, driver, CPU model and cores, Python, torch
#   tests.log     the CUDA tests that the CPU-only CI skips
#   loader.log    benchmarks/loader.py: DenseNet121 NC = 9 training step, fp32 against bf16 + channels-last
#   gpu_jobs.log  benchmarks/gpu_jobs.py: aggregate throughput of 1, 2 and 4 jobs on one GPU, best J
#   cost.log      `patchlesion cost` on the paper grid with that best J; cost.csv and cost.md beside it
set -uo pipefail
cd "$(dirname "$0")/.."

DEVCHECK=.devcheck
STEP_FAILED=0

step() {  # step NAME LIMIT_S LOG COMMAND...: run one check, keep its output, go on after a failure
    local name=$1 limit=$2 log=$3
    shift 3
    echo "== $name (at most ${limit} s) -> $log"
    local start=$SECONDS
    timeout --kill-after=10 "$limit" "$@" >"$log" 2>&1
    local rc=$?
    echo "   rc $rc after $((SECONDS - start)) s; last lines:"
    tail -n 6 "$log" | sed 's/^/   | /'
    if [ "$rc" -ne 0 ]; then STEP_FAILED=1; fi
}

prepare() {
    rm -rf "$DEVCHECK" && mkdir -p "$DEVCHECK/site"
    local site
    site=$(python3 -c "import os, pretrainedmodels; print(os.path.dirname(os.path.dirname(pretrainedmodels.__file__)))") || {
        echo "device_check prepare: pretrainedmodels is not installed here; run it in the project's environment (README: set-up)." >&2
        exit 2
    }
    cp -r "$site/pretrainedmodels" "$site/munch" "$DEVCHECK/site/"
    find "$DEVCHECK/site" -name __pycache__ -prune -exec rm -rf {} +
    # The paper grid's cost command as the workflow plans it; `snakemake -n -p` prints it without running anything.
    snakemake -n -p --config preset=paper -- cost >"$DEVCHECK/plan.txt" 2>&1 || {
        echo "device_check prepare: snakemake could not plan the paper grid; see $DEVCHECK/plan.txt" >&2
        exit 2
    }
    python3 - "$DEVCHECK" <<'EOF'
import json
import shlex
import sys
from pathlib import Path

import pandas as pd

from patchlesion.data.splits import PUBLISHED_PART_TO_INT, load_published_table
from patchlesion.method.classes import CLASSES, DX_TO_CLASS

out = Path(sys.argv[1])
line = next(line for line in (out / "plan.txt").read_text().splitlines() if "patchlesion cost " in line)
words = shlex.split(line.split("patchlesion cost ", 1)[1])
words = words[: words.index("--csv")]  # --csv, --markdown and the log redirection are the job's own
files = {
    "results/ham10000/index.csv": out / "ham_index.csv",
    "results/ham10000/split.csv": out / "ham_split.csv",
    "results/isic2018_test/index.csv": out / "isic_test_index.csv",
}
unknown = [w for w in words if w.startswith("results/") and w not in files]
if unknown:
    sys.exit(f"device_check prepare: the cost command reads files this script does not make: {unknown}")
(out / "cost_args.json").write_text(json.dumps([str(files.get(w, w)) for w in words]) + "\n")
table = load_published_table()
index = table[["image_id", "lesion_id", "dx", "dx_type"]].copy()
index["class_name"] = index["dx"].map(DX_TO_CLASS)
index["label"] = index["class_name"].map(CLASSES.index)
index.to_csv(files["results/ham10000/index.csv"], index=False)
split = pd.DataFrame({"image_id": table["image_id"], "part": table["part"].map(PUBLISHED_PART_TO_INT)})
split.to_csv(files["results/ham10000/split.csv"], index=False)
test = pd.DataFrame({"image_id": [f"ISIC_{i:07d}" for i in range(34524, 34524 + 1511)], "label": 0})
test.to_csv(files["results/isic2018_test/index.csv"], index=False)
grid = json.loads(words[words.index("--grid") + 1])
print(f"prepared {out}/: the paper grid ({len(grid['tables'])} tables), {len(index)} HAM10000 images, {len(test)} test images")
EOF
    du -sh "$DEVCHECK"
}

check() {  # check OUTDIR MODE: MODE gpu (the real checks) or smoke (the same steps on the CPU, tiny)
    local out=$1 mode=$2
    [ -f "$DEVCHECK/cost_args.json" ] || {
        echo "device_check: $DEVCHECK/cost_args.json is missing; run 'bash benchmarks/device_check.sh prepare' first (and carry $DEVCHECK)." >&2
        exit 2
    }
    mkdir -p "$out"
    export PYTHONPATH="$PWD/src:$PWD/$DEVCHECK/site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
    local device=cuda loader=(--images 100 --rounds 2) jobs=() cost=()
    if [ "$mode" = smoke ]; then
        device=cpu
        loader=(--images 60 --rounds 1 --train-steps 1 --workers 2)
        jobs=(--device cpu --force --backbone tiny --crop-size 32 --steps 2 --jobs 1 2)
        cost=(--image-size 160 120 --crop-size 80)  # the paper grid at a size the CPU times in minutes
    fi
    {
        date -u
        nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1 || echo "nvidia-smi: not here"
        grep -m1 "model name" /proc/cpuinfo
        echo "cores: $(nproc)"
        python3 -c "import sys, torch; print('python', sys.version.split()[0], '| torch', torch.__version__, '| cuda', torch.version.cuda,
'| device', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none', '| bf16', torch.cuda.is_available() and torch.cuda.is_bf16_supported())"
        git log -1 --format='commit %h %s' 2>/dev/null || true
    } >"$out/env.txt" 2>&1
    cat "$out/env.txt"

    step "CUDA tests" 90 "$out/tests.log" \
        python3 -m pytest -p no:cacheprovider -o addopts="" -q -rs tests/test_accel.py tests/test_cache.py tests/test_strategies.py \
        -k "cuda or images_device"
    step "training step: fp32 against bf16 + channels-last" 100 "$out/loader.log" \
        python3 benchmarks/loader.py --device "$device" "${loader[@]}"
    step "jobs per GPU" 130 "$out/gpu_jobs.log" python3 benchmarks/gpu_jobs.py "${jobs[@]}"
    local best
    best=$(sed -n 's/^best J: \([0-9]*\).*/\1/p' "$out/gpu_jobs.log" | tail -n 1)
    mapfile -t args < <(python3 -c "import json; print('\n'.join(json.load(open('$DEVCHECK/cost_args.json'))))")
    step "cost plan of the paper grid, ${best:-1} job(s) per device" 260 "$out/cost.log" \
        python3 -m patchlesion.cli cost "${args[@]}" --device "$device" --steps 3 --jobs-per-device "${best:-1}" "${cost[@]}" \
        --csv "$out/cost.csv" --markdown "$out/cost.md"
    echo "== device check done in $SECONDS s; every step passed: $([ $STEP_FAILED -eq 0 ] && echo yes || echo no)"
    return $STEP_FAILED
}

case "${1:-}" in
    prepare) prepare ;;
    run) check "${2:-device-check}" gpu ;;
    smoke) check "${2:-device-check-smoke}" smoke ;;
    *)
        echo "usage: bash benchmarks/device_check.sh prepare | run [OUTDIR] | smoke [OUTDIR]" >&2
        exit 2
        ;;
esac
