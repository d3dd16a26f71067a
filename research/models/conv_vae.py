"""Convolutional VAE: one 4x4 stride-2 convolution per entry of ``channels`` down (image
sides divisible by 2 ** len(channels)), transposed convolutions back up in the reverse
order, dense layers around the latent code. Same interface as ``research/models/vae.py``
(``encode``, ``decode``, ``num_classes`` for a conditional model).

``channels=(32, 64)`` (the ``conv_vae`` config, 28x28 or 8x8 images): conv 32-64, deconv
32-C. ``channels=(32, 32, 64, 64)`` with ``hidden=256`` is the encoder and decoder of
Burgess et al. (2018) and Locatello et al. (2019) for 64x64 images (``dsprites_vae``):
conv 32-32-64-64, dense 256, dense 256 and 4x4x64 up, deconv 64-32-32-C.
"""
import math
from typing import Sequence

import flax.linen as nn

from research.models import layers
from research.models.vae import example_condition, split_posterior, with_condition


class Model(nn.Module):
  image_shape: Sequence[int]
  latent_dim: int = 32
  channels: Sequence[int] = (32, 64)  # the convolutions, fine to coarse
  hidden: int = 256
  activation: str = "relu"
  outputs_per_pixel: int = 1
  num_classes: int = 0

  def setup(self):
    h, w, c = self.image_shape
    scale = 2 ** len(self.channels)
    self.coarse_shape = (h // scale, w // scale, self.channels[-1])
    self.act = layers.activation(self.activation)
    up = tuple(reversed(self.channels))[1:] + (c * self.outputs_per_pixel,)
    for k, (down, out) in enumerate(zip(self.channels, up), start=1):  # named conv1, deconv1, ...
      setattr(self, f"conv{k}", nn.Conv(down, (4, 4), strides=2))
      setattr(self, f"deconv{k}", nn.ConvTranspose(out, (4, 4), strides=(2, 2)))
    self.encoder_dense = layers.Dense(self.hidden)
    self.posterior = layers.Dense(2 * self.latent_dim)
    self.decoder_dense = layers.Dense(self.hidden)
    self.decoder_coarse = layers.Dense(math.prod(self.coarse_shape))

  def layers_named(self, prefix: str):
    return [getattr(self, f"{prefix}{k}") for k in range(1, len(self.channels) + 1)]

  def encode(self, x, condition=None):
    h = x
    for conv in self.layers_named("conv"):
      h = self.act(conv(h))
    h = self.act(self.encoder_dense(with_condition(layers.flatten(h), condition)))
    return split_posterior(self.posterior(h))

  def decode(self, z, condition=None):
    batch_shape = z.shape[:-1]
    h = self.act(self.decoder_dense(with_condition(z, condition)))
    h = self.act(self.decoder_coarse(h)).reshape((-1,) + self.coarse_shape)
    deconvs = self.layers_named("deconv")
    for deconv in deconvs[:-1]:
      h = self.act(deconv(h))
    out = deconvs[-1](h)
    return out.reshape(batch_shape + tuple(self.image_shape) + (self.outputs_per_pixel,))

  def __call__(self, x, condition=None, train: bool = False):
    condition = example_condition(x, self.num_classes) if condition is None else condition
    mean, _ = self.encode(x, condition)
    return self.decode(mean, condition)
