"""A finished run restored from its workdir alone: predictions equal to what the training
run reported, and --mode=eval / --mode=sample built on it."""

import jax
import numpy as np
import pytest

from research import errors
from research.core import writers
from research.data import pipeline, splits
from research.train import loop, modes, restore, workdir as workdir_lib
from tests.conftest import load_config


def raw_test_split(config):
  """The test split as the run read it (raw arrays), and its preprocessing."""
  data = splits.RunData(config.data, "", config.eval_batch_size)
  return data.arrays("test")


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory):
  """A cnn:digits and a vae:digits run, each trained 20 steps in its own workdir."""
  runs = {}
  for name, overrides in (("cnn", {"model.conv_features": (8,), "model.dense_features": (16,)}),
                          ("vae", {"model.latent_dim": 3, "evals.nll.num_samples": 20,
                                   "evals.nll.chunk": 10})):
    workdir = str(tmp_path_factory.mktemp(name))
    config = load_config(name, data_dir=data_dir, **overrides)
    runs[name] = (config, workdir, loop.train_and_evaluate(config, workdir))
  return runs


def test_restored_classifier_predicts_the_reported_test_accuracy(trained):
  config, workdir, results = trained["cnn"]
  run = restore.restore(workdir)
  assert run.step == 20 and run.config.model.conv_features == (8,)
  arrays = raw_test_split(run.config)
  probs = run.predict("probs", {"image": arrays["image"]})
  accuracy = float(np.mean(probs.argmax(-1) == arrays["label"]))
  assert accuracy == pytest.approx(results["test/accuracy"], abs=1e-6)
  np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
  logits = run.predict("logits", {"image": arrays["image"][:5]})
  np.testing.assert_allclose(jax.nn.softmax(logits), probs[:5], rtol=1e-5, atol=1e-6)
  features = run.predict("features", {"image": arrays["image"][:5]})
  assert features.shape == (5, 16)
  kernel = run.state.params["Dense_1"]["kernel"]
  np.testing.assert_allclose(features @ np.asarray(kernel) + np.asarray(
      run.state.params["Dense_1"]["bias"]), logits, rtol=1e-4, atol=1e-4)


def test_restored_vae_gives_the_reported_test_elbo_and_nll(trained):
  config, workdir, results = trained["vae"]
  run = restore.restore(workdir)
  arrays = raw_test_split(run.config)
  # The evaluation's binarization and sampling keys: batch i gets fold_in(eval key, i).
  # The last batch is padded to the evaluation's batch size, as the evaluation's is.
  key = jax.random.PRNGKey(0)
  elbos, nlls = [], []
  for i, batch in enumerate(pipeline.eval_batches(arrays, run.config.eval_batch_size)):
    real, rng = batch.pop("mask") > 0, jax.random.fold_in(key, i)
    elbos.append(run.predict("elbo", batch, rng)[real])
    nlls.append(run.predict("nll", batch, rng, num_samples=20, chunk=10)[real])
  assert -np.concatenate(elbos).mean() == pytest.approx(results["test/neg_elbo"], rel=1e-5)
  assert np.concatenate(nlls).mean() == pytest.approx(results["test/nll"], rel=1e-5)
  mean, log_var = run.predict("encode", {"image": arrays["image"][:4]})
  assert mean.shape == log_var.shape == (4, 3)
  assert run.predict("reconstruct", {"image": arrays["image"][:4]}).shape == (4, 8, 8, 1)


def test_eval_mode_recomputes_the_results_from_the_workdir(trained):
  config, workdir, results = trained["cnn"]
  training_log = writers.read_metrics(workdir)
  recorded = workdir_lib.read_results(workdir, run_fields=True)
  again = modes.evaluate_checkpoint(None, workdir)  # config.json alone
  assert again == pytest.approx(results)
  assert workdir_lib.read_results(workdir) == pytest.approx(results)
  # The run's fields (its config's name, gate, training wall time) stay.
  rewritten = workdir_lib.read_results(workdir, run_fields=True)
  assert {k: rewritten[k] for k in workdir_lib.RUN_FIELDS} == {
      k: recorded[k] for k in workdir_lib.RUN_FIELDS}
  assert writers.read_metrics(workdir) == training_log  # its own log, in WORKDIR/eval
  logged = {k: v for r in writers.read_metrics(f"{workdir}/eval") for k, v in r.items()}
  assert logged["test/accuracy"] == pytest.approx(results["test/accuracy"])


def test_sample_mode_on_a_restored_vae(trained):
  _, workdir, _ = trained["vae"]
  out = modes.sample_checkpoint(None, workdir, 6)
  assert out == {"samples": 6.0, "step": 20.0, "draw": 0.0}
  samples = np.load(f"{workdir}/samples/samples_00000020_000.npy")
  assert samples.shape == (6, 8, 8, 1) and 0 <= samples.min() <= samples.max() <= 1
  assert modes.sample_checkpoint(None, workdir, 6)["draw"] == 1.0  # a new draw, kept apart
  again = np.load(f"{workdir}/samples/samples_00000020_001.npy")
  assert not np.array_equal(again, samples)
  np.testing.assert_array_equal(np.load(f"{workdir}/samples/samples_00000020_000.npy"), samples)


def test_a_classifier_cannot_sample_and_an_empty_workdir_is_refused(trained, tmp_path):
  _, workdir, _ = trained["cnn"]
  with pytest.raises(errors.ConfigError, match="cannot sample"):
    modes.sample_checkpoint(None, workdir, 4)
  with pytest.raises(errors.UserError, match="no checkpoint"):
    restore.restore(str(tmp_path))
  assert list(tmp_path.iterdir()) == []  # nothing created
