"""Kingma et al. (2014)'s M1+M2: frozen parameters, the Gaussian likelihood, M2's loss on
M1's sampled codes, the config's required M1 run, and M1+M2 on digits after a tiny VAE."""
import jax
import numpy as np
import pytest

from research import errors
from research.core import optim
from research.tasks import likelihoods, m1m2, semi_supervised
from research.train import loop, restore, validation
from tests.conftest import load_config
from tests.test_step import build, run_steps
from tests.test_vae import processed

M1_FIELDS = {"model.m1_hidden": (16,), "model.m1_latent_dim": 6}
M2_FIELDS = {"model.hidden": (16,), "model.classifier_hidden": (16,), "model.latent_dim": 4}


def tiny(**overrides):
  return load_config("m1m2", "digits", **{"init_from.workdir": "unused", **M1_FIELDS,
                                          **M2_FIELDS, **overrides})


def test_the_gaussian_likelihood_is_the_normal_density_summed_over_the_input():
  rng = np.random.default_rng(0)
  x, mean, log_var = (rng.normal(size=(3, 5)).astype(np.float32) for _ in range(3))
  nll = likelihoods.NLL["gaussian"](np.stack([mean, log_var], -1), x)
  expected = -jax.scipy.stats.norm.logpdf(x, mean, np.exp(0.5 * log_var)).sum(-1)
  np.testing.assert_allclose(nll, expected, rtol=1e-5)
  assert likelihoods.OUTPUTS_PER_PIXEL["gaussian"] == 2


def test_frozen_modules_keep_their_parameters_while_m2_moves(data_dir):
  config = tiny(data_dir=data_dir, **{"optimizer.schedule": "constant"})
  task, train_step, state, batch = build(config, 16, 3)
  initial = jax.tree.map(np.asarray, state.params)
  # stop_gradient alone keeps M1 still: no gradient reaches it.
  grads = jax.grad(lambda p: task.loss_fn(p, state.model_state, processed(config, batch),
                                          jax.random.PRNGKey(1), True)[0])(state.params)
  for name in ("encoder", "posterior"):
    assert all(np.all(g == 0) for g in jax.tree.leaves(grads[name])), name
  state, _ = run_steps(train_step, state, batch, 3)
  for name in ("encoder", "posterior"):
    jax.tree.map(np.testing.assert_array_equal, initial[name], jax.tree.map(np.asarray,
                                                                            state.params[name]))
  moved = jax.tree.map(lambda a, b: bool(np.any(a != np.asarray(b))), initial["m2"],
                       state.params["m2"])
  assert all(jax.tree.leaves(moved))
  # A frozen name the model lacks is refused when the optimizer first sees the parameters.
  config.optimizer.frozen = ("encoder", "decoder")
  with pytest.raises(errors.ConfigError, match="decoder"):
    optim.make_optimizer(config.optimizer, 3).init(initial)


def test_the_loss_is_m2s_on_codes_sampled_from_m1_with_the_gaussian_likelihood(data_dir):
  config = tiny(data_dir=data_dir)
  task, _, state, batch = build(config, 8, 1)
  assert isinstance(task, m1m2.Task)
  batch, rng = processed(config, batch), jax.random.PRNGKey(3)
  batch["label"] = np.where(np.arange(8) % 2, np.asarray(batch["label"]), -1)  # both kinds
  loss, (outputs, _) = jax.jit(task.loss_fn, static_argnums=4)(state.params, state.model_state,
                                                               batch, rng, False)
  # By hand: z1 = mean + sigma * eps from M1's posterior with the key M1+M2 gives it ...
  m1_rng, m2_rng = jax.random.split(rng)
  _, sample_rng = jax.random.split(m1_rng)
  mean, log_var = task.model.apply({"params": state.params}, batch["image"],
                                   method="m1_encode")
  z1 = mean + np.exp(0.5 * log_var) * jax.random.normal(sample_rng, (1,) + mean.shape)[0]
  # ... and an M2 of its own over z1 with the Gaussian likelihood, holding M1+M2's M2.
  m2_config = load_config("m2", "digits", data_dir=data_dir, **M2_FIELDS,
                          **{"task.likelihood": "gaussian", "model.image_shape": (6,)})
  m2_task = semi_supervised.Task(m2_config)
  m2_loss, (m2_outputs, _) = m2_task.loss_fn(state.params["m2"], {}, {**batch, "image": z1},
                                             m2_rng, False)
  np.testing.assert_allclose(float(loss), float(m2_loss), rtol=1e-5)
  np.testing.assert_allclose(outputs["neg_bound"], m2_outputs["neg_bound"], rtol=1e-5)


def test_the_config_needs_the_m1_run(data_dir):
  config = load_config("m1m2", "digits", data_dir=data_dir)
  with pytest.raises(errors.ConfigError, match="init_from.workdir") as error:
    validation.validate(config, None)
  assert "\n" not in str(error.value)
  config.init_from.workdir = "runs/m1"
  validation.validate(config, None)
  assert load_config("m2", "digits").optimizer.get("frozen") is None  # others unchanged


def test_m1m2_on_digits_after_a_tiny_vae(data_dir, tmp_path):
  vae_config = load_config("vae", "digits", data_dir=data_dir, **{
      "total_steps": 50, "model.hidden": (32,), "model.latent_dim": 8,
      "model.activation": "softplus"})
  for name in ("nll", "images", "latents"):
    del vae_config.evals[name]
  vae_dir, m1m2_dir = str(tmp_path / "vae"), str(tmp_path / "m1m2")
  loop.train_and_evaluate(vae_config, vae_dir)
  config = load_config("m1m2", "digits,labels=5", data_dir=data_dir, **{
      "total_steps": 100, "init_from.workdir": vae_dir, "model.m1_hidden": (32,),
      "model.m1_latent_dim": 8, **M2_FIELDS, "model.hidden": (32,),
      "model.classifier_hidden": (32,)})
  results = loop.train_and_evaluate(config, m1m2_dir)
  assert 0.0 <= results["test/accuracy"] <= 1.0
  m1 = restore.restore(vae_dir).state.params
  params = restore.restore(m1m2_dir).state.params
  for name in ("encoder", "posterior"):
    jax.tree.map(np.testing.assert_array_equal, m1[name], params[name])
