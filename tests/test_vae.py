"""The VAE family: bounds against closed forms and brute force, likelihoods, configs,
latent summaries, and sampling from a checkpoint."""
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import stats

from research.train import modes
from research import errors
from research.train import loop, validation
from research.data import preprocess
from research.evaluation import generative, likelihood
from research.tasks import likelihoods, vae
from tests.conftest import load_config
from tests.test_step import build, run_steps

# A 1-D linear-Gaussian model: z ~ N(0, 1), x | z ~ N(A z + B, S^2), so that
# p(x) = N(x; B, A^2 + S^2); Q is a deliberately imperfect posterior N(mean, var).
A, B, S, X = 1.5, 0.3, 0.5, 2.0
Q_MEAN, Q_LOG_VAR = 0.6, math.log(0.5)


def linear_gaussian_log_weights(z):
  """log p(x, z) - log q(z | x) for the model above, any shape of z."""
  z = z[..., None]
  zero = jnp.zeros(1)
  log_joint = (vae.gaussian_log_prob(jnp.full_like(z, X), A * z + B, jnp.full(1, 2 * math.log(S)))
               + vae.gaussian_log_prob(z, zero, zero))
  return log_joint - vae.gaussian_log_prob(z, jnp.full(1, Q_MEAN), jnp.full(1, Q_LOG_VAR))


def exact_log_px():
  return stats.norm.logpdf(X, B, math.sqrt(A * A + S * S))


def q_grid(n=801, extent=8.0):
  """Quadrature nodes and weights of q(z|x) (normalised to sum to 1)."""
  sd = math.exp(0.5 * Q_LOG_VAR)
  z = np.linspace(Q_MEAN - extent * sd, Q_MEAN + extent * sd, n)
  w = stats.norm.pdf(z, Q_MEAN, sd)
  return z, w / w.sum()


def iwae_mc(k, replicates, seed=0):
  """Monte Carlo IWAE_k bounds: mean and standard error over ``replicates``."""
  z = vae.reparameterize(jax.random.PRNGKey(seed), jnp.full((replicates, 1), Q_MEAN),
                         jnp.full((replicates, 1), Q_LOG_VAR), k)[..., 0]
  bounds = np.asarray(likelihood.log_mean_exp(linear_gaussian_log_weights(z), axis=0))
  return bounds.mean(), bounds.std() / math.sqrt(replicates)


def test_elbo_and_iwae_match_brute_force_on_a_linear_gaussian_model():
  z, w = q_grid()
  log_w = np.asarray(linear_gaussian_log_weights(jnp.asarray(z)))
  elbo = np.sum(w * log_w)
  # k=2 by a 2-D quadrature: E_{z1,z2 ~ q} log((w(z1) + w(z2)) / 2).
  iwae2 = np.sum(w[:, None] * w[None, :] * (np.logaddexp(log_w[:, None], log_w[None, :]) - math.log(2)))
  for k, reference in [(1, elbo), (2, iwae2)]:
    mean, se = iwae_mc(k, 200_000)
    assert abs(mean - reference) < 4 * se + 1e-4, (k, mean, reference, se)
  # The bound tightens with k and stays below log p(x).
  assert elbo < iwae2 < iwae_mc(10, 20_000)[0] < exact_log_px()
  # The ELBO in closed form (expected Gaussian log-likelihood minus the KL) agrees too.
  v = math.exp(Q_LOG_VAR)
  expected_log_lik = stats.norm.logpdf(X, A * Q_MEAN + B, S) - A * A * v / (2 * S * S)
  kl = float(vae.gaussian_kl(jnp.asarray(Q_MEAN), jnp.asarray(Q_LOG_VAR)))
  np.testing.assert_allclose(expected_log_lik - kl, elbo, rtol=1e-6)


def test_importance_sampled_likelihood_converges_to_the_marginal():
  def log_weights_fn(rng, n):
    z = vae.reparameterize(rng, jnp.full((1, 1), Q_MEAN), jnp.full((1, 1), Q_LOG_VAR), n)[..., 0]
    return linear_gaussian_log_weights(z)

  estimate = jax.jit(lambda rng: likelihood.importance_sampled_log_likelihood(
      log_weights_fn, rng, 5000, 500))(jax.random.PRNGKey(0))
  assert estimate.shape == (1,)
  np.testing.assert_allclose(float(estimate[0]), exact_log_px(), atol=5e-3)
  with pytest.raises(ValueError, match="multiple"):
    likelihood.importance_sampled_log_likelihood(log_weights_fn, jax.random.PRNGKey(0), 10, 3)


def test_log_mean_exp_is_stable_and_exact_for_one_sample():
  log_w = jnp.array([[-1000.0, 5.0], [-1001.0, 5.0]])
  np.testing.assert_allclose(likelihood.log_mean_exp(log_w), [-1000.0 + math.log((1 + math.exp(-1)) / 2), 5.0],
                             rtol=1e-6)
  np.testing.assert_array_equal(likelihood.log_mean_exp(log_w[:1]), log_w[0])


def test_closed_form_kl_matches_monte_carlo():
  mean, log_var = jnp.array([0.5, -1.0, 2.0]), jnp.array([0.3, -1.2, 0.0])
  z = vae.reparameterize(jax.random.PRNGKey(0), mean, log_var, 400_000)
  zeros = jnp.zeros(3)
  mc = jnp.mean(vae.gaussian_log_prob(z, mean, log_var) - vae.gaussian_log_prob(z, zeros, zeros))
  np.testing.assert_allclose(float(mc), float(vae.gaussian_kl(mean, log_var).sum()), rtol=1e-2)


@pytest.mark.parametrize("name", ["logistic", "categorical"])
def test_grey_level_likelihoods_are_normalised_over_the_256_levels(name):
  levels = jnp.arange(256, dtype=jnp.float32).reshape(256, 1, 1, 1) / 255
  key = jax.random.PRNGKey(0)
  params = jax.random.normal(key, (1, 1, 1, 1, likelihoods.OUTPUTS_PER_PIXEL[name])) * 2
  if name == "logistic":
    params = params.at[..., 0].set(0.4).at[..., 1].set(-3.0)
  probs = jnp.exp(-likelihoods.NLL[name](jnp.broadcast_to(params, (256,) + params.shape[1:]), levels))
  np.testing.assert_allclose(float(probs.sum()), 1.0, rtol=1e-4)
  assert np.all(np.isfinite(probs)) and float(probs.min()) >= 0


def test_bernoulli_nll_equals_the_two_sided_cross_entropy_and_its_gradient():
  """The one-softplus form agrees with optax's cross-entropy, for binary and grey x, also
  at logits large enough for a naive log(sigmoid) to overflow."""
  logits = jnp.array([-80.0, -20.0, -3.0, -0.5, 0.0, 0.7, 4.0, 25.0, 90.0]).reshape(9, 1, 1, 1, 1)
  for x in (jnp.zeros((9, 1, 1, 1)), jnp.ones((9, 1, 1, 1)), jnp.full((9, 1, 1, 1), 0.3)):
    def oracle(l):
      return optax.sigmoid_binary_cross_entropy(l[..., 0], x).sum()

    def ours(l):
      return likelihoods.bernoulli_nll(l, x).sum()

    np.testing.assert_allclose(float(ours(logits)), float(oracle(logits)), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(jax.grad(ours)(logits)),
                               np.asarray(jax.grad(oracle)(logits)), atol=1e-6)


def test_kl_warmup_weight():
  assert float(vae.kl_weight(4.0, 0, None)) == 4.0
  np.testing.assert_allclose([float(vae.kl_weight(4.0, 100, jnp.asarray(s))) for s in (0, 50, 100, 500)],
                             [0.0, 2.0, 4.0, 4.0])


def tiny(name, data_dir, **overrides):
  fields = {"model.latent_dim": 3, "evals.nll.num_samples": 20, "evals.nll.chunk": 10}
  if name == "conv_vae":
    fields.update({"model.channels": (4, 8), "model.hidden": 16})
  else:
    fields["model.hidden"] = (32,)
  return load_config(name, data_dir=data_dir, **{**fields, **overrides})


def processed(config, batch):
  return preprocess.parse(config.data.preprocess)(batch, jax.random.PRNGKey(0))


def test_iwae_with_one_sample_is_the_elbo(data_dir):
  config = tiny("iwae", data_dir, **{"task.num_samples": 1})
  task, _, state, batch = build(config, 32, 10)
  batch = processed(config, batch)
  loss_fn = jax.jit(lambda rng: task.loss_fn(state.params, state.model_state, batch, rng, False))
  loss, (out, _) = loss_fn(jax.random.PRNGKey(0))
  np.testing.assert_allclose(float(loss), float(out["neg_bound"].mean()), rtol=1e-6)
  # One sample: -IWAE_1 is the single-sample ELBO estimate, unbiased for the closed-form KL.
  outputs = jax.jit(jax.vmap(lambda rng: loss_fn(rng)[1][0]))(
      jax.random.split(jax.random.PRNGKey(1), 200))
  gaps = np.asarray(outputs["neg_bound"] - outputs["neg_elbo"])
  assert abs(gaps.mean()) < 4 * gaps.std() / math.sqrt(gaps.size)
  # More samples tighten the bound on the same model.
  @jax.jit
  def log_weights(rng):
    posterior = task._apply(state.params, state.model_state, "encode", batch["image"], None, rng=rng)
    return task.log_weights(state.params, state.model_state, batch["image"], None, *posterior, rng, 50)[1]

  log_w = log_weights(jax.random.PRNGKey(0))
  assert float(-likelihood.log_mean_exp(log_w).mean()) < float(-log_w.mean())


@pytest.mark.parametrize("name", ["vae", "iwae", "beta_vae", "conv_vae", "cvae"])
def test_each_config_trains_a_few_steps(name, data_dir):
  config = tiny(name, data_dir)
  task, train_step, state, batch = build(config, 32, 5)
  state, history = run_steps(train_step, state, batch, 5)
  assert all(np.isfinite(h["neg_bound"]) and h["kl"] >= 0 for h in history)
  for h in history:
    np.testing.assert_allclose(h["neg_elbo"], h["recon_nll"] + h["kl"], rtol=1e-5)
  if name == "beta_vae":  # the warm-up counts its steps in the model state
    assert int(state.model_state[vae.WARMUP]["step"]) == 5
  nll = jax.jit(task.nll, static_argnums=(4, 5))(state.params, state.model_state,
                                                  processed(config, batch), jax.random.PRNGKey(0),
                                                  20, 10)
  assert nll.shape == (32,) and np.all(np.isfinite(nll))


def test_latent_summaries_for_two_latents(data_dir, tmp_path):
  config = tiny("cvae", data_dir, **{"model.latent_dim": 2})
  task, _, state, batch = build(config, 32, 5)
  batch = processed(config, batch)
  grids = jax.jit(task.images)(state.params, state.model_state, batch, jax.random.PRNGKey(0))
  assert grids["traversals"].shape == (2 * vae.COLUMNS, 8, 8, 1)  # one row per latent
  assert grids["manifold"].shape == (vae.COLUMNS ** 2, 8, 8, 1)
  assert grids["interpolations"].shape == (vae.COLUMNS ** 2, 8, 8, 1)
  assert all(float(g.min()) >= 0 and float(g.max()) <= 1 for g in grids.values())
  mean, log_var = jax.jit(task.encode)(state.params, state.model_state, batch,
                                       jax.random.PRNGKey(0))
  scalars = generative.latent_report(np.asarray(mean), np.asarray(vae.gaussian_kl(mean, log_var)),
                                     np.asarray(batch["label"]), str(tmp_path), "test")
  assert 0 <= scalars["active_units"] <= 2 and scalars["kl_max_dim"] >= 0
  assert sorted(os.listdir(tmp_path)) == ["test_latent_scatter.png", "test_latents.csv"]
  np.testing.assert_allclose(likelihoods.bits_per_dim(88.0, (8, 8, 1)), 88.0 / (64 * math.log(2)))


def test_active_units_and_codes():
  means = np.stack([np.linspace(-1, 1, 100), np.full(100, 0.5), np.linspace(0, 0.1, 100)], 1)
  variance, active = generative.active_units(means)
  assert active == 1 and variance[1] == 0
  codes = generative.interpolations(jnp.zeros((2, 3)), jnp.ones((2, 3)), 4)
  np.testing.assert_allclose(codes[:4, 0], [0, 1 / 3, 2 / 3, 1], rtol=1e-6)
  sweep = generative.traversals(jnp.array([0.1, 0.2]), 3, 2.0)
  np.testing.assert_allclose(sweep, [[-2, 0.2], [0, 0.2], [2, 0.2], [0.1, -2], [0.1, 0], [0.1, 2]])


@pytest.mark.parametrize("overrides, message", [
    ({"task.likelihood": "logistic"}, "task.likelihood='logistic'"),
    ({"task.likelihood": "poisson"}, "one of"),
    ({"evals.nll.num_samples": 25}, "multiple of evals.nll.chunk"),
    ({"task.objective": "wake_sleep"}, "elbo or iwae"),
    ({"task.sample_class": 3}, "unconditional"),
])
def test_bad_vae_fields_are_one_line_errors(overrides, message, data_dir, tmp_path):
  config = load_config("vae", data_dir=data_dir, **overrides)
  with pytest.raises(errors.ConfigError, match=message) as e:
    validation.validate(config, str(tmp_path))
  assert "\n" not in str(e.value)


def test_sample_mode_from_a_checkpoint(data_dir, tmp_path):
  config = tiny("cvae", data_dir, **{"total_steps": 10, "checkpoint_every_steps": 10,
                                     "eval_every_steps": 10, "task.sample_class": 7})
  workdir = str(tmp_path / "run")
  with pytest.raises(errors.UserError, match="no checkpoint"):
    modes.sample_checkpoint(config, workdir, 16)
  results = loop.train_and_evaluate(config, workdir)
  assert np.isfinite(results["test/nll"]) and results["test/nll"] <= results["test/neg_elbo"] + 1.0
  results = modes.sample_checkpoint(config, workdir, 12)
  assert results == {"samples": 12.0, "step": 10.0, "draw": 0.0}
  samples = np.load(os.path.join(workdir, "samples", "samples_00000010_000.npy"))
  assert samples.shape == (12, 8, 8, 1) and 0 <= samples.min() <= samples.max() <= 1
  assert os.path.exists(os.path.join(workdir, "samples", "samples_00000010_000.png"))
  images = os.listdir(os.path.join(workdir, "images"))
  assert {n.rsplit("_", 1)[0] for n in images} == {
      "reconstructions", "samples", "interpolations", "traversals"}
