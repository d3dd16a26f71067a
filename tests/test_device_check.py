"""benchmarks/device_check.sh, the GPU check, in its CPU-sized mode (DEVICE_CHECK_TINY=1,
offline, from a bundle of the digits made here), and its pieces: the peak FLOP/s table
behind MFU and the split cache filled with random splits where no split was carried."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from benchmarks import device_check, peak_flops, throughput
from research.data import pipeline
from tests.conftest import ROOT, stderr_summary


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
  """A bundle holding the digits' metadata and splits, and no wheels (all installed here)."""
  path = tmp_path_factory.mktemp("bundle")
  device_check.main(["export", f"--bundle={path}", "--configs", "cnn:digits"])
  os.makedirs(path / "wheels")
  return path


def test_peaks_by_device_kind_and_basis():
  assert peak_flops.basis("float32", "default", "gpu") == "tf32"
  assert peak_flops.basis("float32", "highest", "gpu") == "float32"
  assert peak_flops.basis("bfloat16", "default", "gpu") == "bfloat16"
  assert peak_flops.basis("float32", "bfloat16", "cpu") == "bfloat16"
  assert peak_flops.basis("float32", "default", "cpu") == "float32"
  assert peak_flops.peak_tflops("auto", "NVIDIA H200", "bfloat16")[0] == 989.5
  assert peak_flops.peak_tflops("auto", "NVIDIA H100 80GB HBM3", "tf32")[0] == 494.5
  assert peak_flops.peak_tflops("auto", "NVIDIA H100 PCIe", "float32")[0] == 51.0
  assert peak_flops.peak_tflops("auto", "NVIDIA A100-SXM4-80GB", "bfloat16")[0] == 312.0
  assert peak_flops.peak_tflops("2.5", "cpu", "float32") == (2.5, "--peak_flops")
  peak, why = peak_flops.peak_tflops("auto", "cpu", "float32")
  assert peak is None and "--peak_flops=TFLOPS" in why
  for bad in ("fast", "0", "-1"):
    with pytest.raises(SystemExit, match="--peak_flops"):
      peak_flops.check_spec(bad)


def test_uncarried_splits_are_synthesized_with_the_splits_shapes(bundle, tmp_path, capsys):
  (tmp_path / "b").mkdir()
  os.symlink(bundle / "data" / "tfds", tmp_path / "b" / "tfds")
  (tmp_path / "b" / device_check.MANIFEST).write_text("[]")  # metadata only
  os.symlink(tmp_path / "b", tmp_path / "data")
  device_check.main(["install-data", f"--bundle={tmp_path}", f"--data_dir={tmp_path / 'tfds'}",
                     f"--cache_dir={tmp_path / 'cache'}", "--configs", "cnn:digits"])
  out = capsys.readouterr().out
  assert out.count("SYNTHETIC") == 3, out
  data = device_check.load_data_config("cnn:digits", str(tmp_path / "tfds"),
                                       str(tmp_path / "cache"))
  train = pipeline.load_split(data, data.train_split)  # from the cache: no TFDS read
  assert train["image"].shape == (1293, 8, 8, 1) and train["image"].dtype == np.uint8
  assert train["label"].dtype == np.int64 and set(np.unique(train["label"])) <= set(range(10))


def test_the_tiny_device_check_runs_offline_and_appends_its_rows(bundle, tmp_path):
  results = tmp_path / "RESULTS.md"
  results.write_text(f"# Results\n\n### Speed log\n\n{throughput.SPEED_LOG_HEADER}\n| --- |\n")
  env = {**os.environ, "DEVICE_CHECK_TINY": "1", "PYTHON": sys.executable,
         "DEVICE_BUNDLE": str(bundle), "DEVICE_CHECK_RESULTS": str(results),
         "DEVICE_CHECK_PEAK_FLOPS": "0.05", "OUT": str(tmp_path / "out"),
         "TMPDIR": str(tmp_path)}
  proc = subprocess.run(["bash", os.path.join(ROOT, "benchmarks", "device_check.sh")],
                        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stdout[-3000:] + stderr_summary(proc.stderr)
  summary = proc.stdout.split("== summary", 1)[1]
  for line in ("devices: 1 x cpu (cpu)", "wheels: 0 installed", "data: 3 carried, 0 synthetic",
               "tests precision: 1 passed", "throughput cnn:digits batch 32: "):
    assert line in summary, summary
  rows = [json.loads(line) for line in open(tmp_path / "out" / "device_check" / "rows.jsonl")]
  assert len(rows) == 1 and rows[0]["batch_size"] == 32 and rows[0]["data"] == "digits (carried)"
  assert rows[0]["peak_tflops"] == 0.05 and rows[0]["mfu"] == pytest.approx(
      rows[0]["examples_per_s_median"] * rows[0]["step_mflops_per_example"] / 0.05e6, rel=1e-3)
  text = results.read_text()
  assert device_check.GPU_TABLE in text and device_check.GPU_HEADER in text
  row = text.splitlines()[-1]
  assert row.startswith("| ") and "--config=cnn:digits --config.batch_size=32" in row
  assert "of 0.05 TFLOP/s (--peak_flops)" in row and "digits (carried)" in row
  assert (tmp_path / "out" / "device_check" / "RESULTS.md").read_text() == text
