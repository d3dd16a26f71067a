"""A small convolutional classifier: conv blocks with pooling, then an MLP head.

The defaults are the yardstick CNN (824,458 parameters on 28x28x1, 10 classes):
conv3x3(32)-relu-avgpool2-conv3x3(64)-relu-avgpool2-dense(256)-relu-dense(10).
"""
from typing import Sequence

import flax.linen as nn

from research.models import layers


class Model(nn.Module):
  num_classes: int
  conv_features: Sequence[int] = (32, 64)
  dense_features: Sequence[int] = (256,)
  pool: str = "avg"  # avg or max
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x, train: bool = False):
    pool = {"avg": nn.avg_pool, "max": nn.max_pool}[self.pool]
    for features in self.conv_features:
      x = nn.relu(nn.Conv(features, (3, 3), padding="SAME")(x))
      x = pool(x, (2, 2), strides=(2, 2))
    x = layers.MLP(self.dense_features)(layers.flatten(x))
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return nn.Dense(self.num_classes)(x)
