"""Variational autoencoder: maximise the ELBO of a Bernoulli decoder, Gaussian posterior
and standard normal prior. All terms are in nats per image.

  -ELBO(x) = E_q[-log p(x|z)] + KL(q(z|x) || N(0, I))
"""
import jax
import jax.numpy as jnp
import optax
from clu import metrics

from research.core import errors
from research.tasks import base

NUM_IMAGES = 64  # images per summary grid


def gaussian_kl(mean: jnp.ndarray, log_var: jnp.ndarray) -> jnp.ndarray:
  """KL(N(mean, exp(log_var)) || N(0, I)) in closed form, summed over the last axis."""
  return 0.5 * jnp.sum(jnp.exp(log_var) + jnp.square(mean) - 1.0 - log_var, axis=-1)


def bernoulli_nll(logits: jnp.ndarray, x: jnp.ndarray) -> jnp.ndarray:
  """-log p(x | logits) per example, summed over all but the batch axis."""
  nll = optax.sigmoid_binary_cross_entropy(logits, x)
  return nll.reshape(nll.shape[0], -1).sum(-1)


def reparameterize(rng, mean, log_var):
  return mean + jnp.exp(0.5 * log_var) * jax.random.normal(rng, mean.shape, mean.dtype)


class Task(base.BaseTask):
  metrics = {
      "neg_elbo": metrics.Average.from_output("neg_elbo"),
      "recon_nll": metrics.Average.from_output("recon_nll"),
      "kl": metrics.Average.from_output("kl"),
  }

  def init_variables(self, rng, batch):
    shape, expected = tuple(batch["image"].shape[1:]), tuple(self.config.model.image_shape)
    if shape != expected:
      raise errors.ConfigError(
          f"model.image_shape={expected} does not match the data's images {shape}; set "
          f"--config.model.image_shape={shape} or use the config for this dataset")
    return super().init_variables(rng, batch)

  def _apply(self, params, model_state, method, *args, rng, train):
    out, _ = base.apply_model(self.model, params, model_state, *args, rng=rng, train=train,
                              method=method)
    return out

  def loss_fn(self, params, model_state, batch, rng, train):
    x = batch["image"]
    sample_rng, dropout_rng = jax.random.split(rng)
    mean, log_var = self._apply(params, model_state, "encode", x, rng=dropout_rng, train=train)
    z = reparameterize(sample_rng, mean, log_var)
    logits = self._apply(params, model_state, "decode", z, rng=dropout_rng, train=train)
    recon_nll = bernoulli_nll(logits, x)
    kl = gaussian_kl(mean, log_var)
    neg_elbo = recon_nll + kl
    loss = jnp.mean(recon_nll + self.config.task.beta * kl)
    return loss, ({"neg_elbo": neg_elbo, "recon_nll": recon_nll, "kl": kl}, model_state)

  def images(self, params, model_state, batch, rng):
    """Inputs beside their reconstructions (posterior means), and prior samples."""
    x = batch["image"][:NUM_IMAGES // 2]
    mean, _ = self._apply(params, model_state, "encode", x, rng=rng, train=False)
    recon = jax.nn.sigmoid(self._apply(params, model_state, "decode", mean, rng=rng, train=False))
    z = jax.random.normal(rng, (NUM_IMAGES, mean.shape[-1]))
    samples = jax.nn.sigmoid(self._apply(params, model_state, "decode", z, rng=rng, train=False))
    pairs = jnp.stack([x, recon], axis=1).reshape((-1,) + x.shape[1:])
    return {"reconstructions": pairs, "samples": samples}
