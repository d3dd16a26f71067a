#!/usr/bin/env bash
# Builds device_bundle/ (git-ignored) for benchmarks/device_check.sh, here, on a machine with
# this project's venv, network to the package index, and a TFDS data dir with mnist and
# fashion_mnist prepared (their metadata only travels):
#
#   TFDS_DATA_DIR=DIR bash benchmarks/device_bundle.sh
#
# The GPU machine has Python 3.12 with a CUDA jax, flax, optax and orbax, and no network.
# What the project imports beyond those travels as wheels, at the versions of this venv:
# - pure-Python wheels (PURE),
# - wheels built here from pure-Python sdists (promise has no wheel; wrapt without its C
#   extension, WRAPT_INSTALL_EXTENSIONS=false, runs on its pure-Python fallback),
# - binary wheels for CPython 3.12 on x86_64 Linux (dm-tree: TFDS's feature shapes;
#   scikit-learn: tests/test_matmul.py; matplotlib and its binary dependencies: a training
#   run writes its curves, evaluations their figures); none has a pure-Python build.
# Data: the bundled digits' splits (the tests train on them) as .npz, and the TFDS metadata
# of digits, mnist and fashion_mnist; device_check.sh fills the split cache from them, with
# random MNIST-shaped splits for the throughput rows (the real MNIST, 55 MB of uint8, does
# not fit the 64 MiB a device run carries beside the wheels, and throughput needs no real
# images).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
BUNDLE="${DEVICE_BUNDLE:-$ROOT/device_bundle}"
DEVICE_PYTHON="${DEVICE_PYTHON_VERSION:-3.12}"
# pip matches --platform tags exactly: every manylinux tag up to glibc 2.28 (the device's glibc
# is at least that), newest first.
DEVICE_PLATFORMS="${DEVICE_PLATFORMS:-manylinux_2_28_x86_64 manylinux_2_27_x86_64
  manylinux_2_24_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64}"
LIMIT_BYTES=$((64 * 1024 * 1024))

PURE="ml_collections clu tensorflow-datasets tensorflow-metadata googleapis-common-protos
  immutabledict six toml tqdm tensorboard attrs joblib cloudpickle threadpoolctl zipp
  importlib_resources narwhals pytest iniconfig pluggy packaging cycler pyparsing
  python-dateutil"
FROM_SDIST="promise wrapt"
BINARY="dm-tree scikit-learn matplotlib pillow kiwisolver contourpy fonttools"
# The configs whose data the device check reads: tests/test_devices.py's cases and the
# bfloat16 tests train on the digits; the throughput rows read mnist and fashion_mnist.
TEST_CONFIGS="cnn:digits cnn_strong:digits resnet:digits kernel_svm:digits rnn:digits
  vit:digits vae:digits iwae:digits"
THROUGHPUT_CONFIGS="cnn vit resnet vae"

if [[ -z "${TFDS_DATA_DIR:-}" ]]; then
  echo "error: set TFDS_DATA_DIR=DIR, a TFDS data dir with mnist and fashion_mnist prepared" >&2
  exit 2
fi
"$PY" -c 'import tensorflow, tensorflow_datasets' 2>/dev/null || {
  echo "error: $PY cannot import TensorFlow and TFDS (needed here to read the digits)" >&2
  exit 2
}

pinned() {  # NAME==VERSION as installed in this venv
  local version
  version="$("$PY" -c 'import importlib.metadata as m, sys; print(m.version(sys.argv[1]))' "$1")" \
    || { echo "error: $1 is not installed in $PY's environment" >&2; exit 2; }
  echo "$1==$version"
}

rm -rf "$BUNDLE"
mkdir -p "$BUNDLE/wheels"
WHEELS="$BUNDLE/wheels"
download=("$PY" -m pip download --quiet --no-deps --only-binary=:all: --dest "$WHEELS")
for name in $PURE; do
  "${download[@]}" --python-version "$DEVICE_PYTHON" "$(pinned "$name")"
done
platforms=()
for platform in $DEVICE_PLATFORMS; do platforms+=(--platform "$platform"); done
for name in $BINARY; do
  "${download[@]}" --python-version "$DEVICE_PYTHON" --implementation cp \
    --abi "cp${DEVICE_PYTHON/./}" "${platforms[@]}" "$(pinned "$name")"
done
for name in $FROM_SDIST; do
  WRAPT_INSTALL_EXTENSIONS=false "$PY" -m pip wheel --quiet --no-deps --no-binary=:all: \
    --wheel-dir "$WHEELS" "$(pinned "$name")"
done
for wheel in "$WHEELS"/*.whl; do
  case "$wheel" in
    *-none-any.whl|*"-cp${DEVICE_PYTHON/./}-"*) ;;
    *) echo "error: $wheel does not install on CPython $DEVICE_PYTHON" >&2; exit 1 ;;
  esac
done

# shellcheck disable=SC2086
"$PY" benchmarks/device_check.py export --bundle="$BUNDLE" --configs $TEST_CONFIGS \
  --metadata_configs $THROUGHPUT_CONFIGS 2>&1 | grep -E '^(metadata|split):'

echo "wheels:"
ls -l "$WHEELS" | awk 'NR > 1 {printf "  %9d  %s\n", $5, $9}'
bytes="$(du -sb "$BUNDLE" | cut -f1)"
echo "bundle: $BUNDLE, $((bytes / 1024)) KiB (a device run carries at most 64 MiB)"
if (( bytes > LIMIT_BYTES )); then
  echo "error: the bundle is over 64 MiB" >&2
  exit 1
fi
rel="${BUNDLE#"$ROOT"/}"
echo "device run: run(command=\"bash benchmarks/device_check.sh\", carry=[\"$rel\"], timeout_s=540)"
