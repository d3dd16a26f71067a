#!/usr/bin/env bash
# The GPU check, one script, under 8 minutes on one GPU (DEVICE_CHECK_SECONDS, default 480):
#
#   bash benchmarks/device_check.sh                       # on a GPU machine, bundle carried
#   DEVICE_CHECK_TINY=1 PYTHON=.venv/bin/python bash benchmarks/device_check.sh   # CPU, tiny
#
# Needs device_bundle/ (benchmarks/device_bundle.sh builds it on a machine with the data and
# network; git-ignored, so the device run carries it). Steps, each within a time budget:
# 1. the devices JAX sees: an NVIDIA GPU (else stops, unless DEVICE_CHECK_TINY=1);
# 2. the carried wheels of the packages the project imports that are not installed
#    (pip --no-index --no-deps --target, on PYTHONPATH: the machine's own CUDA jax stays);
# 3. data: TFDS metadata into a fresh TFDS data dir, the split cache filled from the
#    carried splits (the digits the tests train on) or with random splits of the right
#    shapes (MNIST and Fashion-MNIST for throughput; each line says which);
# 4. tests: tests/test_devices.py (1 vs 8 devices, on JAX's CPU platform: one GPU does not
#    split into 8) and the bfloat16 / matmul-precision tests on the default device (GPU);
# 5. benchmarks/throughput.py for cnn, vit, resnet and vae (and vit in bfloat16) at GPU
#    batch sizes, with MFU against the GPU's datasheet peak (benchmarks/peak_flops.py);
#    the rows go to the GPU table of benchmarks/RESULTS.md (DEVICE_CHECK_RESULTS).
# Logs, the rows (rows.jsonl) and the updated RESULTS.md go to $OUT/device_check when $OUT
# is set (the device tool brings $OUT back), else to a temp folder. Exit status: 0 when
# every step passed, 1 when one failed, 2 when the check cannot start.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TINY="${DEVICE_CHECK_TINY:-0}"
BUNDLE="${DEVICE_BUNDLE:-$ROOT/device_bundle}"
RESULTS="${DEVICE_CHECK_RESULTS:-$ROOT/benchmarks/RESULTS.md}"
PEAK="${DEVICE_CHECK_PEAK_FLOPS:-auto}"
DEADLINE=$((SECONDS + ${DEVICE_CHECK_SECONDS:-480}))
WORK="$(mktemp -d "${TMPDIR:-/tmp}/device_check.XXXXXX")"
LOGS="${OUT:-$WORK}/device_check"
mkdir -p "$LOGS"
export TF_CPP_MIN_LOG_LEVEL=3 TFDS_DATA_DIR="$WORK/tfds" XDG_CACHE_HOME="$WORK/xdg"
export RESEARCH_TESTS_DATA_DIR="$TFDS_DATA_DIR"
export RESEARCH_TESTS_CACHE_DIR="$XDG_CACHE_HOME/research/datasets"  # configs' default

if [[ "$TINY" == 1 ]]; then
  # CPU-sized: the digits, small batches, short windows; test_devices.py trains 11 configs
  # twice (minutes on a CPU): the suite runs it.
  DEVICE_TESTS=""
  PRECISION_TESTS="tests/test_matmul.py -k apply_only_where_asked"
  ROWS=("cnn:digits 32 digits")
  WINDOWS=(--windows=2 --window_secs=0.3)
  DATA_CONFIGS="cnn:digits"
else
  DEVICE_TESTS="tests/test_devices.py"
  PRECISION_TESTS="tests/test_matmul.py"  # bfloat16 matmuls and matmul_precision
  # Batches: the per-example work of these MNIST-sized models is small (3-170 MFLOP), so a
  # batch must be thousands of examples to fill an H100/H200; steps_per_call=10 puts ten
  # steps in one dispatch (a step of the small models takes less than dispatching it).
  ROWS=("cnn 4096 mnist" "vit 1024 mnist" "resnet 1024 fashion_mnist" "vae 4096 mnist"
        "vit 1024 mnist --config.precision=bfloat16")
  WINDOWS=(--windows=5 --window_secs=1.5 --config.steps_per_call=10)
  DATA_CONFIGS="cnn:digits cnn vit resnet vae"
fi

summary=()
failed=0
say() { echo "== $*"; }
result() { summary+=("$1"); echo "-- $1"; }
left() { echo $((DEADLINE - SECONDS)); }
budget() {  # seconds for a step: its own limit, or what is left before the deadline
  local l; l="$(left)"
  if (( l < ${2:-20} )); then echo 0; elif (( l < $1 )); then echo "$l"; else echo "$1"; fi
}
stop() { echo "error: $*" >&2; exit 2; }

# 1. Devices.
if [[ -n "${PYTHON:-}" ]]; then
  PY="$PYTHON"
else
  PY=""
  for candidate in python3 python; do
    if command -v "$candidate" >/dev/null && "$candidate" -c 'import jax' 2>/dev/null; then
      PY="$candidate"; break
    fi
  done
  [[ -n "$PY" ]] || stop "no python3 or python on PATH imports jax; set PYTHON=..."
fi
say "devices ($PY)"
probe='import jax, sys
print(jax.default_backend(), jax.device_count(), jax.__version__, sys.version.split()[0])
print(jax.devices()[0].device_kind)
print(jax.devices())'
info="$("$PY" -c "$probe" 2>"$LOGS/devices.log")" || {
  tail -n 5 "$LOGS/devices.log" >&2; stop "$PY cannot start jax (log above)"; }
echo "$info"
read -r BACKEND COUNT JAX_VERSION PY_VERSION <<<"$(sed -n 1p <<<"$info")"
KIND="$(sed -n 2p <<<"$info")"
if [[ "$BACKEND" != gpu && "$TINY" != 1 ]]; then
  stop "JAX sees no GPU (backend $BACKEND: $(sed -n 3p <<<"$info")); this check is for an" \
    "NVIDIA GPU machine (DEVICE_CHECK_TINY=1 runs its CPU-sized version)"
fi
result "devices: $COUNT x $KIND ($BACKEND), jax $JAX_VERSION, Python $PY_VERSION"

# 2. Carried wheels.
say "wheels"
[[ -d "$BUNDLE/wheels" ]] || stop "no $BUNDLE/wheels: build it with" \
  "'TFDS_DATA_DIR=DIR bash benchmarks/device_bundle.sh' and carry it (carry=[\"device_bundle\"])"
names="$("$PY" benchmarks/device_check.py missing-wheels "$BUNDLE/wheels")" ||
  stop "cannot list the carried wheels in $BUNDLE/wheels"
read -r -a missing <<<"$names"
if (( ${#missing[@]} )); then
  echo "installing: ${missing[*]}"
  "$PY" -m pip --version >/dev/null 2>&1 || stop "$PY has no pip to install the carried wheels"
  "$PY" -m pip install --quiet --disable-pip-version-check --no-index --no-deps \
    --find-links "$BUNDLE/wheels" --target "$WORK/site" "${missing[@]}" \
    >"$LOGS/wheels.log" 2>&1 || { tail -n 5 "$LOGS/wheels.log" >&2
    stop "pip cannot install the carried wheels on Python $PY_VERSION (log above)"; }
  export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
fi
"$PY" -c 'import launch, research.train.experiment, tests.conftest' >"$LOGS/import.log" 2>&1 || {
  tail -n 3 "$LOGS/import.log" >&2
  stop "the project does not import with jax $JAX_VERSION on Python $PY_VERSION (above)"; }
result "wheels: ${#missing[@]} installed (${missing[*]:-none missing}); the project imports"

# 3. Data.
say "data"
# shellcheck disable=SC2086
"$PY" benchmarks/device_check.py install-data --bundle="$BUNDLE" --data_dir="$TFDS_DATA_DIR" \
  --configs $DATA_CONFIGS 2>"$LOGS/data.log" | tee "$LOGS/data.txt" || {
  tail -n 5 "$LOGS/data.log" >&2; stop "the split cache cannot be filled (log above)"; }
result "data: $(grep -c 'carried split' "$LOGS/data.txt") carried, $(grep -c SYNTHETIC \
  "$LOGS/data.txt") synthetic splits"

# 4. Tests. tests/test_speed.py's bfloat16 test (precision=bfloat16 through the training loop)
# runs the config's evaluations, whose figures need matplotlib (carried for CPython 3.12 on
# x86_64 Linux); where it does not import, that test is left out.
if [[ "$TINY" != 1 ]] && "$PY" -c 'import matplotlib' 2>/dev/null; then
  PRECISION_TESTS+=" tests/test_speed.py::test_bfloat16_keeps_float32_parameters_and_close_losses"
fi
run_tests() {  # NAME LIMIT ENV... -- PYTEST ARGS...
  local name="$1" limit="$2" seconds status=0 line; shift 2
  local env=(PATH="$PATH"); while [[ "$1" != -- ]]; do env+=("$1"); shift; done; shift
  seconds="$(budget "$limit" 30)"
  if (( seconds == 0 )); then result "tests $name: SKIPPED (out of time)"; failed=1; return; fi
  say "tests $name (limit ${seconds}s): $*"
  env "${env[@]}" timeout "$seconds" "$PY" -m pytest -q -p no:cacheprovider "$@" \
    >"$LOGS/tests_$name.log" 2>&1 || status=$?
  line="$(grep -E '(passed|failed|error|skipped|no tests ran)' "$LOGS/tests_$name.log" \
    | tail -n 1 || true)"
  if (( status == 124 || status == 137 )); then line="TIMED OUT after ${seconds}s; $line"; fi
  if (( status != 0 )); then failed=1; tail -n 20 "$LOGS/tests_$name.log"; fi
  result "tests $name: ${line:-exit status $status} (log tests_$name.log)"
}
if [[ -n "$DEVICE_TESTS" ]]; then
  # shellcheck disable=SC2086
  run_tests devices 170 JAX_PLATFORMS=cpu -- $DEVICE_TESTS
else
  result "tests devices: not run in tiny mode (the suite runs tests/test_devices.py)"
fi
# shellcheck disable=SC2086
run_tests precision 100 -- $PRECISION_TESTS

# 5. Throughput.
ROWS_FILE="$LOGS/rows.jsonl"
: >"$ROWS_FILE"
i=0
for row in "${ROWS[@]}"; do
  read -r config batch dataset extra <<<"$row"
  i=$((i + 1))
  args=("--config=$config" "--config.batch_size=$batch" ${extra:+"$extra"} "${WINDOWS[@]}"
        "--peak_flops=$PEAK")
  shown="TFDS_DATA_DIR=DIR python benchmarks/throughput.py ${args[*]}"
  origin="$(grep -q "^data: $dataset train.*SYNTHETIC" "$LOGS/data.txt" &&
    echo "synthetic $dataset" || echo "$dataset (carried)")"
  seconds="$(budget 100 30)"
  if (( seconds == 0 )); then result "throughput $config: SKIPPED (out of time)"; failed=1
    continue; fi
  say "throughput $i (limit ${seconds}s): $shown"
  status=0
  timeout "$seconds" "$PY" benchmarks/throughput.py "${args[@]}" --results= \
    >"$LOGS/throughput_$i.log" 2>&1 || status=$?
  "$PY" benchmarks/device_check.py record --output="$LOGS/throughput_$i.log" \
    --jsonl="$ROWS_FILE" --command="$shown" --data="$origin" --status="$status"
  if (( status != 0 )); then failed=1; tail -n 5 "$LOGS/throughput_$i.log"; fi
  result "throughput $config${extra:+ $extra} batch $batch: $("$PY" benchmarks/device_check.py \
    show --jsonl="$ROWS_FILE")"
done
if [[ -s "$ROWS_FILE" ]]; then
  say "rows appended to $RESULTS"
  "$PY" benchmarks/device_check.py append --jsonl="$ROWS_FILE" --results="$RESULTS"
  cp "$RESULTS" "$LOGS/RESULTS.md"
fi

echo
echo "== summary ($((SECONDS))s; logs in $LOGS)"
printf '%s\n' "${summary[@]}"
exit "$failed"
