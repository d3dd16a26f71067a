"""Disentangling VAE objectives (research/tasks/vae.py): beta-TCVAE's minibatch-weighted
sampling against brute force and a Gaussian's closed-form total correlation, the DIP-VAE
penalties against hand computations, and the dsprites_vae config's objectives on
dsprites_like/small."""
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from research import errors
from research.data import preprocess
from research.models import conv_vae
from research.tasks import vae
from research.train import loop, validation
from tests.conftest import load_config
from tests.test_step import build, run_steps

OBJECTIVES = ("beta_vae", "beta_tcvae", "dip_vae_i", "dip_vae_ii")


def log_normal(z, mean, log_var):
  return stats.norm.logpdf(z, mean, math.exp(0.5 * log_var))


def test_kl_decomposition_matches_brute_force_on_a_tiny_batch():
  rng = np.random.default_rng(0)
  batch, dims, dataset_size = 4, 3, 100
  mean, log_var = rng.normal(size=(batch, dims)), rng.normal(scale=0.5, size=(batch, dims))
  z = mean + np.exp(0.5 * log_var) * rng.normal(size=(batch, dims))
  terms = vae.kl_decomposition(jnp.asarray(z), jnp.asarray(mean), jnp.asarray(log_var),
                               dataset_size)
  weight = 1.0 / (dataset_size * batch)  # minibatch-weighted sampling: each x_j 1 / (N M)
  for i in range(batch):
    log_q_given = [[log_normal(z[i, l], mean[j, l], log_var[j, l]) for l in range(dims)]
                   for j in range(batch)]
    log_qz = math.log(sum(weight * math.exp(sum(row)) for row in log_q_given))
    log_marginals = sum(math.log(sum(weight * math.exp(log_q_given[j][l]) for j in range(batch)))
                        for l in range(dims))
    log_posterior = sum(log_q_given[i])
    log_prior = sum(stats.norm.logpdf(z[i]))
    np.testing.assert_allclose(terms["mi"][i], log_posterior - log_qz, rtol=1e-5)
    np.testing.assert_allclose(terms["tc"][i], log_qz - log_marginals, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(terms["dim_kl"][i], log_marginals - log_prior, rtol=1e-5)
    total = terms["mi"][i] + terms["tc"][i] + terms["dim_kl"][i]
    np.testing.assert_allclose(total, log_posterior - log_prior, rtol=1e-5, atol=1e-5)


def gaussian_tc_error(batch: int, seed: int, covariance: np.ndarray, noise: float) -> float:
  """The MWS TC estimate minus the closed form, when the batch is the whole data set
  (N = M) of posteriors N(mu_j, noise I), mu_j ~ N(0, covariance - noise I): the aggregate
  posterior tends to N(0, covariance). The estimate's offset (D - 1) log M is taken off."""
  rng = np.random.default_rng(seed)
  dims = len(covariance)
  mean = rng.multivariate_normal(np.zeros(dims), covariance - noise * np.eye(dims), batch)
  z = mean + math.sqrt(noise) * rng.normal(size=(batch, dims))
  log_var = jnp.full((batch, dims), math.log(noise), jnp.float32)
  tc = vae.kl_decomposition(jnp.asarray(z, jnp.float32), jnp.asarray(mean, jnp.float32),
                            log_var, batch)["tc"]
  closed_form = 0.5 * np.sum(np.log(np.diag(covariance))) - 0.5 * np.linalg.slogdet(covariance)[1]
  return float(tc.mean()) - (dims - 1) * math.log(batch) - closed_form


def test_mws_total_correlation_converges_to_the_gaussians_closed_form():
  covariance = np.array([[1.0, 0.8, 0.3], [0.8, 1.0, 0.5], [0.3, 0.5, 1.0]])  # TC 0.674 nats
  errors_by_batch = {batch: np.mean([gaussian_tc_error(batch, seed, covariance, 0.1)
                                     for seed in range(3)]) for batch in (100, 3000)}
  assert abs(errors_by_batch[3000]) < 0.06 < abs(errors_by_batch[100])


def hand_dip(mean, log_var, lambda_od, lambda_d, full):
  covariance = np.cov(mean, rowvar=False, bias=True)
  if full:
    covariance = covariance + np.diag(np.exp(log_var).mean(0))
  dims = len(covariance)
  off = sum(covariance[k, l] ** 2 for k, l in itertools.product(range(dims), repeat=2) if k != l)
  return lambda_od * off + lambda_d * sum((covariance[k, k] - 1.0) ** 2 for k in range(dims))


@pytest.mark.parametrize("full", [False, True])
def test_dip_penalty_matches_a_hand_computation(full):
  rng = np.random.default_rng(1)
  mean, log_var = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
  covariance = vae.aggregate_covariance(jnp.asarray(mean), jnp.asarray(log_var), full)
  penalty = vae.dip_penalty(covariance, 2.0, 7.0)
  np.testing.assert_allclose(penalty, hand_dip(mean, log_var, 2.0, 7.0, full), rtol=1e-5)


def whitened(batch: int, dims: int, variance: float) -> np.ndarray:
  """Means whose batch covariance is exactly ``variance`` I."""
  x = np.random.default_rng(2).normal(size=(batch, dims))
  x -= x.mean(0)
  return x @ np.linalg.inv(np.linalg.cholesky(np.cov(x, rowvar=False, bias=True))).T * math.sqrt(
      variance)


def test_dip_penalty_is_zero_for_identity_covariance():
  def penalty(mean, log_var, full):
    covariance = vae.aggregate_covariance(jnp.asarray(mean), jnp.asarray(log_var), full)
    return float(vae.dip_penalty(covariance, 10.0, 100.0))

  means = whitened(64, 4, 1.0)
  assert penalty(means, np.zeros((64, 4)), False) == pytest.approx(0.0, abs=1e-8)
  half = whitened(64, 4, 0.5)  # Cov[mu] = I / 2, E[sigma^2] = 1 / 2: the aggregate's is I
  log_var = np.full((64, 4), math.log(0.5))
  assert penalty(half, log_var, True) == pytest.approx(0.0, abs=1e-8)
  assert penalty(half, log_var, False) == pytest.approx(100.0 * 4 * 0.25, rel=1e-5)


def tiny(arg: str, data_dir: str, **overrides):
  """dsprites_vae on dsprites_like/small with a small convolutional model."""
  fields = {"model.channels": (4, 4, 8, 8), "model.hidden": 16, "model.latent_dim": 4,
            "optimizer.learning_rate": 1e-3}
  return load_config("dsprites_vae", f"{arg},small", data_dir=data_dir, **{**fields, **overrides})


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_each_objective_trains_a_few_steps_on_small_sprites(objective, data_dir):
  config = tiny(objective, data_dir)
  task, train_step, state, batch = build(config, 32, 30)

  processed = preprocess.parse(config.data.preprocess)(batch, jax.random.PRNGKey(0))

  @jax.jit
  def loss(params, model_state):
    return task.loss_fn(params, model_state, processed, jax.random.PRNGKey(0), False)

  first, (outputs, _) = loss(state.params, state.model_state)
  state, history = run_steps(train_step, state, batch, 30)
  last, _ = loss(state.params, state.model_state)
  assert float(last) < float(first)
  penalty = {"beta_tcvae": ("tc", (config.task.beta - 1.0)), "dip_vae_i": ("dip", 1.0),
             "dip_vae_ii": ("dip", 1.0)}.get(objective)
  if penalty is None:  # the ELBO's beta-VAE: no batch terms
    assert "loss" not in task.metrics and "tc" not in outputs
    return
  name, weight = penalty
  np.testing.assert_allclose(outputs["loss"], outputs["neg_elbo"] + weight * outputs[name],
                             rtol=1e-5)
  np.testing.assert_allclose(float(first), float(outputs["loss"].mean()), rtol=1e-6)
  assert all(np.isfinite(h["loss"]) and np.isfinite(h[name]) for h in history)
  if objective == "beta_tcvae":
    np.testing.assert_allclose(outputs["mi"] + outputs["tc"] + outputs["dim_kl"],
                               outputs["neg_bound"] - outputs["recon_nll"], rtol=1e-4, atol=1e-3)
  else:
    assert np.all(outputs["dip"] == outputs["dip"][0]) and outputs["dip"][0] > 0


def test_the_config_builds_burgess_et_al_s_architecture():
  config = load_config("dsprites_vae", None)
  assert config.task.objective == "elbo" and config.task.beta == 4.0
  fields = {k: v for k, v in config.model.to_dict().items() if k != "name"}
  model = conv_vae.Model(**{**fields, "image_shape": (64, 64, 1)})
  params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 1)))["params"]
  kernels = {name: tuple(layer["kernel"].shape) for name, layer in params.items()}
  assert kernels == {
      "conv1": (4, 4, 1, 32), "conv2": (4, 4, 32, 32), "conv3": (4, 4, 32, 64),
      "conv4": (4, 4, 64, 64), "encoder_dense": (1024, 256), "posterior": (256, 20),
      "decoder_dense": (10, 256), "decoder_coarse": (256, 1024), "deconv1": (4, 4, 64, 64),
      "deconv2": (4, 4, 64, 32), "deconv3": (4, 4, 32, 32), "deconv4": (4, 4, 32, 1)}
  # conv_vae's two convolutions keep their names (and so its checkpoints)
  small = conv_vae.Model(image_shape=(8, 8, 1), channels=(4, 8), hidden=16, latent_dim=3)
  names = set(small.init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 1)))["params"])
  assert names == {"conv1", "conv2", "encoder_dense", "posterior", "decoder_dense",
                   "decoder_coarse", "deconv1", "deconv2"}


@pytest.mark.parametrize("arg, overrides, message", [
    ("beta_tcvae", {"task.dataset_size": 0}, "task.dataset_size=0"),
    ("dip_vae_i", {"task.kl_warmup_steps": 100}, "task.kl_warmup_steps=100"),
    ("dip_vae_ii", {"microbatch_size": 16}, "microbatch_size=16"),
    ("dip_vae_i", {"task.lambda_od": -1.0}, "task.lambda_od=-1.0"),
    ("beta_vae", {"task.objective": "factor_vae"}, "beta_tcvae, dip_vae_i, dip_vae_ii"),
])
def test_bad_disentangling_fields_are_one_line_errors(arg, overrides, message, data_dir, tmp_path):
  config = tiny(arg, data_dir, **overrides)
  with pytest.raises(errors.ConfigError, match=message) as e:
    validation.validate(config, str(tmp_path))
  assert "\n" not in str(e.value)


def test_a_beta_tcvae_run_ends_with_the_disentanglement_scores(data_dir, tmp_path):
  config = tiny("beta_tcvae", data_dir, **{"total_steps": 4, "eval_every_steps": 4,
                                           "checkpoint_every_steps": 4, "log_every_steps": 2})
  config.evals.disentanglement.update(dict(num_train=300, num_test=200, batch_size=16,
                                           num_votes_train=20, num_votes_eval=10,
                                           num_variance=200))
  results = loop.train_and_evaluate(config, str(tmp_path / "run"))
  for name in ("tc", "mi", "dim_kl", "loss", "neg_elbo"):
    assert np.isfinite(results[f"test/{name}"]) and np.isfinite(results[f"val/{name}"]), name
  for name in ("mig", "sap", "dci_disentanglement", "factor_vae_score", "beta_vae_score"):
    assert 0.0 <= results[f"test/{name}"] <= 1.0, name
