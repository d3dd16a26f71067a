"""A convolutional autoencoder whose reconstruction error is an anomaly score (one_class
task), and whose bias-free encoder Deep SVDD starts from (research/models/deep_svdd.py).

The encoder is Ruff et al. (2018)'s LeNet-type network for 28x28 images: blocks of a 5x5
convolution without bias, batch normalization without scale or offset (epsilon 1e-4),
leaky ReLU and 2x2 max pooling (``features`` = (8, 4): 8 then 4 channels), then a dense
layer without bias to ``latent_dim`` (32). Without biases and affine normalization the
encoder cannot map every input to one constant point, the trivial solution of Deep
SVDD's objective; the autoencoder shares it so its weights carry over. The decoder mirrors
it (dense to the last block's grid, then per block: 2x nearest-neighbour upsampling, a
5x5 convolution, batch normalization, leaky ReLU; a final 5x5 convolution and a sigmoid).

``model(x) -> score``: per example, the sum of squared errors between ``x`` (in [0, 1])
and its reconstruction; the one_class task's loss is its mean.
"""
from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from research.models import layers

ENCODER = "encoder"  # the submodule name a warm start copies (config.init_from.modules)


def leaky_relu(x):
  return nn.leaky_relu(x, negative_slope=0.01)


def batch_norm(train: bool):
  """Normalization without learned scale or offset (Ruff et al.: ``affine=False``)."""
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-4,
                      use_bias=False, use_scale=False)


class Encoder(nn.Module):
  features: Sequence[int] = (8, 4)
  latent_dim: int = 32
  kernel_size: int = 5
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x, train: bool = False):
    k = (self.kernel_size, self.kernel_size)
    for features in self.features:
      x = layers.Conv(features, k, use_bias=False, impl=self.conv_impl)(x)
      x = layers.pool(leaky_relu(batch_norm(train)(x)), "max", 2)
    return layers.Dense(self.latent_dim, use_bias=False)(layers.flatten(x))


class Decoder(nn.Module):
  shape: tuple[int, int, int]  # the image's (height, width, channels)
  features: Sequence[int] = (8, 4)
  kernel_size: int = 5
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, z, train: bool = False):
    height, width, channels = self.shape
    scale = 2 ** len(self.features)
    grid = (-(-height // scale), -(-width // scale))  # ceil: cropped at the end
    k = (self.kernel_size, self.kernel_size)
    x = layers.Dense(grid[0] * grid[1] * self.features[-1])(z)
    x = leaky_relu(x.reshape(-1, *grid, self.features[-1]))
    for features in reversed(self.features):
      x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
      x = layers.Conv(features, k, use_bias=False, impl=self.conv_impl)(x)
      x = leaky_relu(batch_norm(train)(x))
    x = layers.Conv(channels, k, impl=self.conv_impl)(x)
    return nn.sigmoid(x[:, :height, :width])


def squared_error(x, reconstruction):
  """Per example, the sum over pixels of the squared reconstruction error."""
  return jnp.sum(jnp.square(layers.flatten(reconstruction) - layers.flatten(x)), axis=-1)


class Model(nn.Module):
  features: Sequence[int] = (8, 4)
  latent_dim: int = 32
  kernel_size: int = 5
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = x.astype(jnp.float32)
    encoder = Encoder(self.features, self.latent_dim, self.kernel_size, self.conv_impl,
                      name=ENCODER)
    decoder = Decoder(x.shape[1:], self.features, self.kernel_size, self.conv_impl,
                      name="decoder")
    return squared_error(x, decoder(encoder(x, train), train))
