#!/usr/bin/env bash
# Every GPU figure of docs/benchmarks.md ("GPU nodes"), measured in one run on a CUDA machine.
#
#   benchmarks/gpu_checks.sh prepare   # here, where pip reaches PyPI: wheels into .whl/
#   benchmarks/gpu_checks.sh           # there, from the repository root: about 8 minutes
#
# The run, in order, each step under its own time limit so that one hang costs only itself:
#   1. the CUDA equivalence test: population vs torch.optim (fused) within 1e-5, fp32
#      (tests/unit/test_population_optimizer.py, its cuda cases; a skip counts as a failure);
#   2. benchmarks/population.py --breakdown --device cuda: model vs update per step, K=1..128;
#   3. benchmarks/population.py --device cuda, K = 1, 8, 32, 128 against K sequential fused
#      torch.optim trials: trials per minute, speedup and peak GPU memory;
#   4. adamtune tune on each built-in workload on cuda (examples/*.yaml), and digits_mlp with
#      population: auto (the K chosen on this GPU, and why, is the log's "population auto" line).
# Results go to $OUT when set (the device tool's folder), else benchmarks/results/gpu-DATE:
# checks.log (the device, versions, every step's output and a PASS/FAIL line per step) and one
# JSON per measurement, 7 files in all. Exit status: the number of failed steps.
#
# A machine whose python3 has torch but not this project's other dependencies gets them from
# .whl/ (written by `prepare`: Python 3.12 manylinux wheels of the versions in the venv here);
# nothing is fetched on the GPU machine. With the device tool: carry [".whl"].
#
# Smoke test of the script itself, without a GPU (the equivalence step then fails, as it must):
#   DEVICE=cpu SIZES=1,2 STEPS=20 TRIALS=3 PYTHON=.venv/bin/python benchmarks/gpu_checks.sh
set -u -o pipefail

WHEELS=(optuna==5.1.0 alembic==1.20.1 Mako==1.4.3 colorlog==6.12.0 SQLAlchemy==2.1.9
  greenlet==3.5.6 pydantic==2.14.4 pydantic_core==2.50.5 annotated-types==0.8.0
  typing-inspection==0.4.5 pydantic-settings==2.16.3 python-dotenv==1.2.4
  schedulefree==1.4.1 prodigyopt==1.1.2)

if [[ "${1:-}" == "prepare" ]]; then
  python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl "${WHEELS[@]}" || exit 1
  du -sh .whl
  exit 0
fi

PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
SIZES=${SIZES:-1,8,32,128}
STEPS=${STEPS:-300}
TRIALS=${TRIALS:-}  # empty: the example files' own budgets
RESULTS=${OUT:-benchmarks/results/gpu-$(date -u +%Y%m%d-%H%M)}
mkdir -p "$RESULTS"
LOG="$RESULTS/checks.log"
export PYTHONUNBUFFERED=1 PY DEVICE RESULTS
FAILED=0

say() { echo "$*" | tee -a "$LOG"; }
step() { # step NAME SECONDS COMMAND...: run it under a time limit, log it, record PASS/FAIL
  local name=$1 limit=$2 start=$SECONDS rc
  shift 2
  say "=== $name (limit ${limit}s): $*"
  timeout "$limit" bash -c '"$@"' "$name" "$@" 2>&1 | tee -a "$LOG"
  rc=${PIPESTATUS[0]}
  if [[ $rc -eq 0 ]]; then
    say "PASS $name ($((SECONDS - start)) s)"
  else
    say "FAIL $name: exit $rc after $((SECONDS - start)) s"
    FAILED=$((FAILED + 1))
  fi
}
equivalence() { # the cuda cases must run, not skip
  local out
  out=$($PY -m pytest -q -rs -p no:cacheprovider tests/unit/test_population_optimizer.py -k cuda 2>&1)
  local rc=$?
  echo "$out"
  [[ $rc -eq 0 ]] && ! grep -q -i "skipped" <<<"$out"
}
tune_on_device() { # tune_on_device JOB_FILE JSON_OUT: the recommendation to the file, logs to the log
  $PY -m adamtune tune "$1" --device "$DEVICE" --json 2>&1 >"$2"
}
export -f equivalence tune_on_device
job_file() { # job_file EXAMPLE [POPULATION]: the example with that population (and TRIALS)
  local out
  out=$(mktemp --suffix=.yaml)
  sed -e "s/^population: 1$/population: ${2:-1}/" "examples/$1.yaml" >"$out"
  if [[ -n "$TRIALS" ]]; then sed -i "s/^  trials: [0-9]*/  trials: $TRIALS/" "$out"; fi
  echo "$out"
}

if compgen -G ".whl/*.whl" >/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/adamtune-deps .whl/*.whl || exit 100
  export PYTHONPATH=/tmp/adamtune-deps${PYTHONPATH:+:$PYTHONPATH}
fi
# the project itself, installed (benchmarks import the installed project; the workloads are
# entry points), without its dependencies: those are the machine's or the wheels'
rm -rf /tmp/adamtune-site
$PY -m pip install -q --no-index --no-deps --no-build-isolation --no-compile \
  --target /tmp/adamtune-site . >/dev/null || exit 101
export PYTHONPATH=/tmp/adamtune-site${PYTHONPATH:+:$PYTHONPATH}

say "adamtune GPU checks, $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD 2>/dev/null)"
nvidia-smi -L 2>&1 | tee -a "$LOG"
$PY - <<'PYEOF' 2>&1 | tee -a "$LOG"
import os, torch, optuna
versions = f"torch {torch.__version__} (CUDA {torch.version.cuda}), optuna {optuna.__version__}"
if os.environ["DEVICE"] == "cpu":
    print(f"device: cpu (a smoke test of this script); {versions}")
    raise SystemExit(0)
assert torch.cuda.is_available(), "no CUDA device visible to torch: run this on a GPU machine"
p = torch.cuda.get_device_properties(0)
print(f"device: {p.name}, {p.total_memory / 2**30:.0f} GiB, {p.multi_processor_count} SMs; {versions}")
PYEOF
[[ ${PIPESTATUS[0]} -eq 0 ]] || exit 102

step "cuda equivalence (population vs torch.optim, 1e-5, fp32)" 240 equivalence

step "population step breakdown on $DEVICE" 120 $PY benchmarks/population.py --breakdown \
  --device "$DEVICE" --sizes "$SIZES" --steps 50 --json "$RESULTS/breakdown_$DEVICE.json"

step "population vs sequential fused torch.optim on $DEVICE" 300 $PY benchmarks/population.py \
  --device "$DEVICE" --sizes "$SIZES" --steps "$STEPS" --repeats 1 \
  --json "$RESULTS/population_$DEVICE.json"

for job in digits regression transformer; do
  step "adamtune tune examples/$job.yaml on $DEVICE" 150 tune_on_device "$(job_file $job)" \
    "$RESULTS/tune_$job.json"
done
step "adamtune tune digits_mlp with population: auto on $DEVICE" 150 tune_on_device \
  "$(job_file digits auto)" "$RESULTS/tune_digits_auto.json"

say "=== done: $FAILED step(s) failed; results in $RESULTS"
exit "$FAILED"
