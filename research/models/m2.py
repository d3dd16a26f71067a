"""Kingma et al. (2014)'s M2, the semi-supervised VAE: a class-conditional VAE
(research/models/vae.py: q(z | x, y) and p(x | y, z), the one-hot label given to both) and a
classifier q(y | x) (an MLP) in one module. research/tasks/semi_supervised.py holds its
bounds. ``classify(x)`` returns the classifier's logits; ``encode``/``decode`` are the
VAE's."""
from collections.abc import Sequence

import flax.linen as nn

from research.models import layers, vae


class Model(nn.Module):
  image_shape: Sequence[int]
  num_classes: int
  latent_dim: int = 50
  hidden: Sequence[int] = (500,)
  classifier_hidden: Sequence[int] = (500,)
  activation: str = "softplus"
  outputs_per_pixel: int = 1

  def setup(self):
    self.vae = vae.Model(self.image_shape, self.latent_dim, self.hidden, self.activation,
                         self.outputs_per_pixel, self.num_classes)
    self.classifier = layers.MLP(self.classifier_hidden, self.activation)
    self.logits = layers.Dense(self.num_classes)

  def encode(self, x, condition):
    return self.vae.encode(x, condition)

  def decode(self, z, condition):
    return self.vae.decode(z, condition)

  def features(self, x):
    return self.classifier(layers.flatten(x))

  def classify(self, x):
    return self.logits(self.features(x))

  def __call__(self, x, condition=None, train: bool = False):
    return self.vae(x, condition, train), self.classify(x)
