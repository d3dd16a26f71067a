"""A small convolutional classifier: conv blocks with pooling, then a dense head.

The defaults are the yardstick CNN (824,458 parameters on 28x28x1, 10 classes):
conv3x3(32)-relu-avgpool2-conv3x3(64)-relu-avgpool2-dense(256)-relu-dense(10).
``batch_norm`` adds batch normalization after every conv and hidden dense layer;
its running statistics are model state (``batch_stats``) carried in the TrainState.
``conv_impl`` picks how convolutions run (``layers.Conv``: auto, xla or im2col).
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
  batch_norm: bool = False
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x, train: bool = False):
    def normalize(y):
      if not self.batch_norm:
        return y
      return nn.BatchNorm(use_running_average=not train, momentum=0.9)(y)

    for features in self.conv_features:
      x = layers.relu(normalize(layers.Conv(features, (3, 3), use_bias=not self.batch_norm,
                                            impl=self.conv_impl)(x)))
      x = layers.pool(x, self.pool, 2)
    x = layers.flatten(x)
    for features in self.dense_features:
      x = layers.relu(normalize(layers.Dense(features, use_bias=not self.batch_norm)(x)))
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return layers.classifier_head(self, x, self.num_classes)
