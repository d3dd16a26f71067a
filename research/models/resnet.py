"""CIFAR-style ResNet (He et al. 2016, section 4.2): a 3x3 stem, then stages of basic
residual blocks whose width doubles and resolution halves from one stage to the next,
global average pooling and a linear head.

``stage_sizes=(3, 3, 3)`` with ``width=16`` is ResNet-20 (0.27M parameters);
``(n, n, n)`` gives ResNet-(6n+2). Batch-norm running statistics are model state
(``batch_stats``) carried in the TrainState. Shortcuts that change shape are 1x1
strided convolutions with batch norm (option B of the paper). ``conv_impl`` picks how
convolutions run (``layers.Conv``: auto, xla or im2col).
"""
import functools
from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from research.models import layers


class BasicBlock(nn.Module):
  """Two 3x3 convolutions with batch norm around an identity (or projection) shortcut."""
  features: int
  strides: int = 1
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x, train: bool):
    norm = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9)
    conv = functools.partial(layers.Conv, self.features, use_bias=False, impl=self.conv_impl)
    strides = (self.strides, self.strides)
    y = layers.relu(norm()(conv((3, 3), strides)(x)))
    y = norm()(conv((3, 3))(y))
    if x.shape != y.shape:
      x = norm()(conv((1, 1), strides)(x))
    return layers.relu(x + y)


class Model(nn.Module):
  num_classes: int
  stage_sizes: Sequence[int] = (3, 3, 3)
  width: int = 16
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = layers.Conv(self.width, (3, 3), use_bias=False, impl=self.conv_impl)(x)
    x = layers.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9)(x))
    for stage, num_blocks in enumerate(self.stage_sizes):
      for block in range(num_blocks):
        strides = 2 if stage > 0 and block == 0 else 1
        x = BasicBlock(self.width * 2**stage, strides, self.conv_impl)(x, train)
    return layers.classifier_head(self, jnp.mean(x, axis=(1, 2)), self.num_classes)
