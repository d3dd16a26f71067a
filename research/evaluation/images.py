"""Image grids for sample, reconstruction and interpolation summaries."""
import math
import os

import numpy as np


def pyplot():
  """matplotlib.pyplot on the headless Agg backend, imported on first use (it costs ~1 s of
  start-up that a run only pays once it writes a figure)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt


def make_grid(images: np.ndarray, columns: int | None = None, pad: int = 1) -> np.ndarray:
  """Tiles (N, H, W, C) images in [0, 1] into one (rows*(H+pad)+pad, ..., C) image."""
  images = np.clip(np.asarray(images, np.float32), 0.0, 1.0)
  n, h, w, c = images.shape
  columns = columns or math.ceil(math.sqrt(n))
  rows = math.ceil(n / columns)
  grid = np.ones((rows * (h + pad) + pad, columns * (w + pad) + pad, c), np.float32)
  for i, image in enumerate(images):
    r, col = divmod(i, columns)
    top, left = pad + r * (h + pad), pad + col * (w + pad)
    grid[top:top + h, left:left + w] = image
  return grid


def save_png(path: str, grid: np.ndarray) -> None:
  """Writes an (H, W, 1|3) grid in [0, 1] as a PNG, upscaled so small images stay visible."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  scale = max(1, 256 // max(grid.shape[:2]))
  grid = np.kron(grid, np.ones((scale, scale, 1), grid.dtype))
  plt = pyplot()
  if grid.shape[-1] == 1:
    plt.imsave(path, grid[..., 0], cmap="gray", vmin=0.0, vmax=1.0)
  else:
    plt.imsave(path, grid)


def save_scatter(path: str, points: np.ndarray, labels: np.ndarray | None = None) -> None:
  """A scatter of 2-D points (e.g. posterior means), coloured by label when given."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  plt = pyplot()
  fig, ax = plt.subplots(figsize=(6, 6))
  scatter = ax.scatter(points[:, 0], points[:, 1], c=labels, cmap="tab10", s=3)
  if labels is not None:
    fig.colorbar(scatter, ax=ax, label="label")
  ax.set_xlabel("z[0]")
  ax.set_ylabel("z[1]")
  fig.savefig(path, dpi=100, bbox_inches="tight")
  plt.close(fig)
