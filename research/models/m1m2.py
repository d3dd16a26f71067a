"""Kingma et al. (2014)'s M1+M2: M2 (research/models/m2.py) over the latent codes z1 of a
VAE M1 (research/models/vae.py). M1's encoder has the VAE's top-level submodules
``encoder`` and ``posterior``, so ``init_from`` with those modules copies a trained ``vae``
run's encoder into it; M1's decoder is not needed. ``m1_encode(x)`` is q(z1 | x)'s mean and
log-variance; ``encode``, ``decode``, ``classify`` and ``features`` are M2's, on z1."""
from collections.abc import Sequence

import flax.linen as nn

from research.models import layers, m2, vae

M1_MODULES = ("encoder", "posterior")  # M1's submodules, named as vae.Model's


class Model(nn.Module):
  image_shape: Sequence[int]
  num_classes: int
  m1_latent_dim: int = 50
  m1_hidden: Sequence[int] = (600, 600)
  m1_activation: str = "softplus"
  latent_dim: int = 50
  hidden: Sequence[int] = (500,)
  classifier_hidden: Sequence[int] = (500,)
  activation: str = "softplus"
  outputs_per_pixel: int = 2

  def setup(self):
    self.encoder = layers.MLP(self.m1_hidden, self.m1_activation)
    self.posterior = layers.Dense(2 * self.m1_latent_dim)
    self.m2 = m2.Model((self.m1_latent_dim,), self.num_classes, self.latent_dim, self.hidden,
                       self.classifier_hidden, self.activation, self.outputs_per_pixel)

  def m1_encode(self, x):
    return vae.split_posterior(self.posterior(self.encoder(layers.flatten(x))))

  def encode(self, z1, condition):
    return self.m2.encode(z1, condition)

  def decode(self, z, condition):
    return self.m2.decode(z, condition)

  def features(self, z1):
    return self.m2.features(z1)

  def classify(self, z1):
    return self.m2.classify(z1)

  def __call__(self, x, condition=None, train: bool = False):
    mean, _ = self.m1_encode(x)
    return self.m2(mean, condition, train)
