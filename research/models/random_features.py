"""Random Fourier features (Rahimi & Recht, 2007) and a linear layer on them: a linear
classifier in an approximate RBF-kernel feature space, k(x, x') = exp(-gamma ||x - x'||^2).

    phi(x) = sqrt(2 / D) cos(W x + b),   W_ij ~ N(0, 2 gamma),  b_j ~ U[0, 2 pi)

so that E[phi(x) . phi(x')] = k(x, x') (the same features as scikit-learn's
``RBFSampler``). W and b are drawn once at initialisation and never trained: they live
in the ``random_features`` collection (model state: checkpointed, never updated), so
the L2 penalty and the optimizer see only the linear layer.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp

from research.models import layers

COLLECTION = "random_features"


class RandomFourierFeatures(nn.Module):
  num_features: int
  gamma: float

  @nn.compact
  def __call__(self, x):
    dim = x.shape[-1]
    projection = self.variable(
        COLLECTION, "projection",
        lambda: jnp.sqrt(2.0 * self.gamma) * jax.random.normal(
            self.make_rng("params"), (dim, self.num_features)))
    phase = self.variable(
        COLLECTION, "phase",
        lambda: jax.random.uniform(self.make_rng("params"), (self.num_features,),
                                   maxval=2.0 * jnp.pi))
    return jnp.sqrt(2.0 / self.num_features) * jnp.cos(x @ projection.value + phase.value)


class Model(nn.Module):
  num_classes: int
  num_features: int = 4096
  gamma: float = 0.02

  @nn.compact
  def __call__(self, x, train: bool = False):
    features = RandomFourierFeatures(self.num_features, self.gamma)(layers.flatten(x))
    return layers.classifier_head(self, features, self.num_classes)
