"""vmap-parallel replicas: one run training N replicas equals N separate runs."""

import numpy as np
import pytest

from research import errors
from research.core import writers
from research.train import loop, workdir as workdir_lib
from tests.conftest import load_config

SEEDS, LEARNING_RATES = (0, 3), (1e-3, 3e-3)
RUN = {"total_steps": 20, "batch_size": 32, "log_every_steps": 5, "eval_every_steps": 10,
       "checkpoint_every_steps": 10}


def run(tmp_path, name: str, data_dir: str, **overrides) -> tuple[list[dict], dict]:
  """Metrics and results of an mlp:digits run (dropout: the replicas' keys matter)."""
  config = load_config("mlp", data_dir=data_dir, **RUN, **overrides)
  workdir = tmp_path / name
  loop.train_and_evaluate(config, str(workdir))
  return writers.read_metrics(str(workdir)), workdir_lib.read_results(str(workdir))


@pytest.fixture(scope="module")
def replicas_run(tmp_path_factory, data_dir):
  tmp_path = tmp_path_factory.mktemp("replicas")
  records, results = run(tmp_path, "run", data_dir, **{
      "replicas.seeds": SEEDS, "replicas.learning_rates": LEARNING_RATES})
  return tmp_path / "run", records, results


def test_replicas_equal_separate_runs(replicas_run, tmp_path, data_dir):
  workdir, records, results = replicas_run
  for i, (seed, rate) in enumerate(zip(SEEDS, LEARNING_RATES)):
    alone, alone_results = run(tmp_path, f"seed{seed}", data_dir,
                               **{"seed": seed, "optimizer.learning_rate": rate})
    for key in ["train/loss", "train/accuracy", "train/grad_norm", "val/loss", "test/accuracy"]:
      want = [r[key] for r in alone if key in r]
      got = [r[f"replica_{i}/{key}"] for r in records if f"replica_{i}/{key}" in r]
      assert want and len(got) == len(want), key
      np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=f"replica {i} {key}")
    assert results[f"replica_{i}/test/ece"] == pytest.approx(alone_results["test/ece"], abs=1e-6)
  # The replicas differ from each other, and each wrote its own report.
  assert results["replica_0/val/loss"] != results["replica_1/val/loss"]
  assert (workdir / "reports" / "replica_1" / "test_confusion.png").exists()


def test_replicas_resume_exactly(replicas_run, tmp_path, data_dir):
  _, straight, expected = replicas_run
  config = load_config("mlp", data_dir=data_dir, **RUN, **{
      "replicas.seeds": SEEDS, "replicas.learning_rates": LEARNING_RATES})

  def stop_after_step_15(step):  # the checkpoint of step 10 is the newest
    if step == 15:
      raise KeyboardInterrupt

  workdir = str(tmp_path / "resumed")
  with pytest.raises(KeyboardInterrupt):
    loop.train_and_evaluate(config, workdir, step_hook=stop_after_step_15)
  assert loop.train_and_evaluate(config, workdir) == expected
  resumed = writers.read_metrics(workdir)
  key = "replica_1/train/loss"
  assert [r[key] for r in resumed if key in r][-2:] == [r[key] for r in straight if key in r][-2:]


@pytest.mark.parametrize("overrides, message", [
    ({"replicas.seeds": (0, 1), "replicas.learning_rates": (1e-3,)}, "as long as replicas.seeds"),
    ({"replicas.learning_rates": (1e-3, -1.0)}, "positive numbers"),
    ({"replicas.seeds": (0, 1), "steps_per_call": 5}, "1 when training replicas"),
])
def test_bad_replicas_are_one_line_errors(overrides, message, tmp_path, data_dir):
  config = load_config("mlp", data_dir=data_dir, **overrides)
  with pytest.raises(errors.ConfigError, match=message):
    loop.train_and_evaluate(config, str(tmp_path))
