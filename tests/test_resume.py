"""A run interrupted and resumed ends with exactly the parameters of an uninterrupted run."""
import os

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from research.core import loop, writers
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


def test_rerun_of_a_finished_run_only_evaluates(data_dir, tmp_path):
  config = load_config("cnn", data_dir=data_dir, total_steps=10)
  first = loop.train_and_evaluate(config, str(tmp_path))
  again = loop.train_and_evaluate(config, str(tmp_path))
  assert again == first
