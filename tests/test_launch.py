"""The launcher end to end on the bundled digits, and its one-line errors."""
import glob
import json
import os

import ml_collections
import pytest

import launch
from research.train import experiment
from research.core import writers
from tests.conftest import run_launcher, stderr_summary


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
  if env is None:
    monkeypatch.delenv("XLA_FLAGS", raising=False)
  else:
    monkeypatch.setenv("XLA_FLAGS", env)
  launch.apply_xla_flags(ml_collections.ConfigDict({"xla_flags": extra}))
  assert os.environ.get("XLA_FLAGS") == expected


def test_building_a_run_warns_when_its_xla_flags_never_reached_xla(monkeypatch, caplog):
  monkeypatch.delenv("XLA_FLAGS", raising=False)
  experiment.warn_if_xla_flags_missing("--a=1")
  assert "XLA runs without them" in caplog.text
  caplog.clear()
  launch.apply_xla_flags(ml_collections.ConfigDict({"xla_flags": "--a=1"}))
  experiment.warn_if_xla_flags_missing("--a=1")
  assert "XLA runs without them" not in caplog.text
