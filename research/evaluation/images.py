"""Image grids for sample, reconstruction and interpolation summaries, and their PNGs.

A grid (``make_grid``) is an (H, W, C) array of pixels, what TensorBoard gets, that also
keeps its ``Layout``: the size of one image (cell), and optional row and column labels, a
title and a caption. ``save_png`` upscales it by an integer factor so that every cell is
readable (at least ``MIN_CELL_PX`` pixels) and draws the labels, title and caption around
it."""
import dataclasses
import math
import os
import textwrap

import numpy as np

MIN_CELL_PX = 32  # a PNG shows each image of a grid at least this large (its longer side)...
TARGET_PX = 512  # ...and a small grid at about this size (its longer side)...
MAX_PX = 4096  # ...but upscales no grid beyond this (its longer side)
MIN_SIDE_PX = 256  # an array without a layout: its shorter side reaches this
LABEL_FONT_SIZE = 9


def pyplot():
  """matplotlib.pyplot on the headless Agg backend, imported on first use (it costs ~1 s of
  start-up that a run only pays once it writes a figure)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt


def run_title(workdir: str, what: str, step: int | None = None, scope: str = "") -> str:
  """A figure's title, ``RUN[/replica_I] · WHAT · step STEP``, RUN the workdir's name."""
  run = "/".join(filter(None, [os.path.basename(os.path.normpath(workdir)), scope]))
  return " · ".join(filter(None, [run, what, None if step is None else f"step {step}"]))


@dataclasses.dataclass(frozen=True)
class Layout:
  """How a summary's images are tiled and labelled in its PNG: ``columns`` images a row,
  ``row_labels`` (repeated over the rows when fewer, e.g. ``("input", "reconstruction")``),
  ``column_labels``, a ``title`` above and a ``caption`` below (a sentence on how to read
  the grid)."""
  columns: int | None = None
  row_labels: tuple[str, ...] = ()
  column_labels: tuple[str, ...] = ()
  title: str = ""
  caption: str = ""


class Grid(np.ndarray):
  """An (H, W, C) grid of images: a plain array to everything but ``save_png``, which also
  reads ``layout``, ``cell`` (the (h, w) of one image), ``pad`` and ``rows``."""
  layout: Layout = Layout()
  cell: tuple[int, int] | None = None
  pad: int = 0
  rows: int = 0


def make_grid(images: np.ndarray, columns: int | None = None, pad: int = 1,
              layout: Layout | None = None) -> Grid:
  """Tiles (N, H, W, C) images in [0, 1] into one (rows*(H+pad)+pad, ..., C) image of
  ``columns`` (else ``layout.columns``, else about sqrt(N)) images a row."""
  layout = layout or Layout()
  images = np.clip(np.asarray(images, np.float32), 0.0, 1.0)
  n, h, w, c = images.shape
  columns = columns or layout.columns or math.ceil(math.sqrt(n))
  rows = math.ceil(n / columns)
  pixels = np.ones((rows * (h + pad) + pad, columns * (w + pad) + pad, c), np.float32)
  for i, image in enumerate(images):
    r, col = divmod(i, columns)
    top, left = pad + r * (h + pad), pad + col * (w + pad)
    pixels[top:top + h, left:left + w] = image
  grid = pixels.view(Grid)
  grid.layout, grid.cell, grid.pad, grid.rows = (
      dataclasses.replace(layout, columns=columns), (h, w), pad, rows)
  return grid


def png_scale(grid: np.ndarray) -> int:
  """The integer upscaling of ``grid`` in its PNG: each cell at least MIN_CELL_PX and the
  longer side about TARGET_PX, but that side at most MAX_PX (a grid larger than that
  stays at scale 1). An array without a cell size gets its shorter side to MIN_SIDE_PX."""
  height, width = grid.shape[:2]
  longer, shorter = max(height, width), min(height, width)
  cell = getattr(grid, "cell", None)
  readable = (math.ceil(MIN_CELL_PX / max(cell)) if cell
              else math.ceil(MIN_SIDE_PX / max(shorter, 1)))
  return max(1, min(max(readable, TARGET_PX // longer), MAX_PX // longer))


def save_png(path: str, grid: np.ndarray) -> int:
  """Writes an (H, W, 1|3) grid in [0, 1] as a PNG upscaled by ``png_scale`` (each image
  drawn as blocks of pixels), with its layout's labels, title and caption when it has
  any; returns the scale."""
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  scale = png_scale(grid)
  layout = getattr(grid, "layout", Layout())
  pixels = np.kron(np.asarray(grid, np.float32), np.ones((scale, scale, 1), np.float32))
  plt = pyplot()
  pixels = pixels[..., 0] if pixels.shape[-1] == 1 else pixels
  if not (layout.row_labels or layout.column_labels or layout.title or layout.caption):
    plt.imsave(path, pixels, cmap="gray", vmin=0.0, vmax=1.0)
    return scale
  figure = labelled_figure(pixels, grid, scale)
  figure.savefig(path, dpi=figure.dpi, bbox_inches="tight", pad_inches=0.1, facecolor="white")
  plt.close(figure)
  return scale


def labelled_figure(pixels: np.ndarray, grid: Grid, scale: int):
  """A matplotlib Figure of the upscaled ``pixels`` at one figure pixel each, its rows and
  columns labelled by ``grid.layout`` (labels at each cell's centre), title above and
  caption below."""
  plt, layout, dpi = pyplot(), grid.layout, 100
  height, width = pixels.shape[:2]
  figure = plt.figure(figsize=(width / dpi, height / dpi), dpi=dpi)
  ax = figure.add_axes((0.0, 0.0, 1.0, 1.0))
  ax.imshow(pixels, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest",
            extent=(0, width, height, 0))
  ax.set_xlim(0, width)
  ax.set_ylim(height, 0)
  (h, w), pad = grid.cell, grid.pad

  def centres(n, size):  # of n cells along an axis, in upscaled pixels
    return [(pad + i * (size + pad) + size / 2) * scale for i in range(n)]

  rows = list(layout.row_labels) * math.ceil(grid.rows / max(len(layout.row_labels), 1))
  ax.set_yticks(centres(grid.rows, h) if layout.row_labels else [],
                rows[:grid.rows] if layout.row_labels else [], fontsize=LABEL_FONT_SIZE)
  columns = list(layout.column_labels)[:layout.columns]
  ax.set_xticks(centres(len(columns), w), columns, fontsize=LABEL_FONT_SIZE)
  ax.xaxis.tick_top()
  ax.tick_params(length=0, pad=3)
  for spine in ax.spines.values():
    spine.set_visible(False)
  if layout.title:
    ax.set_title(layout.title, fontsize=LABEL_FONT_SIZE + 1, pad=6)
  if layout.caption:
    chars = max(30, int(width / (0.6 * LABEL_FONT_SIZE)))
    ax.set_xlabel("\n".join(textwrap.wrap(layout.caption, chars)), fontsize=LABEL_FONT_SIZE,
                  loc="left", labelpad=6)
    ax.xaxis.set_label_position("bottom")
  return figure


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
