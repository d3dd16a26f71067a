"""MLP variational autoencoder: Gaussian posterior q(z|x), decoder parameters for p(x|z).

``encode(x, condition)`` returns the posterior mean and log-variance; ``decode(z,
condition)`` returns ``outputs_per_pixel`` likelihood parameters per pixel, shaped
``z.shape[:-1] + image_shape + (outputs_per_pixel,)``; the VAE task turns these into
the ELBO. With ``num_classes > 0`` the model is conditional (a CVAE): the one-hot
``condition`` is appended to the encoder's input and to the latent code.
"""
import math
from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from research.models import layers


def with_condition(h: jnp.ndarray, condition: jnp.ndarray | None) -> jnp.ndarray:
  """Appends the (one-hot) condition to the features, broadcasting its leading axes."""
  if condition is None:
    return h
  return jnp.concatenate([h, jnp.broadcast_to(condition, h.shape[:-1] + condition.shape[-1:])], -1)


def split_posterior(h: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
  """(mean, log-variance) from the posterior layer's 2 * latent_dim outputs."""
  mean, log_var = jnp.split(h, 2, axis=-1)
  return mean, log_var


def gaussian_sample(mean: jnp.ndarray, log_var: jnp.ndarray, eps: jnp.ndarray) -> jnp.ndarray:
  """The reparameterised draw mean + exp(log_var / 2) * eps of standard normal noise eps."""
  return mean + jnp.exp(0.5 * log_var) * eps


def example_condition(x: jnp.ndarray, num_classes: int) -> jnp.ndarray | None:
  """A placeholder condition for initialization (class 0), or None when unconditional."""
  return jnp.zeros((x.shape[0], num_classes), x.dtype).at[:, 0].set(1) if num_classes else None


class Model(nn.Module):
  image_shape: Sequence[int]
  latent_dim: int = 20
  hidden: Sequence[int] = (500,)
  activation: str = "relu"
  outputs_per_pixel: int = 1
  num_classes: int = 0

  def setup(self):
    self.encoder = layers.MLP(self.hidden, self.activation)
    self.posterior = layers.Dense(2 * self.latent_dim)
    self.decoder = layers.MLP(tuple(reversed(self.hidden)), self.activation)
    self.likelihood = layers.Dense(math.prod(self.image_shape) * self.outputs_per_pixel)

  def encode(self, x, condition=None):
    return split_posterior(self.posterior(self.encoder(with_condition(layers.flatten(x), condition))))

  def decode(self, z, condition=None):
    out = self.likelihood(self.decoder(with_condition(z, condition)))
    return out.reshape(z.shape[:-1] + tuple(self.image_shape) + (self.outputs_per_pixel,))

  def __call__(self, x, condition=None, train: bool = False):
    condition = example_condition(x, self.num_classes) if condition is None else condition
    mean, _ = self.encode(x, condition)
    return self.decode(mean, condition)
