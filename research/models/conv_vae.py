"""Convolutional VAE: two stride-2 convolutions down, two stride-2 transposed
convolutions up (image sides divisible by 4, e.g. 28 or 8), dense layers around the
latent code. Same interface as ``research/models/vae.py`` (``encode``, ``decode``,
``num_classes`` for a conditional model).
"""
import math
from typing import Sequence

import flax.linen as nn

from research.models import layers
from research.models.vae import example_condition, split_posterior, with_condition


class Model(nn.Module):
  image_shape: Sequence[int]
  latent_dim: int = 32
  channels: Sequence[int] = (32, 64)  # the two convolutions, fine to coarse
  hidden: int = 256
  activation: str = "relu"
  outputs_per_pixel: int = 1
  num_classes: int = 0

  def setup(self):
    c1, c2 = self.channels
    h, w, c = self.image_shape
    self.coarse_shape = (h // 4, w // 4, c2)
    self.act = layers.activation(self.activation)
    self.conv1 = nn.Conv(c1, (4, 4), strides=2)
    self.conv2 = nn.Conv(c2, (4, 4), strides=2)
    self.encoder_dense = layers.Dense(self.hidden)
    self.posterior = layers.Dense(2 * self.latent_dim)
    self.decoder_dense = layers.Dense(self.hidden)
    self.decoder_coarse = layers.Dense(math.prod(self.coarse_shape))
    self.deconv1 = nn.ConvTranspose(c1, (4, 4), strides=(2, 2))
    self.deconv2 = nn.ConvTranspose(c * self.outputs_per_pixel, (4, 4), strides=(2, 2))

  def encode(self, x, condition=None):
    h = self.act(self.conv2(self.act(self.conv1(x))))
    h = self.act(self.encoder_dense(with_condition(layers.flatten(h), condition)))
    return split_posterior(self.posterior(h))

  def decode(self, z, condition=None):
    batch_shape = z.shape[:-1]
    h = self.act(self.decoder_dense(with_condition(z, condition)))
    h = self.act(self.decoder_coarse(h)).reshape((-1,) + self.coarse_shape)
    out = self.deconv2(self.act(self.deconv1(h)))
    return out.reshape(batch_shape + tuple(self.image_shape) + (self.outputs_per_pixel,))

  def __call__(self, x, condition=None, train: bool = False):
    condition = example_condition(x, self.num_classes) if condition is None else condition
    mean, _ = self.encode(x, condition)
    return self.decode(mean, condition)
