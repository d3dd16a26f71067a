"""Kingma et al. (2014)'s M1+M2 (research/models/m1m2.py): M2's bounds and classifier
(research/tasks/semi_supervised.py) on the latent codes z1 ~ q(z1 | x) of an already trained
VAE M1, one sample per image and step drawn with the step's key, as Kingma et al. do; the
likelihood p(z1 | y, z2) is ``task.likelihood=gaussian``. M1's parameters come from a ``vae``
run (``init_from``) and stay as they are: z1 is under ``stop_gradient`` and
``optimizer.frozen`` names M1's submodules. Metrics are M2's (``neg_bound`` in nats of z1,
not of x); predictions are the classifier's ``logits``, ``probs`` and ``features`` of z1's
posterior mean.
"""
import jax

from research import errors
from research.models import m1m2 as m1m2_model
from research.tasks import base, semi_supervised, vae


class Task(semi_supervised.Task):
  capabilities = frozenset({base.CLASSIFIER})
  predictions = ("logits", "probs", "features")

  @classmethod
  def validate_likelihood(cls, config):
    errors.require(config.task.likelihood == "gaussian", "task.likelihood",
                   config.task.likelihood, "gaussian (M2 models M1's continuous latent codes)")

  @classmethod
  def validate_config(cls, config):
    super().validate_config(config)
    spec = config.get("init_from")
    workdir = spec.get("workdir", "") if spec is not None else ""
    errors.require(bool(workdir), "init_from.workdir", workdir,
                   "the workdir of a trained vae run (M1; configs/m1m2.py's docstring)")
    modules = tuple(spec.get("modules") or ())
    errors.require(set(m1m2_model.M1_MODULES) <= set(modules), "init_from.modules", modules,
                   f"a tuple with M1's {m1m2_model.M1_MODULES}")

  def m1_codes(self, params, model_state, x, rng, train=False):
    """z1 ~ q(z1 | x), one sample per image, with no gradient into M1."""
    encode_rng, sample_rng = jax.random.split(rng)
    mean, log_var = self._apply(params, model_state, "m1_encode", x, rng=encode_rng,
                                train=train)
    return jax.lax.stop_gradient(vae.reparameterize(sample_rng, mean, log_var, 1)[0])

  def m1_means(self, params, model_state, batch, rng):
    """The batch with its images replaced by their posterior means under M1."""
    mean, _ = self._apply(params, model_state, "m1_encode", batch["image"], rng=rng)
    return {**batch, "image": mean}

  def loss_fn(self, params, model_state, batch, rng, train):
    m1_rng, m2_rng = jax.random.split(rng)
    z1 = self.m1_codes(params, model_state, batch["image"], m1_rng, train)
    return super().loss_fn(params, model_state, {**batch, "image": z1}, m2_rng, train)

  def logits(self, params, model_state, batch, rng):
    return super().logits(params, model_state, self.m1_means(params, model_state, batch, rng),
                          rng)

  def features(self, params, model_state, batch, rng):
    return super().features(params, model_state,
                            self.m1_means(params, model_state, batch, rng), rng)
