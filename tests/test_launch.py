"""The launcher end to end on the bundled digits, and its one-line errors."""
import glob
import importlib
import json
import os
import re
import subprocess
import sys

import ml_collections
import pytest

import launch
from research.train import experiment
from research.core import writers
from tests.conftest import ROOT, error_lines, run_launcher, stderr_summary


def test_vae_digits_end_to_end_with_overrides(data_dir, tmp_path):
  workdir = str(tmp_path / "run")
  proc = run_launcher("--config=vae:digits", f"--workdir={workdir}",
                      f"--config.data.data_dir={data_dir}", "--config.total_steps=30",
                      "--config.log_every_steps=5", "--config.eval_every_steps=15",
                      "--config.checkpoint_every_steps=15", "--config.batch_size=64",
                      "--config.model.latent_dim=4", "--config.keep_checkpoints=1",
                      "--config.xla_flags=--xla_force_host_platform_device_count=2")
  assert proc.returncode == 0, stderr_summary(proc.stderr)
  assert "devices: 2 x cpu" in proc.stdout  # config.xla_flags reached XLA before it started
  assert f"workdir: {workdir}" in proc.stdout

  config = json.load(open(os.path.join(workdir, "config.json")))
  assert config["batch_size"] == 64 and config["model"]["latent_dim"] == 4
  assert config["keep_checkpoints"] == 1
  assert config["data"]["name"] == "digits"

  records = writers.read_metrics(workdir)
  train = [r for r in records if "train/neg_elbo" in r]
  assert [r["step"] for r in train] == [5, 10, 15, 20, 25, 30]
  assert train[-1]["train/neg_elbo"] < train[0]["train/neg_elbo"]
  assert all(r["train/examples_per_sec"] > 0 for r in train)
  assert [r["step"] for r in records if "val/neg_elbo" in r] == [15, 30]
  test = [r for r in records if "test/neg_elbo" in r]
  assert len(test) == 1 and test[0]["test/neg_elbo"] > test[0]["test/kl"] >= 0

  assert os.listdir(os.path.join(workdir, "checkpoints")) == ["30"]  # keep_checkpoints=1
  assert glob.glob(os.path.join(workdir, "events.out.tfevents.*"))
  images = sorted(os.listdir(os.path.join(workdir, "images")))
  assert images == [f"{name}_{step:08d}.png" for name in (
      "interpolations", "reconstructions", "samples", "traversals") for step in (15, 30)]
  assert json.load(open(os.path.join(workdir, "results.json")))["test/neg_elbo"] == pytest.approx(
      test[0]["test/neg_elbo"])


def test_classifier_writes_its_split_report(data_dir, tmp_path):
  workdir = tmp_path / "run"
  proc = run_launcher("--config=mlp:digits", f"--workdir={workdir}",
                      f"--config.data.data_dir={data_dir}", "--config.total_steps=20")
  assert proc.returncode == 0, stderr_summary(proc.stderr)
  results = json.load(open(workdir / "results.json"))
  for key in ["test/accuracy", "test/ece", "test/precision_macro", "test/recall_macro"]:
    assert 0 <= results[key] <= 1, key
  assert sorted(os.listdir(workdir / "reports")) == [
      "test_confusion.png", "test_per_class.csv", "test_reliability.png"]


@pytest.mark.parametrize("env, extra, expected", [
    (None, "", None),
    (None, "--a=1", "--a=1"),
    ("--b=2", "--a=1", "--a=1 --b=2"),  # the user's own XLA_FLAGS come last, so they win
])
def test_config_xla_flags_go_before_the_users(monkeypatch, env, extra, expected):
  monkeypatch.setenv("XLA_FLAGS", env or "")  # recorded, so the teardown restores it
  if env is None:
    monkeypatch.delenv("XLA_FLAGS")
  launch.apply_xla_flags(ml_collections.ConfigDict({"xla_flags": extra}))
  assert os.environ.get("XLA_FLAGS") == expected


def test_building_a_run_warns_when_its_xla_flags_never_reached_xla(monkeypatch, caplog):
  monkeypatch.setenv("XLA_FLAGS", "")  # recorded, so the teardown restores it
  monkeypatch.delenv("XLA_FLAGS")
  experiment.warn_if_xla_flags_missing("--a=1")
  assert "XLA runs without them" in caplog.text
  caplog.clear()
  launch.apply_xla_flags(ml_collections.ConfigDict({"xla_flags": "--a=1"}))
  experiment.warn_if_xla_flags_missing("--a=1")
  assert "XLA runs without them" not in caplog.text


# --- A researcher's first hour: help, the list of configs, dry runs, eval from a workdir ---

# Runs launch.py and reports, at exit, whether JAX was imported.
WITH_JAX_REPORT = """
import atexit, runpy, sys
atexit.register(lambda: print("jax imported:", "jax" in sys.modules, file=sys.stderr))
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def run_reporting_jax(*args: str):
  return subprocess.run([sys.executable, "-c", WITH_JAX_REPORT, os.path.join(ROOT, "launch.py"),
                         *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_help_works_alone_and_with_a_config():
  proc = run_reporting_jax("--help")
  assert proc.returncode == 0, stderr_summary(proc.stderr)
  for text in ["--list_configs", "--dry_run", "--config", "--workdir", "--mode"]:
    assert text in proc.stdout, text
  assert "jax imported: False" in proc.stderr
  proc = run_launcher("--config=cnn", "--help")
  assert proc.returncode == 0, stderr_summary(proc.stderr)
  assert "--dry_run" in proc.stdout
  assert re.search(r"^  model\.conv_features = \(32, 64\)", proc.stdout, re.M), proc.stdout


def test_list_configs_describes_every_config():
  proc = run_reporting_jax("--list_configs")
  assert proc.returncode == 0, stderr_summary(proc.stderr)
  assert "jax imported: False" in proc.stderr
  lines = {line.split()[0]: " ".join(line.split()[1:]) for line in proc.stdout.splitlines()
           if line.startswith("  ")}
  assert set(launch.available_configs()) <= set(lines)
  for name in ["cnn", "vae", "studies/classifier_zoo"]:
    doc = importlib.import_module("configs." + name.replace("/", ".")).__doc__
    first = " ".join(doc.strip().splitlines()[0].split())
    assert lines[name] == first, (name, lines[name])


def test_dry_run_prints_the_fields_and_writes_nothing(tmp_path):
  workdir = tmp_path / "x"
  proc = run_launcher("--config=cnn:digits", "--dry_run", f"--workdir={workdir}",
                      "--config.model.dropout=0.25")
  assert proc.returncode == 0, stderr_summary(proc.stderr)
  batch_size = re.search(r"^batch_size = 128\b(.*)$", proc.stdout, re.M)
  assert batch_size and "  # " in batch_size.group(1), proc.stdout  # its help, from common.py
  assert re.search(r"^model\.conv_features = \(32, 64\)", proc.stdout, re.M)
  assert re.search(r"^model\.dropout = 0\.25$", proc.stdout, re.M)  # overrides are applied
  assert re.search(r"^model\.name = 'cnn' +# research/models/cnn\.py$", proc.stdout, re.M)
  assert "config is valid" in proc.stdout
  assert not workdir.exists() and not error_lines(proc)

  proc = run_launcher("--config=cnn:digits", "--dry_run", f"--workdir={workdir}",
                      "--config.batch_size=0")  # validated
  assert proc.returncode == 2 and len(error_lines(proc)) == 1, stderr_summary(proc.stderr)
  assert "batch_size=0 is not allowed" in error_lines(proc)[0]
  assert not workdir.exists()

  proc = run_launcher("--config=studies/classifier_zoo", "--dry_run", f"--workdir={workdir}")
  assert proc.returncode == 0, stderr_summary(proc.stderr)
  assert re.search(r"^study = 'classifier_zoo'", proc.stdout, re.M)
  assert not workdir.exists()


@pytest.fixture(scope="module")
def trained_mlp(data_dir, tmp_path_factory):
  """A short mlp:digits run: its workdir and the results.json training wrote."""
  workdir = tmp_path_factory.mktemp("launch") / "mlp"
  proc = run_launcher("--config=mlp:digits", f"--workdir={workdir}",
                      f"--config.data.data_dir={data_dir}", "--config.total_steps=20")
  assert proc.returncode == 0, stderr_summary(proc.stderr)
  return workdir, json.load(open(workdir / "results.json"))


def printed_results(stdout: str) -> dict[str, str]:
  line = next(line for line in stdout.splitlines() if line.startswith("results: "))
  return dict(item.split("=") for item in line[len("results: "):].split(", "))


def test_eval_from_the_workdir_alone(trained_mlp):
  workdir, results = trained_mlp
  proc = run_launcher("--mode=eval", f"--workdir={workdir}")  # no --config: its config.json
  assert proc.returncode == 0, stderr_summary(proc.stderr)
  assert f"config {workdir / 'config.json'}:" in proc.stdout
  assert printed_results(proc.stdout)["test/accuracy"] == f"{results['test/accuracy']:.5g}"


@pytest.mark.parametrize("args", [["--mode=eval"], ["--mode=sample"],
                                  ["--mode=eval", "--config=mlp:digits"]])
def test_eval_of_an_empty_or_missing_workdir_is_one_line(args, tmp_path):
  empty, missing = tmp_path / "empty", tmp_path / "missing"
  empty.mkdir()
  for workdir in (empty, missing):
    proc = run_launcher(*args, f"--workdir={workdir}")
    assert proc.returncode == 2, stderr_summary(proc.stderr)
    lines = error_lines(proc)
    assert len(lines) == 1 and str(workdir) in lines[0], stderr_summary(proc.stderr)
    assert "Traceback" not in proc.stderr
  assert os.listdir(empty) == [] and not missing.exists()  # nothing created
