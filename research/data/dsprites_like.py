"""A dSprites-like dataset: 2-D sprites rendered here from a grid of known factors.

Like dSprites (Matthey et al. 2017), every combination of five factors is one 64x64 binary
image (uint8 0/255, shape (64, 64, 1)):

    factor        classes  values
    shape         3        square, ellipse, heart (0, 1, 2)
    scale         6        0.5 .. 1.0, evenly spaced
    orientation   40       0 .. 2*pi (exclusive), evenly spaced, radians counter-clockwise
    x position    32       0 .. 1, evenly spaced: the sprite centre from left to right
    y position    32       0 .. 1, evenly spaced: the sprite centre from top to bottom

Example ``i`` is the row-major (C order) index over (shape, scale, orientation, x, y), as
dSprites' ``latents_classes`` (without its constant colour): ``factors_of(i)`` gives its
five class indices, ``index_of`` the reverse, ``factor_grid()`` all rows in that order and
``render(factors)`` the images of a batch of rows (``sampler``: batches with one factor
fixed, for the FactorVAE and BetaVAE scores), in numpy alone and deterministic (a
pixel is on when its centre lies inside the sprite). The square and ellipse repeat
themselves under rotation (every pi/2, every pi) as dSprites' do.

It is dSprites-like, not dSprites: the shapes are drawn from their definitions below
(square of side 1.6 units, ellipse of axes 2:1, heart the implicit curve
(x^2 + y^2 - 1)^3 = x^2 y^3), so metrics on it compare with published dSprites numbers
only approximately.

The TFDS builder ``dsprites_like`` writes one ``train`` split (as dSprites) with features
``image``, ``label`` (the shape), ``factors`` (the five class indices, int64) and
``values`` (the five factor values, float32; the shape as its class index). Configs:
``dsprites_like/full`` (the default): the whole grid, 737,280 examples (minutes to
prepare); ``dsprites_like/small``: every shape and scale, every 4th orientation and x and
y position, 11,520 examples (seconds), for tests and quick runs. Both keep the full grid's
class indices in ``factors`` (the small one's orientations are 0, 4, 8, ...).
"""
import dataclasses

import numpy as np
import tensorflow_datasets as tfds

FACTOR_NAMES = ("shape", "scale", "orientation", "x", "y")
SHAPE_NAMES = ("square", "ellipse", "heart")
NUM_CLASSES = (3, 6, 40, 32, 32)
SCALES = np.linspace(0.5, 1.0, NUM_CLASSES[1])
ORIENTATIONS = np.linspace(0.0, 2 * np.pi, NUM_CLASSES[2], endpoint=False)
POSITIONS = np.linspace(0.0, 1.0, NUM_CLASSES[3])
SIZE = 64  # image height and width, pixels
MARGIN = 10.0  # pixels from the border to the sprite centre at position 0 (and 1)
UNIT = 10.0  # pixels per shape unit at scale 1: the sprites span about 2 units
RENDER_CHUNK = 4096  # images rendered at once (bounds the float buffers)


def _heart(x: np.ndarray, y: np.ndarray) -> np.ndarray:
  """Inside the heart (x^2 + y^2 - 1)^3 <= x^2 y^3 (lobes up), unscaled."""
  r = x * x + y * y - 1.0
  return r * r * r - x * x * y * y * y <= 0.0


def _heart_frame() -> tuple[float, float]:
  """(vertical offset, scale) that put the heart's area centroid at the origin and its
  extent near the other shapes' (about 2 units tall)."""
  grid = np.linspace(-1.5, 1.5, 1201)
  x, y = np.meshgrid(grid, grid)
  inside = _heart(x, y)
  height = y[inside].max() - y[inside].min()
  return float(y[inside].mean()), 2.0 / height


HEART_OFFSET, HEART_SCALE = _heart_frame()


def _inside(shape: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
  """Inside the shape at scale 1 and orientation 0, in shape units (y up), centred on its
  area centroid."""
  if shape == 0:
    return (np.abs(x) <= 0.8) & (np.abs(y) <= 0.8)
  if shape == 1:
    return x * x + (2.0 * y) ** 2 <= 1.0
  return _heart(x / HEART_SCALE, y / HEART_SCALE + HEART_OFFSET)


def grid_axes(orientation_step: int = 1, position_step: int = 1) -> list[np.ndarray]:
  """Each factor's class indices on the (sub-)grid: every ``*_step``-th orientation and x
  and y position, all shapes and scales."""
  steps = (1, 1, orientation_step, position_step, position_step)
  return [np.arange(0, n, step) for n, step in zip(NUM_CLASSES, steps)]


def factor_grid(orientation_step: int = 1, position_step: int = 1) -> np.ndarray:
  """Every factor row (class indices, int64, (N, 5)) of the (sub-)grid in index order."""
  axes = grid_axes(orientation_step, position_step)
  return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 5).astype(np.int64)


def sampler(orientation_step: int = 1, position_step: int = 1):
  """``sample_fixed(factor, batch_size, rng) -> images`` over the (sub-)grid: random factor
  rows with factor ``factor`` (None: none) fixed at one random value, rendered; what the
  FactorVAE and BetaVAE scores draw (research/evaluation/disentanglement.py)."""
  axes = grid_axes(orientation_step, position_step)

  def sample_fixed(factor, batch_size: int, rng: np.random.Generator) -> np.ndarray:
    rows = np.stack([rng.choice(axis, batch_size) for axis in axes], axis=-1)
    if factor is not None:
      rows[:, factor] = rng.choice(axes[factor])
    return render(rows)

  return sample_fixed


def factors_of(index) -> np.ndarray:
  """The class indices (..., 5) of full-grid example index(es) ``index``."""
  return np.stack(np.unravel_index(np.asarray(index), NUM_CLASSES), axis=-1).astype(np.int64)


def index_of(factors) -> np.ndarray:
  """The full-grid example index of class-index row(s) ``factors`` (..., 5)."""
  factors = np.asarray(factors)
  return np.ravel_multi_index(tuple(np.moveaxis(factors, -1, 0)), NUM_CLASSES).astype(np.int64)


def values_of(factors) -> np.ndarray:
  """The factor values (..., 5), float32: shape class, scale, radians, x and y in [0, 1]."""
  factors = np.asarray(factors)
  return np.stack([factors[..., 0].astype(np.float64), SCALES[factors[..., 1]],
                   ORIENTATIONS[factors[..., 2]], POSITIONS[factors[..., 3]],
                   POSITIONS[factors[..., 4]]], axis=-1).astype(np.float32)


def centre_pixels(position) -> np.ndarray:
  """Where a sprite's centre lies, in pixel coordinates (pixel k spans [k, k + 1))."""
  return MARGIN + np.asarray(position) * (SIZE - 2 * MARGIN)


def render(factors) -> np.ndarray:
  """The images (N, 64, 64, 1), uint8 0/255, of class-index rows ``factors`` (N, 5)."""
  factors = np.asarray(factors, dtype=np.int64).reshape(-1, 5)
  images = np.zeros((len(factors), SIZE, SIZE, 1), np.uint8)
  for start in range(0, len(factors), RENDER_CHUNK):
    rows = factors[start:start + RENDER_CHUNK]
    images[start:start + len(rows), ..., 0] = _render_chunk(rows) * np.uint8(255)
  return images


def _render_chunk(factors: np.ndarray) -> np.ndarray:
  values = values_of(factors).astype(np.float64)
  centres = (np.arange(SIZE) + 0.5)[None, None, :]
  size = (UNIT * values[:, 1])[:, None, None]
  # pixel centres relative to the sprite centre, in shape units, y up
  u = (centres - centre_pixels(values[:, 3])[:, None, None]) / size
  v = (centre_pixels(values[:, 4])[:, None, None] - centres.transpose(0, 2, 1)) / size
  cos, sin = np.cos(values[:, 2])[:, None, None], np.sin(values[:, 2])[:, None, None]
  x, y = cos * u + sin * v, cos * v - sin * u  # rotated back by the orientation
  on = np.zeros(x.shape, bool)
  for shape in range(NUM_CLASSES[0]):
    rows = factors[:, 0] == shape
    if rows.any():
      on[rows] = _inside(shape, x[rows], y[rows])
  return on.astype(np.uint8)


@dataclasses.dataclass
class DspritesLikeConfig(tfds.core.BuilderConfig):
  """A sub-grid: every ``orientation_step``-th orientation and ``position_step``-th x and y
  position."""
  orientation_step: int = 1
  position_step: int = 1


class DspritesLike(tfds.core.GeneratorBasedBuilder):
  """dSprites-like sprites with their five factors (generated, offline)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUNDLED = True  # generated locally; never downloaded
  BUILDER_CONFIGS = [
      DspritesLikeConfig(name="full", description="the whole grid, 737,280 examples"),
      DspritesLikeConfig(name="small", orientation_step=4, position_step=4,
                         description="every 4th orientation and position, 11,520 examples"),
  ]

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self, description=__doc__,
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(SIZE, SIZE, 1)),
            "label": tfds.features.ClassLabel(names=SHAPE_NAMES),
            "factors": tfds.features.Tensor(shape=(5,), dtype=np.int64),
            "values": tfds.features.Tensor(shape=(5,), dtype=np.float32),
        }),
        supervised_keys=("image", "label"))

  def _split_generators(self, dl_manager):
    grid = factor_grid(self.builder_config.orientation_step, self.builder_config.position_step)
    return {"train": self._generate_examples(grid)}

  def _generate_examples(self, grid):
    for start in range(0, len(grid), RENDER_CHUNK):
      rows = grid[start:start + RENDER_CHUNK]
      for factors, image in zip(rows, render(rows)):
        yield int(index_of(factors)), {"image": image, "label": int(factors[0]),
                                       "factors": factors, "values": values_of(factors)}
