"""The generative (Bayes) classifier of a class-conditional VAE: its probabilities against a
brute-force computation of Bayes' rule, its class prior, and a run on digits."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special

from research.data import pipeline
from research.tasks import generative_classifier
from research.train import loop, restore
from tests.test_step import build
from tests.test_vae import processed, tiny

SAMPLES = 7


def brute_force_log_likelihoods(task, state, batch, rng):
  """log p(x | y) for every class y, sample by sample in float64: the decoder's Bernoulli
  log-likelihood plus log N(z; 0, I) minus log q(z | x, y), averaged in probability."""
  x = np.asarray(batch["image"], np.float64)
  _, sample_rng = jax.random.split(rng)
  z_rng, _ = jax.random.split(sample_rng)
  columns = []
  for label in range(task.num_classes):
    condition = jax.nn.one_hot(jnp.full((len(x),), label), task.num_classes)
    mean, log_var = (np.asarray(a, np.float64) for a in task._apply(
        state.params, state.model_state, "encode", batch["image"], condition, rng=rng))
    eps = np.asarray(jax.random.normal(z_rng, (SAMPLES,) + mean.shape), np.float64)
    z = mean + np.exp(0.5 * log_var) * eps
    logits = np.asarray(task._apply(state.params, state.model_state, "decode",
                                    jnp.asarray(z, jnp.float32), condition, rng=rng), np.float64)
    logits = logits.reshape(SAMPLES, len(x), -1)
    pixels = x.reshape(len(x), -1)
    log_px_z = np.sum(pixels * -np.logaddexp(0, -logits)
                      + (1 - pixels) * -np.logaddexp(0, logits), axis=-1)
    log_prior_z = np.sum(-0.5 * (np.log(2 * np.pi) + z ** 2), axis=-1)
    log_q = np.sum(-0.5 * (np.log(2 * np.pi) + log_var + (z - mean) ** 2 / np.exp(log_var)), -1)
    columns.append(special.logsumexp(log_px_z + log_prior_z - log_q, axis=0) - np.log(SAMPLES))
  return np.stack(columns, axis=1)


def test_probabilities_are_bayes_rule_over_brute_force_class_likelihoods(data_dir):
  config = tiny("cvae", data_dir, **{"task.class_samples": SAMPLES})
  task, _, state, batch = build(config, 16, 1)
  assert isinstance(task, generative_classifier.Task)
  batch, rng = processed(config, batch), jax.random.PRNGKey(3)
  # A prior that is not uniform, as initialize sets it from training labels.
  labels = np.r_[np.zeros(30, int), np.arange(10).repeat(7)]
  state = task.initialize(state, [{"label": labels[:50]}, {"label": labels[50:]}])
  np.testing.assert_allclose(
      np.exp(state.model_state[generative_classifier.PRIOR]["log_prior"]),
      np.bincount(labels, minlength=10) / len(labels), rtol=1e-6)
  fns = {name: jax.jit(task.prediction(name)) for name in ("probs", "logits", "features")}
  probs, logits, features = (np.asarray(fns[n](state.params, state.model_state, batch, rng))
                             for n in ("probs", "logits", "features"))
  expected = brute_force_log_likelihoods(task, state, batch, rng)
  np.testing.assert_allclose(features, expected, rtol=1e-4, atol=1e-3)
  log_prior = np.log(np.bincount(labels, minlength=10) / len(labels))
  np.testing.assert_allclose(logits, expected + log_prior, rtol=1e-4, atol=1e-3)
  assert probs.shape == (16, 10)
  np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
  np.testing.assert_allclose(probs, special.softmax(expected + log_prior, axis=-1), atol=1e-4)
  # The ELBO estimate: below the importance-sampled one on average (Jensen).
  config.task.class_bound = "elbo"
  elbo_task, _, _, _ = build(config, 16, 1)
  elbo = np.asarray(jax.jit(elbo_task.features)(state.params, state.model_state, batch, rng))
  assert np.mean(elbo) < np.mean(features)


def test_a_class_absent_from_training_keeps_a_prior_of_one_count(data_dir):
  task, _, state, _ = build(tiny("cvae", data_dir), 16, 1)
  state = task.initialize(state, [{"label": np.array([0, 0, 1, 2])}])
  prior = np.exp(np.asarray(state.model_state[generative_classifier.PRIOR]["log_prior"]))
  np.testing.assert_allclose(prior, np.r_[2, 1, 1, np.ones(7)] / 11, rtol=1e-6)


@pytest.mark.parametrize("field, value", [("task.class_bound", "exact"),
                                          ("task.class_samples", 0),
                                          ("task.class_prior", "balanced"),
                                          ("model.num_classes", 0)])
def test_bad_fields_are_refused(field, value, data_dir):
  from research import errors
  config = tiny("cvae", data_dir, **{field: value})
  with pytest.raises(errors.ConfigError, match=field.replace(".", r"\.")):
    generative_classifier.Task.validate_config(config)


def test_the_cvae_config_classifies_digits_and_keeps_its_training_prior(data_dir, tmp_path):
  config = tiny("cvae", data_dir, **{"total_steps": 150, "model.hidden": (64,)})
  results = loop.train_and_evaluate(config, str(tmp_path))
  assert results["test/accuracy"] > 0.5  # chance: 0.1
  assert 0.0 <= results["test/ece"] <= 1.0
  run = restore.restore(str(tmp_path))
  prior = np.exp(np.asarray(run.state.model_state[generative_classifier.PRIOR]["log_prior"]))
  labels = pipeline.load_split(run.config.data, run.config.data.train_split)["label"]
  np.testing.assert_allclose(prior, np.bincount(labels, minlength=10) / len(labels), rtol=1e-5)
