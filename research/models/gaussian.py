"""A one-class density model: a multivariate Gaussian over flattened inputs, its mean and
the Cholesky factor of its covariance learned by maximum likelihood.

``model(x) -> nll``: per example, -log N(x; mean, L L^T + min_variance I) in nats, the
anomaly score of the one_class task (research/tasks/one_class.py): large where the
training data had little mass. ``min_variance`` keeps a direction the training data never
varies in (a one-hot column that is always 0) from collapsing the covariance.
"""
import math

import flax.linen as nn
import jax.numpy as jnp
from jax.scipy.linalg import solve_triangular

from research.models import layers


class Model(nn.Module):
  min_variance: float = 1e-2

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = layers.flatten(x).astype(jnp.float32)
    d = x.shape[-1]
    mean = self.param("mean", nn.initializers.zeros, (d,))
    # Lower triangle of the covariance factor; its diagonal is exp(.) (positive): zeros = I.
    raw = self.param("covariance_factor", nn.initializers.zeros, (d, d))
    factor = jnp.tril(raw, -1) + jnp.diag(jnp.exp(jnp.diag(raw)))
    covariance = factor @ factor.T + self.min_variance * jnp.eye(d)
    chol = jnp.linalg.cholesky(covariance)
    z = solve_triangular(chol, (x - mean).T, lower=True)  # (d, batch)
    return (0.5 * jnp.sum(jnp.square(z), axis=0) + jnp.sum(jnp.log(jnp.diag(chol)))
            + 0.5 * d * math.log(2 * math.pi))
