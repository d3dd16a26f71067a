"""Recurrent classifiers (LSTM or GRU) over sequences, classifying the output at the
last valid step.

- Images are read row by row (28 steps of 28 pixels for MNIST).
- Text (``vocab_size > 0``): integer token ids (batch, length) are embedded, and
  ``lengths`` (batch,) marks where each sequence ends; padded steps after it never
  reach the output (the recurrence is causal and the output is taken at length - 1).
"""
import flax.linen as nn
import jax.numpy as jnp

from research import errors
from research.models import layers

CELLS = {"lstm": nn.OptimizedLSTMCell, "gru": nn.GRUCell}


def last_valid(x: jnp.ndarray, lengths: jnp.ndarray | None) -> jnp.ndarray:
  """(batch, time, features) -> the features at step ``lengths - 1`` (the last step when
  ``lengths`` is None; zeros for empty sequences)."""
  if lengths is None:
    return x[:, -1]
  last = x[jnp.arange(x.shape[0]), jnp.maximum(lengths - 1, 0)]
  return jnp.where(lengths[:, None] > 0, last, 0.0)


class Model(nn.Module):
  num_classes: int
  cell: str = "lstm"  # lstm or gru
  hidden: int = 128
  num_layers: int = 1
  vocab_size: int = 0  # > 0: inputs are token ids, embedded in embed_dim dimensions
  embed_dim: int = 128

  @nn.compact
  def __call__(self, x, lengths=None, train: bool = False):
    if self.cell not in CELLS:
      raise errors.ConfigError(f"model.cell={self.cell!r} is not allowed; it must be one of "
                               f"{tuple(CELLS)}")
    if self.vocab_size > 0:
      x = nn.Embed(self.vocab_size, self.embed_dim)(x)
    elif x.ndim == 4:  # images (batch, rows, columns, channels) -> sequences of rows
      x = x.reshape(x.shape[0], x.shape[1], -1)
    for _ in range(self.num_layers):
      x = nn.RNN(CELLS[self.cell](self.hidden))(x, seq_lengths=lengths)
    return layers.classifier_head(self, last_valid(x, lengths), self.num_classes)
