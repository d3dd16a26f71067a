"""Recurrent classifiers (LSTM or GRU) over sequences; an image is read row by row
(28 steps of 28 pixels for MNIST), and the last step's output is classified."""
import flax.linen as nn

from research.core import errors

CELLS = {"lstm": nn.OptimizedLSTMCell, "gru": nn.GRUCell}


class Model(nn.Module):
  num_classes: int
  cell: str = "lstm"  # lstm or gru
  hidden: int = 128
  num_layers: int = 1

  @nn.compact
  def __call__(self, x, train: bool = False):
    if self.cell not in CELLS:
      raise errors.ConfigError(f"model.cell={self.cell!r} is not allowed; it must be one of "
                               f"{tuple(CELLS)}")
    if x.ndim == 4:  # images (batch, rows, columns, channels) -> sequences of rows
      x = x.reshape(x.shape[0], x.shape[1], -1)
    for _ in range(self.num_layers):
      x = nn.RNN(CELLS[self.cell](self.hidden))(x)
    return nn.Dense(self.num_classes)(x[:, -1])
