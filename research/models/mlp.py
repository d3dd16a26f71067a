"""A multilayer perceptron classifier on flattened inputs, with dropout between layers."""
from typing import Sequence

import flax.linen as nn

from research.models import layers


class Model(nn.Module):
  num_classes: int
  hidden: Sequence[int] = (1024, 1024)
  activation: str = "relu"
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = layers.flatten(x)
    act = layers.activation(self.activation)
    for width in self.hidden:
      x = nn.Dropout(self.dropout, deterministic=not train)(act(layers.Dense(width)(x)))
    return layers.classifier_head(self, x, self.num_classes)
