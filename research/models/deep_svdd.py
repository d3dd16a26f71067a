"""Deep SVDD (Ruff et al. 2018, one-class): a bias-free encoder (research/models/
autoencoder.py's, usually warm-started from an autoencoder trained on the same data:
``config.init_from``) maps the normal data close to a centre c fixed before training;
``model(x) -> score``: per example ||phi(x) - c||^2, the one_class task's loss its mean.

c is model state (collection ``centre``), not a parameter: the task sets it once from the
data (``set_centre``: the mean embedding of the training split, components within
``centre_eps`` of zero pushed out to +-eps, as in the paper's code, since a zero component
lets the encoder's zero weights reach it trivially) and training never moves it.
"""
from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from research.models import autoencoder

CENTRE = "centre"  # the model-state collection holding c


class Model(nn.Module):
  features: Sequence[int] = (8, 4)
  latent_dim: int = 32
  kernel_size: int = 5
  centre_eps: float = 0.1
  conv_impl: str = "auto"

  def setup(self):
    # Named "encoder" (autoencoder.ENCODER), as the autoencoder's: a warm start copies it.
    self.encoder = autoencoder.Encoder(self.features, self.latent_dim, self.kernel_size,
                                       self.conv_impl)
    self.centre = self.variable(CENTRE, "c", jnp.zeros, (self.latent_dim,))

  def embed(self, x, train: bool = False):
    return self.encoder(x.astype(jnp.float32), train)

  def __call__(self, x, train: bool = False):
    return jnp.sum(jnp.square(self.embed(x, train) - self.centre.value), axis=-1)

  def set_centre(self, model_state: dict, mean_embedding) -> dict:
    """``model_state`` with c from the training split's mean embedding."""
    small = jnp.abs(mean_embedding) < self.centre_eps
    c = jnp.where(small, jnp.where(mean_embedding < 0, -self.centre_eps, self.centre_eps),
                  mean_embedding)
    return {**model_state, CENTRE: {"c": c}}
