"""A one-class model by self-supervision (GEOM, Golan & El-Yaniv 2018): a classifier
learns which of K geometric transformations was applied to a normal image; on an image
unlike the training data it cannot tell them apart as well.

The transformations are GEOM's: a horizontal flip or not, a translation by -shift, 0 or
+shift pixels along each axis (reflected at the border) and a rotation by 0, 90, 180 or
270 degrees: 2 x 3 x 3 x 4 = 72 (``flips``, ``shift`` = 0 and ``rotations`` leave a kind
out). The classifier is a small batch-norm CNN (``conv_features``, 3x3 convolutions, 2x2
max pooling, global average pooling).

``model(x) -> score``: per example, the mean over the K transformations of the cross
entropy of predicting transformation k from T_k(x), GEOM's simplified normality score
negated (higher: more anomalous); the one_class task's loss is its mean. In training each
example draws ``train_transforms`` transformations at random (the ``dropout`` rng; 0: all
K), an unbiased estimate of the same loss at a fraction of the cost.
"""
import itertools
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from research.models import layers


def transformation_grid(flips: bool, shift: int, rotations: bool) -> list[tuple]:
  """Every ``(flip, dy, dx, quarter_turns)``, the identity first."""
  shifts = (0, -shift, shift) if shift else (0,)
  return list(itertools.product((False, True) if flips else (False,), shifts, shifts,
                                range(4) if rotations else (0,)))


def transform(x: jnp.ndarray, flip: bool, dy: int, dx: int, quarter_turns: int,
              shift: int) -> jnp.ndarray:
  """One transformation of a batch of NHWC images (static arguments)."""
  if flip:
    x = x[:, :, ::-1]
  if dy or dx:
    height, width = x.shape[1:3]
    padded = jnp.pad(x, ((0, 0), (shift, shift), (shift, shift), (0, 0)), mode="reflect")
    x = padded[:, shift - dy:shift - dy + height, shift - dx:shift - dx + width]
  return jnp.rot90(x, quarter_turns, axes=(1, 2))


class Model(nn.Module):
  flips: bool = True
  shift: int = 8
  rotations: bool = True
  train_transforms: int = 8
  conv_features: Sequence[int] = (16, 32, 64)
  conv_impl: str = "auto"

  def num_transformations(self) -> int:
    return len(transformation_grid(self.flips, self.shift, self.rotations))

  @nn.compact
  def classify(self, images, train: bool):
    for features in self.conv_features:
      images = nn.BatchNorm(use_running_average=not train, momentum=0.9)(
          layers.Conv(features, (3, 3), use_bias=False, impl=self.conv_impl)(images))
      images = layers.pool(layers.relu(images), "max", 2)
    return layers.Dense(self.num_transformations())(images.mean(axis=(1, 2)))

  def __call__(self, x, train: bool = False):
    x = x.astype(jnp.float32)
    batch, height, width, channels = x.shape
    if self.rotations and height != width:
      raise ValueError(f"rotations need square images, not {height}x{width}")
    grid = transformation_grid(self.flips, self.shift, self.rotations)
    images = jnp.stack([transform(x, *t, self.shift) for t in grid], axis=1)  # (B, K, ...)
    labels = jnp.broadcast_to(jnp.arange(len(grid)), (batch, len(grid)))
    if train and 0 < self.train_transforms < len(grid):
      labels = jax.random.randint(self.make_rng("dropout"), (batch, self.train_transforms),
                                  0, len(grid))
      images = jnp.take_along_axis(images, labels[:, :, None, None, None], axis=1)
    logits = self.classify(images.reshape(-1, height, width, channels), train)
    ce = optax.softmax_cross_entropy_with_integer_labels(
        logits.reshape(*labels.shape, -1), labels)
    return ce.mean(axis=-1)
