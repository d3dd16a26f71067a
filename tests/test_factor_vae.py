"""FactorVAE (research/tasks/factor_vae.py) and the core's second parameter group: the
permutation, the density-ratio estimate of a Gaussian's total correlation against its closed
form, gradients that stay in their own group, the discriminator's own optimizer, and the
dsprites_vae:factor_vae config's runs on dsprites_like/small, resumed exactly."""
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

from research import errors
from research.core import optim, state as state_lib, step as step_lib
from research.data import preprocess
from research.models import discriminator
from research.tasks import factor_vae
from research.train import loop, replicas, validation
from tests.conftest import load_config
from tests.test_step import build, run_steps

# A Gaussian with unit variances: its total correlation is -1/2 log det(correlation).
CORRELATION = np.array([[1.0, 0.8, 0.3], [0.8, 1.0, 0.5], [0.3, 0.5, 1.0]])
GAUSSIAN_TC = -0.5 * np.linalg.slogdet(CORRELATION)[1]  # 0.674 nats


def gaussian_codes(rng, num: int) -> jnp.ndarray:
  return jax.random.multivariate_normal(rng, jnp.zeros(3), jnp.asarray(CORRELATION), (num,))


def test_the_permutation_keeps_each_dimension_and_breaks_their_dependence():
  z = gaussian_codes(jax.random.PRNGKey(0), 20_000)
  permuted = factor_vae.permute_dims(jax.random.PRNGKey(1), z)
  np.testing.assert_array_equal(np.sort(permuted, 0), np.sort(z, 0))  # the same marginals
  assert np.mean(np.asarray(permuted) == np.asarray(z)) < 1e-3  # (a few fixed points)
  np.testing.assert_allclose(np.corrcoef(z, rowvar=False), CORRELATION, atol=0.02)
  np.testing.assert_allclose(np.corrcoef(permuted, rowvar=False), np.eye(3), atol=0.03)


def test_the_density_ratio_estimate_converges_to_the_gaussians_total_correlation():
  """A discriminator trained as FactorVAE's (the batch against itself permuted) reads the
  closed-form TC, and its logits the log density ratio log q(z) - sum_l log q(z_l)."""
  model = discriminator.Model(hidden=(64, 64))
  params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 3)))["params"]
  optimizer = optax.adam(3e-3)

  def loss(params, key):
    data_key, permutation_key = jax.random.split(key)
    z = gaussian_codes(data_key, 512)
    permuted = factor_vae.permute_dims(permutation_key, z)
    terms = factor_vae.density_ratio_terms(model.apply({"params": params}, z),
                                           model.apply({"params": params}, permuted))
    return terms["discriminator_loss"].mean()

  def train_step(carry, key):
    params, opt_state = carry
    updates, opt_state = optimizer.update(jax.grad(loss)(params, key), opt_state)
    return (optax.apply_updates(params, updates), opt_state), None

  keys = jax.random.split(jax.random.PRNGKey(1), 3000)
  (params, _), _ = jax.jit(lambda p: jax.lax.scan(train_step, (p, optimizer.init(p)), keys))(
      params)
  z = gaussian_codes(jax.random.PRNGKey(2), 50_000)
  logits = model.apply({"params": params}, z)
  tc = factor_vae.density_ratio_terms(logits, logits)["tc"]
  assert float(tc.mean()) == pytest.approx(GAUSSIAN_TC, abs=0.06)
  precision = np.linalg.inv(CORRELATION) - np.eye(3)
  log_ratio = -0.5 * np.einsum("ni,ij,nj->n", z, precision, z) + GAUSSIAN_TC
  assert np.corrcoef(tc, log_ratio)[0, 1] > 0.97


def test_density_ratio_terms_by_hand():
  logits = jnp.array([[2.0, -1.0], [0.0, 1.0]])
  permuted = jnp.array([[0.5, 0.0], [-1.0, 1.0]])
  terms = factor_vae.density_ratio_terms(logits, permuted)
  np.testing.assert_allclose(terms["tc"], [3.0, -1.0])
  log_sigmoid = lambda x: -math.log1p(math.exp(-x))  # noqa: E731
  np.testing.assert_allclose(terms["discriminator_loss"],
                             [-0.5 * (log_sigmoid(3.0) + log_sigmoid(-0.5)),
                              -0.5 * (log_sigmoid(-1.0) + log_sigmoid(2.0))], rtol=1e-6)
  np.testing.assert_allclose(terms["discriminator_accuracy"], [0.5, 0.5])


def tiny(data_dir: str, **overrides):
  """dsprites_vae:factor_vae on dsprites_like/small with small MLPs."""
  fields = {"model.latent_dim": 4, "optimizer.learning_rate": 1e-3,
            "task.discriminator_hidden": (16, 16),
            "optimizer.groups.discriminator.learning_rate": 1e-3}
  config = load_config("dsprites_vae", "factor_vae,small", data_dir=data_dir,
                       **{**fields, **overrides})
  del config.model["channels"], config.model["hidden"]  # the MLP VAE compiles faster
  config.model.name, config.model.hidden = "vae", (16,)  # research/models/vae.py
  return config


@pytest.fixture(scope="module")
def built(data_dir):
  config = tiny(data_dir)
  validation.validate(config, None)
  task, train_step, state, batch = build(config, 32, 20)
  return config, task, train_step, state, batch


def step_inputs(config, state, batch):
  """The preprocessed batch and loss key of the train step from ``state``."""
  preprocess_rng, loss_rng = step_lib.step_rngs(state)
  return preprocess.parse(config.data.preprocess)(batch, preprocess_rng), loss_rng


def split_params(params) -> tuple[dict, dict]:
  """The VAE's parameters and the discriminator's."""
  return ({k: v for k, v in params.items() if k != factor_vae.DISCRIMINATOR},
          params[factor_vae.DISCRIMINATOR])


@pytest.fixture(scope="module")
def gradients(built):
  """The gradients of the train step from the initial state: the core's (both groups at
  once) and, as references, the VAE loss's with D fixed, D's loss's with the VAE fixed and
  the VAE loss's with respect to D (what the separation keeps out)."""
  config, task, _, state, batch = built
  batch, rng = step_inputs(config, state, batch)
  model_state = state.model_state
  combined = step_lib.with_auxiliary_losses(task.loss_fn, task.auxiliary_losses)

  def outputs(vae_params, d_params):
    params = {**vae_params, factor_vae.DISCRIMINATOR: d_params}
    loss, (outputs, _) = task.loss_fn(params, model_state, batch, rng, True)
    return loss, outputs["discriminator_loss"].mean()

  def all_gradients(params):
    vae_part, d_part = split_params(params)
    return {"core": jax.grad(lambda p: combined(p, model_state, batch, rng, True)[0])(params),
            "vae": jax.grad(lambda v: outputs(v, d_part)[0])(vae_part),
            "discriminator": jax.grad(lambda d: outputs(vae_part, d)[1])(d_part),
            "vae_loss_on_d": jax.grad(lambda d: outputs(vae_part, d)[0])(d_part)}

  return jax.jit(all_gradients)(state.params)


def test_each_group_gets_the_gradient_of_its_own_loss_alone(gradients):
  vae_part, d_part = split_params(gradients["core"])
  for got, want in ((vae_part, gradients["vae"]), (d_part, gradients["discriminator"])):
    for path, g in jax.tree_util.tree_leaves_with_path(got):
      w = want
      for key in path:
        w = w[key.key]
      np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6, err_msg=jax.tree_util.keystr(path))
      assert np.any(np.asarray(g) != 0), jax.tree_util.keystr(path)
  # Without the separation the VAE's loss would train D too (through its TC term).
  assert any(np.any(np.asarray(g) != 0) for g in jax.tree.leaves(gradients["vae_loss_on_d"]))


def test_the_discriminator_has_an_optimizer_of_its_own(built, gradients):
  """After one step, Adam's first moments are (1 - b1) times the gradients: b1 0.5 for D
  (optimizer.groups.discriminator), 0.9 for the VAE."""
  _, _, train_step, state, batch = built
  new_state, _ = train_step(jax.tree.map(jnp.copy, state), batch)
  inner = new_state.opt_state.inner_states
  group = optim.GROUP_LABEL.format(factor_vae.DISCRIMINATOR)
  assert sorted(inner) == [group, optim.TRAINED]
  vae_part, d_part = split_params(gradients["core"])
  for label, b1, grads in ((group, 0.5, d_part), (optim.TRAINED, 0.9, vae_part)):
    first_moments = inner[label].inner_state[0][0].mu  # masked leaves: no array
    for got, g in zip(jax.tree.leaves(first_moments), jax.tree.leaves(grads), strict=True):
      np.testing.assert_allclose(got, (1 - b1) * g, rtol=1e-5, atol=1e-7)


def test_factor_vae_trains_a_few_steps_on_small_sprites(built):
  config, task, train_step, state, batch = built
  before = jax.tree.map(np.asarray, state.params[factor_vae.DISCRIMINATOR])
  state, history = run_steps(train_step, jax.tree.map(jnp.copy, state), batch, 20)
  assert history[-1]["neg_elbo"] < history[0]["neg_elbo"]
  for record in history:
    assert all(np.isfinite(record[name]) for name in factor_vae.TERMS)
    assert 0.0 <= record["discriminator_accuracy"] <= 1.0
  assert history[-1]["discriminator_loss"] < history[0]["discriminator_loss"]
  after = state.params[factor_vae.DISCRIMINATOR]
  assert all(np.any(a != b) for a, b in zip(jax.tree.leaves(after), jax.tree.leaves(before)))
  processed = preprocess.parse(config.data.preprocess)(batch, jax.random.PRNGKey(0))
  _, (outputs, _) = task.loss_fn(state.params, state.model_state, processed,
                                 jax.random.PRNGKey(0), False)
  np.testing.assert_allclose(outputs["loss"],
                             outputs["neg_elbo"] + config.task.gamma * outputs["tc"], rtol=1e-5)


def test_vmapped_replicas_train_as_separate_runs(built):
  """Replica 0 of seeds (0, 1) takes the steps the run of seed 0 alone takes, both groups."""
  config, task, train_step, state, batch = built
  prep = preprocess.parse(config.data.preprocess)
  rate = config.optimizer.learning_rate
  pair = replicas.Replicas((config.seed, config.seed + 1), (rate, rate))
  states = jax.jit(pair.batched_init(state_lib.make_init(
      task, optim.make_optimizer(config.optimizer, 20), prep)))(batch)
  step = jax.jit(pair.train_step(task, config.optimizer, 20, prep))
  alone, stacked = jax.tree.map(jnp.copy, state), jax.tree.map(lambda x: np.stack([x, x]), batch)
  for _ in range(2):
    states, _ = step(states, stacked)
    alone, _ = train_step(alone, batch)
  for x, y in zip(jax.tree.leaves(states.params), jax.tree.leaves(alone.params), strict=True):
    np.testing.assert_allclose(x[0], y, rtol=1e-5, atol=1e-6)
    assert np.any(x[0] != x[1])


def final_state(workdir: str, step: int):
  return ocp.StandardCheckpointer().restore(
      os.path.join(workdir, "checkpoints", str(step), "default"))


class Interrupted(Exception):
  pass


def test_an_interrupted_factor_vae_run_resumes_exactly(data_dir, tmp_path):
  no_evals = {f"evals.{name}.type": "" for name in ("val", "images", "test", "latents",
                                                    "disentanglement")}
  config = tiny(data_dir, **{"total_steps": 6, "checkpoint_every_steps": 2, "log_every_steps": 2,
                             "eval_every_steps": 6, **no_evals})
  straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
  expected = loop.train_and_evaluate(config, straight)

  def interrupt(step):
    if step == 5:
      raise Interrupted

  with pytest.raises(Interrupted):
    loop.train_and_evaluate(config, resumed, step_hook=interrupt)
  assert loop.train_and_evaluate(config, resumed) == expected  # from the checkpoint at 4
  a, b = final_state(straight, 6), final_state(resumed, 6)
  assert "discriminator" in a["params"]
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(x, y)


def test_the_config_has_the_papers_discriminator_and_other_objectives_are_unchanged():
  config = load_config("dsprites_vae", "factor_vae")
  assert config.task.name == "factor_vae" and config.task.gamma == 30.0
  assert tuple(config.task.discriminator_hidden) == (1000,) * 6
  group = optim.group_config(config.optimizer, "discriminator")
  assert (group.name, group.learning_rate, group.b1, group.b2) == ("adam", 1e-4, 0.5, 0.9)
  for objective in ("beta_vae", "beta_tcvae", "dip_vae_i", "dip_vae_ii"):
    other = load_config("dsprites_vae", objective)
    assert "groups" not in other.optimizer and "gamma" not in other.task, objective


@pytest.mark.parametrize("overrides, message", [
    ({"task.gamma": -1.0}, "task.gamma=-1.0"),
    ({"task.objective": "beta_tcvae"}, "task.objective='beta_tcvae'"),
    ({"task.discriminator_hidden": ()}, "task.discriminator_hidden=()"),
    ({"optimizer.groups.discriminator.b1": 1.5}, "optimizer.groups.discriminator.b1=1.5"),
    ({"optimizer.groups.discriminator.frozen": ("x",)}, "fields among"),
    ({"microbatch_size": 16}, "microbatch_size=16"),
])
def test_bad_factor_vae_fields_are_one_line_errors(overrides, message, data_dir, tmp_path):
  config = tiny(data_dir)
  for path, value in overrides.items():
    *parents, name = path.split(".")
    node = config
    for parent in parents:
      node = node[parent]
    node[name] = value
  with pytest.raises(errors.ConfigError, match=message) as e:
    validation.validate(config, str(tmp_path))
  assert "\n" not in str(e.value)


def test_a_group_the_parameters_lack_is_a_config_error():
  params = {"encoder": {"w": jnp.zeros(2)}}
  config = load_config("dsprites_vae", "factor_vae").optimizer
  with pytest.raises(errors.ConfigError, match=r"optimizer.groups names \['discriminator'\]"):
    optim.make_optimizer(config, 10).init(params)
