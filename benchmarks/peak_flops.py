"""Peak dense FLOP/s per device, for model FLOPs utilization (MFU) in throughput.py.

MFU = XLA's cost-analysis FLOPs per example x examples/s / (peak FLOP/s x devices).

Figures are NVIDIA's datasheet numbers per GPU, dense (the datasheets list Tensor Core
figures with 2:4 sparsity; dense is half), in TFLOP/s:

- H100 and H200 (SXM), GH200: https://www.nvidia.com/en-us/data-center/h100/ and
  https://www.nvidia.com/en-us/data-center/h200/ ("NVIDIA H100 Tensor Core GPU Datasheet",
  "NVIDIA H200 Tensor Core GPU" datasheet): FP32 67, TF32 Tensor Core 989 sparse (494.5
  dense), BF16 Tensor Core 1,979 sparse (989.5 dense). H100 PCIe: 51, 756, 1,513; H100 NVL
  and H200 NVL: 60, 835, 1,671 (sparse).
- A100 (SXM and PCIe): https://www.nvidia.com/en-us/data-center/a100/ ("NVIDIA A100 Tensor
  Core GPU Datasheet"): FP32 19.5, TF32 156 dense, BF16 312 dense.

``tf32`` is the basis of a float32 run on these GPUs: XLA's default precision runs float32
matmuls and convolutions on the TF32 Tensor Cores; ``float32`` is the non-tensor rate
(``matmul_precision=highest``-like runs); ``bfloat16`` that of runs whose matmuls take
bfloat16 operands.
"""

# (device_kind substring, {basis: dense TFLOP/s}); the first match wins, so the more
# specific names come first.
PEAK_TFLOPS = (
    ("H200 NVL", {"float32": 60.0, "tf32": 417.5, "bfloat16": 835.5}),
    ("H100 NVL", {"float32": 60.0, "tf32": 417.5, "bfloat16": 835.5}),
    ("H100 PCIe", {"float32": 51.0, "tf32": 378.0, "bfloat16": 756.5}),
    ("GH200", {"float32": 67.0, "tf32": 494.5, "bfloat16": 989.5}),
    ("H200", {"float32": 67.0, "tf32": 494.5, "bfloat16": 989.5}),
    ("H100", {"float32": 67.0, "tf32": 494.5, "bfloat16": 989.5}),
    ("A100", {"float32": 19.5, "tf32": 156.0, "bfloat16": 312.0}),
)


def basis(precision: str, matmul_precision: str, platform: str) -> str:
  """The peak a run is measured against: ``bfloat16`` where its matmuls take bfloat16
  operands, else ``tf32`` on GPUs (XLA's default float32 matmul precision there), unless
  the config asks for full float32 matmuls."""
  if "bfloat16" in (precision, matmul_precision):
    return "bfloat16"
  if platform == "gpu" and matmul_precision in ("default", "tensorfloat32"):
    return "tf32"
  return "float32"


def check_spec(spec: str) -> None:
  """Exits with one line unless ``spec`` is 'auto' or a positive number."""
  if spec == "auto":
    return
  try:
    value = float(spec)
  except ValueError:
    value = 0.0
  if not value > 0:
    raise SystemExit(f"--peak_flops={spec!r}: give 'auto', '' (none) or the peak TFLOP/s "
                     f"per device (a positive number)")


def peak_tflops(spec: str, device_kind: str, basis_: str) -> tuple[float | None, str]:
  """``(TFLOP/s per device or None, where the figure comes from)`` for ``--peak_flops``:
  ``auto`` looks ``device_kind`` up in PEAK_TFLOPS, a number is TFLOP/s per device."""
  check_spec(spec)
  if spec != "auto":
    return float(spec), "--peak_flops"
  for name, peaks in PEAK_TFLOPS:
    if name.lower() in device_kind.lower():
      return peaks[basis_], f"{name} {basis_} dense (datasheet)"
  return None, (f"no peak listed for device kind {device_kind!r} in benchmarks/peak_flops.py; "
                f"pass --peak_flops=TFLOPS")
