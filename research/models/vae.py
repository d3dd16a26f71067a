"""MLP variational autoencoder: Gaussian posterior q(z|x), decoder logits for p(x|z).

``encode`` returns the posterior mean and log-variance, ``decode`` the decoder's
logits in the image's shape; the VAE task turns these into the ELBO.
"""
import math
from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from research.models import layers


class Model(nn.Module):
  image_shape: Sequence[int]
  latent_dim: int = 20
  hidden: Sequence[int] = (500,)
  activation: str = "relu"

  def setup(self):
    self.encoder = layers.MLP(self.hidden, self.activation)
    self.posterior = nn.Dense(2 * self.latent_dim)
    self.decoder = layers.MLP(tuple(reversed(self.hidden)), self.activation)
    self.likelihood = nn.Dense(math.prod(self.image_shape))

  def encode(self, x):
    mean, log_var = jnp.split(self.posterior(self.encoder(layers.flatten(x))), 2, axis=-1)
    return mean, log_var

  def decode(self, z):
    logits = self.likelihood(self.decoder(z))
    return logits.reshape(z.shape[:-1] + tuple(self.image_shape))

  def __call__(self, x, train: bool = False):
    mean, _ = self.encode(x)
    return self.decode(mean)
