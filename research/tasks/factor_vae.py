"""FactorVAE (Kim & Mnih 2018, "Disentangling by factorising"): the VAE of
research/tasks/vae.py whose -ELBO is penalised by gamma times the total correlation of the
aggregate posterior q(z), estimated by a discriminator D (research/models/discriminator.py)
that tells codes z ~ q(z) from codes whose dimensions are each permuted across the batch
(draws of prod_l q(z_l)), by the density-ratio trick:

  TC = KL(q(z) || prod_l q(z_l)) ~= E_q[log D(z) / (1 - D(z))]   (D's logit difference)
  loss = -ELBO + gamma TC;   D: the cross entropy of z (REAL) against permuted codes

as disentanglement_lib (methods/unsupervised/vae.py) does: the batch's z and, permuted, the
same codes are D's two classes (the paper permutes a second batch's codes). D's parameters
are the top-level group ``discriminator``, trained on its own output ``discriminator_loss``
(``auxiliary_losses``: research/core/step.py ``with_auxiliary_losses``) with the optimizer of
``optimizer.groups.discriminator`` (disentanglement_lib: Adam at 1e-4, b1 0.5, b2 0.9), in
the same train step as the VAE, which takes its gradient with D held fixed.

``config.task``, besides the VAE's: objective ``factor_vae``; ``gamma``, the TC's weight
(disentanglement_lib's sweep: 10 to 100); ``discriminator_hidden``, D's widths ((1000,) * 6).
Metrics, besides the VAE's: ``loss`` (per image), ``tc``, ``discriminator_loss`` and
``discriminator_accuracy`` (over both classes; 0.5: D cannot tell them apart).
"""
import jax
import jax.numpy as jnp
from clu import metrics

from research import errors
from research.models import discriminator
from research.tasks import base, vae

OBJECTIVE = "factor_vae"
DISCRIMINATOR = "discriminator"  # D's top-level parameter group
DEFAULT_HIDDEN = (1000,) * 6
TERMS = ("loss", "tc", "discriminator_loss", "discriminator_accuracy")
DISCRIMINATOR_KEY, PERMUTATION_KEY = 1, 1  # fold_in of the init key, and of the loss's key


def permute_dims(rng: jax.Array, z: jnp.ndarray) -> jnp.ndarray:
  """Codes z (M, D) with each dimension permuted across the batch on its own (Kim & Mnih's
  Algorithm 1): every dimension's values are kept, the dependence between them is broken."""
  keys = jax.random.split(rng, z.shape[-1])
  return jax.vmap(jax.random.permutation, in_axes=(0, 1), out_axes=1)(keys, z)


def density_ratio_terms(logits: jnp.ndarray, permuted_logits: jnp.ndarray) -> dict:
  """Per example, from D's logits (M, 2) on codes z ~ q(z) and on permuted codes: ``tc``,
  log D(z) / (1 - D(z)); ``discriminator_loss``, the cross entropy of both, each class
  weighted 1/2; ``discriminator_accuracy``, the mean of both being classified right."""
  log_probs, permuted_log_probs = jax.nn.log_softmax(logits), jax.nn.log_softmax(permuted_logits)
  real, permuted = discriminator.REAL, discriminator.PERMUTED
  right = (jnp.argmax(logits, -1) == real).astype(jnp.float32)
  permuted_right = (jnp.argmax(permuted_logits, -1) == permuted).astype(jnp.float32)
  return {"tc": logits[:, real] - logits[:, permuted],
          "discriminator_loss": -0.5 * (log_probs[:, real] + permuted_log_probs[:, permuted]),
          "discriminator_accuracy": 0.5 * (right + permuted_right)}


class Task(vae.Task):
  objectives = batch_objectives = (OBJECTIVE,)
  auxiliary_losses = {DISCRIMINATOR: "discriminator_loss"}

  def __init__(self, config):
    super().__init__(config)
    self.discriminator = discriminator.Model(
        tuple(config.task.get("discriminator_hidden", DEFAULT_HIDDEN)))

  @staticmethod
  def objective_metrics(objective: str) -> dict:
    return {name: metrics.Average.from_output(name) for name in TERMS}

  @classmethod
  def validate_config(cls, config):
    task, require = config.task, errors.require
    require(task.objective == OBJECTIVE, "task.objective", task.objective,
            f"{OBJECTIVE} with task.name={task.name} (other objectives: task.name=vae)")
    super().validate_config(config)
    gamma = task.get("gamma")
    require(isinstance(gamma, (int, float)) and gamma >= 0, "task.gamma", gamma,
            "the total correlation's weight, zero or positive")
    hidden = task.get("discriminator_hidden", DEFAULT_HIDDEN)
    require(isinstance(hidden, (tuple, list)) and len(hidden) > 0
            and all(isinstance(w, int) and w > 0 for w in hidden),
            "task.discriminator_hidden", hidden, "a tuple of positive layer widths")

  def init_variables(self, rng, batch):
    variables = super().init_variables(rng, batch)
    errors.require(DISCRIMINATOR not in variables["params"], "model.name", self.config.model.name,
                   f"a model without a top-level submodule named {DISCRIMINATOR!r}")
    codes = jnp.zeros((1, self.model.latent_dim))
    discriminator_params = self.discriminator.init(
        jax.random.fold_in(rng, DISCRIMINATOR_KEY), codes)["params"]
    return {**variables, "params": {**variables["params"], DISCRIMINATOR: discriminator_params}}

  def _apply(self, params, model_state, method, *args, rng, train=False):
    """The VAE's methods on its own parameters (the discriminator's left out)."""
    vae_params = {k: v for k, v in params.items() if k != DISCRIMINATOR}
    return super()._apply(vae_params, model_state, method, *args, rng=rng, train=train)

  def discriminator_logits(self, params, z, rng):
    """D's logits (M, 2) for codes z (M, D) (``rng``: the dropout key D does not use)."""
    logits, _ = base.apply_model(self.discriminator, params[DISCRIMINATOR], {}, z, rng=rng,
                                 train=False, matmul_precision=self.matmul_precision)
    return logits

  def batch_penalty(self, params, z, mean, log_var, rng):
    """gamma TC per image, and ``density_ratio_terms``, averaged over the k sample sets
    z (k, M, D), each permuted with a key of its own."""
    keys = jax.random.split(jax.random.fold_in(rng, PERMUTATION_KEY), z.shape[0])

    def terms_of(sample, key):
      logits = lambda codes: self.discriminator_logits(params, codes, key)  # noqa: E731
      return density_ratio_terms(logits(sample), logits(permute_dims(key, sample)))

    terms = {name: value.mean(0) for name, value in jax.vmap(terms_of)(z, keys).items()}
    return self.task.gamma * terms["tc"], terms
