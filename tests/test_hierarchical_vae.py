"""The two-stochastic-layer VAE (bottom-up and ladder inference): its log weight against a
hand computation, its bounds' order, the importance-sampled log p(x) against a quadrature
over (z1, z2), the ladder's precision weighting, and each config's run on the digits."""
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from scipy import special, stats

from configs import hvae
from research import errors
from research.evaluation import likelihood
from research.models import hierarchical_vae
from research.train import loop, modes, validation
from research.tasks import hierarchical_vae as task_lib
from tests.conftest import load_config
from tests.test_resume import Interrupted, interrupt_at
from tests.test_step import build, run_steps

INFERENCES = hierarchical_vae.INFERENCES
IMAGE_SHAPE = (2, 2, 1)


def tiny_task(inference: str, latent_dims=(2, 1), hidden=((3,), (2,)), **overrides):
  """The task of a few-unit model on 2x2 images, built from the config alone (no data)."""
  config = load_config("hvae", **{"model.latent_dims": latent_dims, "model.hidden": hidden,
                                  "model.inference": inference, "model.image_shape": IMAGE_SHAPE,
                                  **overrides})
  return task_lib.Task(config)


def binary_images(seed: int, num: int) -> jnp.ndarray:
  return jax.random.bernoulli(jax.random.PRNGKey(seed), 0.4, (num,) + IMAGE_SHAPE).astype(
      jnp.float32)


def init_params(task, x, seed=0, scale=1.0):
  """The model's parameters for images ``x``, scaled by ``scale`` (larger: posteriors and
  priors further from N(0, I), so that every term of the log weight matters)."""
  params = task.init_variables(jax.random.PRNGKey(seed), {"image": x})["params"]
  return jax.tree.map(lambda p: p * scale, params)


def log_weights(task, params, x, rng, num_samples):
  """log w (num_samples, batch), as the NLL evaluation draws them."""
  return task.importance_log_weights(params, {}, x, None, rng)(rng, num_samples)


# A numpy reimplementation of the model's forward pass, read from its parameters.
def dense(p, h):
  return h @ np.asarray(p["kernel"]) + np.asarray(p["bias"])


def mlp(p, h):
  for i in range(len(p)):
    h = np.tanh(dense(p[f"Dense_{i}"], h))
  return h


def gaussian(p, h):
  mean, log_var = np.split(dense(p, h), 2, axis=-1)
  return mean, np.exp(log_var)


def product(a, b):
  """N(m_a, v_a) N(m_b, v_b) normalised, in closed form."""
  (m_a, v_a), (m_b, v_b) = a, b
  return (m_a * v_b + m_b * v_a) / (v_a + v_b), v_a * v_b / (v_a + v_b)


def hand_log_weight(params, x, eps, inference):
  """log p(x|z1) + log p(z1|z2) + log p(z2) - log q(z1, z2|x) for noise eps = (e1, e2)."""
  flat = np.asarray(x).reshape(len(x), -1)
  d1 = mlp(params["up_0"], flat)
  q1 = gaussian(params["posterior_0"], d1)
  if inference == "bottom_up":
    z1 = q1[0] + np.sqrt(q1[1]) * eps[0]
    q2 = gaussian(params["posterior_1"], mlp(params["up_1"], z1))
    z2 = q2[0] + np.sqrt(q2[1]) * eps[1]
    p1 = gaussian(params["prior_0"], mlp(params["down_1"], z2))
  else:
    q2 = product(gaussian(params["posterior_1"], mlp(params["up_1"], d1)),
                 (np.zeros(1), np.ones(1)))
    z2 = q2[0] + np.sqrt(q2[1]) * eps[1]
    p1 = gaussian(params["prior_0"], mlp(params["down_1"], z2))
    q1 = product(q1, p1)
    z1 = q1[0] + np.sqrt(q1[1]) * eps[0]
  logits = dense(params["likelihood"], mlp(params["down_0"], z1))
  log_px = np.sum(flat * -np.logaddexp(0, -logits) + (1 - flat) * -np.logaddexp(0, logits), -1)

  def log_n(z, g):
    return stats.norm.logpdf(z, g[0], np.sqrt(g[1])).sum(-1)

  return (log_px + log_n(z2, (0.0, 1.0)) + log_n(z1, p1) - log_n(z1, q1) - log_n(z2, q2))


@pytest.mark.parametrize("inference", INFERENCES)
def test_log_weight_matches_a_hand_computation(inference):
  task = tiny_task(inference)
  x = binary_images(0, 4)
  params = init_params(task, x, scale=2.0)
  rng = jax.random.PRNGKey(3)
  evidence = task.bottom_up(params, {}, x, rng)
  recon_nll, kls = task.sample_terms(params, {}, x, evidence, rng, 3)
  eps = task.noise(jax.random.split(rng)[0], len(x), 3)  # the noise sample_terms draws
  expected = hand_log_weight(jax.tree.map(np.asarray, params), x,
                             [np.asarray(e, np.float64) for e in eps], inference)
  np.testing.assert_allclose(np.asarray(-recon_nll - kls.sum(0)), expected, rtol=1e-5,
                             atol=1e-4)
  np.testing.assert_allclose(log_weights(task, params, x, rng, 3), expected, rtol=1e-5,
                             atol=1e-4)


@pytest.mark.parametrize("inference", INFERENCES)
def test_iwae_with_one_sample_is_the_elbo(inference):
  x = binary_images(1, 8)
  rng = jax.random.PRNGKey(5)
  losses = {}
  for objective in ("iwae", "elbo"):
    task = tiny_task(inference, **{"task.objective": objective, "task.num_samples": 1})
    params = init_params(task, x, scale=2.0)
    losses[objective], (out, _) = task.loss_fn(params, {}, {"image": x}, rng, False)
    np.testing.assert_allclose(out["neg_bound"], out["neg_elbo"], rtol=1e-6)
    np.testing.assert_allclose(out["neg_elbo"], out["recon_nll"] + out["kl"], rtol=1e-6)
    np.testing.assert_allclose(out["kl"], out["kl_z1"] + out["kl_z2"], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(losses["iwae"], losses["elbo"], rtol=1e-6)


@pytest.mark.parametrize("inference", INFERENCES)
def test_the_bounds_tighten_with_k_and_stay_below_the_nll_estimate(inference):
  task = tiny_task(inference)
  x = binary_images(2, 16)
  params = init_params(task, x, scale=2.0)
  keys = jax.random.split(jax.random.PRNGKey(0), 200)  # replicates of each bound
  bounds = {k: float(jax.vmap(lambda key, k=k: likelihood.log_mean_exp(
      log_weights(task, params, x, key, k)))(keys).mean()) for k in (1, 5, 50)}
  log_px = float(task.test_log_likelihood(params, {}, {"image": x}, jax.random.PRNGKey(1),
                                          5000, 500).mean())
  assert bounds[1] < bounds[5] < bounds[50] < log_px, (bounds, log_px)
  # The NLL estimate is below -ELBO by the average gap, far above the noise.
  assert log_px - bounds[1] > 0.1


def quadrature_log_px(task, params, x, z2_extent=8.0, z1_extent=14.0, n2=321, n1=1401):
  """log p(x) = log of the integral of p(x|z1) p(z1|z2) p(z2) over a grid of (z1, z2), for
  1-D latents, one image per row of ``x``."""
  z2 = jnp.linspace(-z2_extent, z2_extent, n2)[:, None]
  z1 = jnp.linspace(-z1_extent, z1_extent, n1)[:, None]
  variables = {"params": params}
  mean, log_var = task.model.apply(variables, 0, z2, method="conditional_prior")
  logits = task.model.apply(variables, z1, method="decode")  # (n1, 2, 2, 1, 1)
  log_px_z1 = -np.stack([task.nll_fn(logits, jnp.broadcast_to(image, (n1,) + IMAGE_SHAPE))
                         for image in x])  # (images, n1)
  log_prior = (stats.norm.logpdf(np.asarray(z2[:, 0]))[:, None]
               + stats.norm.logpdf(np.asarray(z1[None, :, 0]), np.asarray(mean),
                                   np.exp(0.5 * np.asarray(log_var))))  # (n2, n1)
  cell = math.log(2 * z2_extent / (n2 - 1)) + math.log(2 * z1_extent / (n1 - 1))
  return special.logsumexp(log_prior[None] + np.asarray(log_px_z1)[:, None], axis=(1, 2)) + cell


@pytest.mark.parametrize("inference", INFERENCES)
def test_importance_sampled_log_px_matches_a_quadrature_over_both_layers(inference):
  task = tiny_task(inference, latent_dims=(1, 1))
  x = jnp.array([[0, 0, 1, 0], [1, 1, 0, 1], [0, 1, 1, 1]], jnp.float32).reshape(
      (3,) + IMAGE_SHAPE)
  params = init_params(task, x, seed=1, scale=0.8)
  exact = quadrature_log_px(task, params, x)
  # 100,000 samples: the estimate's noise is ~0.005 nats here (its error at 20,000, ~0.01
  # to 0.03, shrinks as 1 / sqrt(k)).
  estimate = task.test_log_likelihood(params, {}, {"image": x}, jax.random.PRNGKey(2), 100_000,
                                      10_000)
  np.testing.assert_allclose(np.asarray(estimate), exact, atol=0.02)
  # The ELBO is a strict lower bound here: the posterior is not the model's.
  elbo = np.asarray(log_weights(task, params, x, jax.random.PRNGKey(3), 20000).mean(0))
  assert np.all(elbo < exact - 0.05), (elbo, exact)


def test_precision_weighting_is_the_normalised_product_of_the_gaussians():
  a = (jnp.array([0.5, -2.0, 3.0, 1.0]), jnp.array([0.2, -1.0, 2.0, -40.0]))
  b = (jnp.array([-1.0, 0.0, 1.5, 7.0]), jnp.array([1.0, 0.5, -3.0, 40.0]))
  mean, log_var = hierarchical_vae.precision_weighted(a, b)
  expected_mean, expected_var = product(*[(np.asarray(m, np.float64), np.exp(np.float64(v)))
                                          for m, v in (a, b)])
  np.testing.assert_allclose(mean, expected_mean, rtol=1e-6)
  np.testing.assert_allclose(np.exp(log_var), expected_var, rtol=1e-5)
  # The product's density, normalised on a grid, is that Gaussian's (first dimension).
  z = np.linspace(-6, 6, 4001)
  density = stats.norm.pdf(z, 0.5, math.exp(0.1)) * stats.norm.pdf(z, -1.0, math.exp(0.5))
  density /= density.sum() * (z[1] - z[0])
  np.testing.assert_allclose(density, stats.norm.pdf(z, float(mean[0]),
                                                     math.exp(0.5 * float(log_var[0]))),
                             atol=1e-6)


def test_ladder_posteriors_combine_each_estimate_with_its_prior():
  task = tiny_task("ladder")
  x = binary_images(5, 4)
  params = init_params(task, x, scale=2.0)
  variables = {"params": params}
  evidence = task.model.apply(variables, x, method="bottom_up")
  eps = task.noise(jax.random.PRNGKey(0), len(x), 2)
  latents = task.model.apply(variables, evidence, eps, method="latents")
  (q1, q2), (p1, p2), (z1, z2) = latents["posterior"], latents["prior"], latents["z"]
  np.testing.assert_array_equal(p2[0], 0.0)
  np.testing.assert_array_equal(p2[1], 0.0)
  as_numpy = lambda g: (np.asarray(g[0]), np.exp(np.asarray(g[1])))  # noqa: E731
  for posterior, estimate, prior in ((q2, evidence[1], p2), (q1, evidence[0], p1)):
    mean, var = product(as_numpy(estimate), as_numpy(prior))
    np.testing.assert_allclose(posterior[0], mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.exp(posterior[1]), var, rtol=1e-5)
  expected_p1 = task.model.apply(variables, 0, z2, method="conditional_prior")
  np.testing.assert_allclose(p1[0], expected_p1[0], rtol=1e-6)
  np.testing.assert_allclose(z1, q1[0] + np.exp(0.5 * q1[1]) * eps[0], rtol=1e-6)


@pytest.mark.parametrize("arg", ["digits", "digits,elbo", "digits,ladder", "digits,k=50"])
def test_each_config_trains_a_few_steps(arg, data_dir):
  config = load_config("hvae", arg, data_dir=data_dir)
  task, train_step, state, batch = build(config, 32, 3)
  state, history = run_steps(train_step, state, batch, 3)
  for h in history:
    assert np.isfinite(h["neg_bound"]) and h["neg_bound"] <= h["neg_elbo"] + 1e-3
    np.testing.assert_allclose(h["neg_elbo"], h["recon_nll"] + h["kl"], rtol=1e-5)
    np.testing.assert_allclose(h["kl"], h["kl_z1"] + h["kl_z2"], rtol=1e-4)
  assert history[-1]["neg_bound"] < history[0]["neg_bound"]


def test_ladder_digits_runs_its_evaluations_and_resumes_exactly(data_dir, tmp_path):
  config = load_config("hvae", "digits,ladder", data_dir=data_dir, total_steps=20,
                       **{"evals.nll.num_samples": 20})
  straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
  expected = loop.train_and_evaluate(config, straight)
  assert expected["test/nll"] < expected["test/neg_elbo"]
  assert {"test/kl_z1", "test/kl_z2", "val/neg_bound"} <= set(expected)
  assert {n.rsplit("_", 1)[0] for n in os.listdir(os.path.join(straight, "images"))} == {
      "reconstructions", "samples"}
  with pytest.raises(Interrupted):
    loop.train_and_evaluate(config, resumed, step_hook=interrupt_at(15))
  assert loop.train_and_evaluate(config, resumed) == expected  # from step 10's checkpoint
  restore = ocp.StandardCheckpointer().restore
  a, b = (restore(os.path.join(w, "checkpoints", "20", "default")) for w in (straight, resumed))
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(x, y)
  samples = modes.sample_checkpoint(config, straight, 8)
  assert samples["samples"] == 8.0


def test_the_configs_inference_choices_are_the_models():
  assert hvae.ARG_CHOICES["inference"] == hierarchical_vae.INFERENCES


@pytest.mark.parametrize("overrides, message", [
    ({"model.inference": "sideways"}, "bottom_up or ladder"),
    ({"model.hidden": ((200, 200),)}, "one tuple of layer widths per latent layer"),
    ({"task.objective": "beta_tcvae"}, "elbo or iwae"),
])
def test_bad_fields_are_one_line_errors(overrides, message, data_dir, tmp_path):
  config = load_config("hvae", data_dir=data_dir, **overrides)
  with pytest.raises(errors.ConfigError, match=message) as e:
    validation.validate(config, str(tmp_path))
  assert "\n" not in str(e.value)
