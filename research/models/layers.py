"""Small building blocks shared by the model files."""
from typing import Sequence

from research.core import errors

import flax.linen as nn
import jax.numpy as jnp


def activation(name: str):
  """An activation function of flax.linen by name (relu, gelu, tanh, ...)."""
  fn = getattr(nn, name, None)
  if not callable(fn):
    raise errors.ConfigError(f"unknown activation {name!r}")
  return fn


class MLP(nn.Module):
  """Dense layers of the given widths, each followed by the activation."""
  widths: Sequence[int]
  activation: str = "relu"

  @nn.compact
  def __call__(self, x):
    act = activation(self.activation)
    for width in self.widths:
      x = act(nn.Dense(width)(x))
    return x


def flatten(x: jnp.ndarray) -> jnp.ndarray:
  return x.reshape(x.shape[0], -1)
