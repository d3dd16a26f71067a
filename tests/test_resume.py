"""A run interrupted and resumed ends with exactly the parameters of an uninterrupted run."""
import json
import os

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from research import errors
from research.core import writers
from research.train import loop
from tests.conftest import load_config


class Interrupted(Exception):
  pass


def interrupt_at(step_to_stop: int):
  def hook(step):
    if step == step_to_stop:
      raise Interrupted
  return hook


def final_state(workdir: str, step: int):
  return ocp.StandardCheckpointer().restore(os.path.join(workdir, "checkpoints", str(step), "default"))


def test_interrupted_and_resumed_equals_uninterrupted(data_dir, tmp_path):
  # The VAE draws randomness for binarization and sampling, so the RNG must resume too.
  config = load_config("vae", data_dir=data_dir, total_steps=30, checkpoint_every_steps=10,
                       log_every_steps=5, eval_every_steps=10)
  straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
  expected = loop.train_and_evaluate(config, straight)

  with pytest.raises(Interrupted):
    loop.train_and_evaluate(config, resumed, step_hook=interrupt_at(25))
  assert sorted(os.listdir(os.path.join(resumed, "checkpoints"))) == ["10", "20"]
  results = loop.train_and_evaluate(config, resumed)  # picks up at step 20

  a, b = final_state(straight, 30), final_state(resumed, 30)
  assert int(a["step"]) == int(b["step"]) == 30
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(x, y)
  assert results == expected
  # The resumed run logged steps 25 and 30 again, with the same values.
  logged = [r for r in writers.read_metrics(resumed) if "train/neg_elbo" in r]
  reference = {r["step"]: r["train/neg_elbo"] for r in writers.read_metrics(straight)
               if "train/neg_elbo" in r}
  for record in logged:
    assert record["train/neg_elbo"] == reference[record["step"]]


def test_rerun_of_a_finished_run_returns_its_results_and_writes_nothing(data_dir, tmp_path):
  config = load_config("cnn", data_dir=data_dir, total_steps=10)
  first = loop.train_and_evaluate(config, str(tmp_path))
  assert first["step"] == 10
  records = writers.read_metrics(str(tmp_path))
  files = sorted(os.listdir(tmp_path))
  again = loop.train_and_evaluate(config, str(tmp_path))
  assert again == first
  assert writers.read_metrics(str(tmp_path)) == records  # no duplicate records
  assert sorted(os.listdir(tmp_path)) == files  # no second TensorBoard file


def test_a_changed_config_is_refused_unless_allowed_and_then_recorded(data_dir, tmp_path):
  config = load_config("cnn", data_dir=data_dir, total_steps=10)
  loop.train_and_evaluate(config, str(tmp_path))
  recorded = open(tmp_path / "config.json").read()
  config.total_steps, config.optimizer.learning_rate = 20, 3e-3
  with pytest.raises(errors.ConfigError, match=r"another config: optimizer.learning_rate 0.001 "
                     r"-> 0.003, total_steps 10 -> 20; .*--allow_config_changes") as error:
    loop.train_and_evaluate(config, str(tmp_path))
  assert "\n" not in str(error.value)
  assert open(tmp_path / "config.json").read() == recorded  # refused before anything is written
  results = loop.train_and_evaluate(config, str(tmp_path), allow_config_changes=True)
  assert results["step"] == 20 and json.load(open(tmp_path / "config.json"))["total_steps"] == 20
  history = [json.loads(line) for line in open(tmp_path / "config_history.jsonl")]
  assert len(history) == 1 and history[0]["from_step"] == 10
  assert history[0]["changes"]["total_steps"] == {"old": 10, "new": 20}
  # Where the data is read from is not part of what a run computes.
  config.data.data_dir = data_dir + "/"
  assert loop.train_and_evaluate(config, str(tmp_path)) == results
  config.total_steps = 15  # below the checkpoint's step: refused, not reported as step 20
  with pytest.raises(errors.ConfigError, match="is at step 20, past this config's last step 15"):
    loop.train_and_evaluate(config, str(tmp_path), allow_config_changes=True)


def test_same_seed_gives_identical_metrics_and_another_seed_differs(data_dir, tmp_path):
  def training_metrics(workdir):
    return [{k: v for k, v in r.items() if "/" in k and "per_sec" not in k}
            for r in writers.read_metrics(workdir) if any("/" in k for k in r)]

  config = load_config("vae", data_dir=data_dir, total_steps=10, log_every_steps=5)
  first = loop.train_and_evaluate(config, str(tmp_path / "a"))
  second = loop.train_and_evaluate(config, str(tmp_path / "b"))
  assert first == second
  assert training_metrics(tmp_path / "a") == training_metrics(tmp_path / "b")
  assert json.load(open(tmp_path / "a" / "config.json"))["seed"] == 0

  config.seed = 1
  other = loop.train_and_evaluate(config, str(tmp_path / "c"))
  assert other["test/neg_elbo"] != first["test/neg_elbo"]
  assert json.load(open(tmp_path / "c" / "config.json"))["seed"] == 1
