"""An MLP classifier of latent codes: FactorVAE's discriminator (Kim & Mnih 2018, appendix A;
disentanglement_lib's ``fc_discriminator``): six dense layers of 1,000 units with leaky ReLUs
of slope 0.2, then two logits, for "drawn from q(z)" (``REAL``) and "permuted"
(``PERMUTED``, research/tasks/factor_vae.py)."""
from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from research.models import layers

REAL, PERMUTED = 0, 1  # the classes of the two logits


class Model(nn.Module):
  hidden: Sequence[int] = (1000,) * 6
  negative_slope: float = 0.2

  @nn.compact
  def __call__(self, z: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    for width in self.hidden:
      z = nn.leaky_relu(layers.Dense(width)(z), self.negative_slope)
    return layers.Dense(2)(z)
