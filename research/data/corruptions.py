"""MNIST-C's corruptions (Mu & Gilmer 2019, "MNIST-C: A Robustness Benchmark for Computer
Vision"), in numpy and scipy, with the severities MNIST-C's dataset uses.

Each corruption maps a uint8 batch (N, 28, 28, 1) and a seed to a uint8 batch of the same
shape, deterministically (one ``numpy.random.default_rng(seed)`` per batch). Parameters are
those of the reference code (google-research/mnist-c, corruptions.py) at each function's
default severity, the one the released dataset was made with; the operations are written
here from their definitions:

    shot_noise     Poisson noise of rate 3 * x, divided by 3
    impulse_noise  salt and pepper on 17% of the pixels (half each)
    glass_blur     Gaussian blur (sigma 0.7), local pixel swaps (max 1, 2 passes), blur
    motion_blur    one-sided Gaussian kernel (radius 10, sigma 3) along a random angle in
                   [-45, 45] degrees, as ImageMagick's MotionBlurImage
    shear          shear by 0.4 (random sign) about the image centre
    scale          shrink to 0.7 about the centre
    rotate         rotate by 0.4 radians (random sign) about the centre
    brightness     +0.5 on the HSV value channel (for grey images: x + 0.5, clipped)
    translate      shift by 3 pixels along each axis (random signs)
    stripe         invert the 7 leftmost and 7 rightmost columns
    fog            plasma fractal (diamond-square, decay 1.4) of weight 3, rescaled
    spatter        thresholded blurred Gaussian noise as grey (63) mud
    dotted_line    a dotted straight line across the image
    zigzag         a zigzag line across the image
    canny_edges    Canny edges (sigma 1, thresholds 0.1 and 0.2) as the image

Deviations: the random draws differ from the reference's (numpy's global state there);
canny_edges suppresses non-maxima along the gradient direction quantised to 4 bins where
scikit-image interpolates; the affine corruptions interpolate bilinearly with scipy.ndimage
as scikit-image's warp does. Results are clipped to [0, 255] and truncated to uint8.

``CORRUPTIONS`` maps names to functions; the preprocessing op ``corrupt(NAME)`` applies one
to a batch's uint8 images inside the jitted step (a host callback, its seed drawn from the
step's key) so a config can evaluate on corrupted test images, e.g.
``data.preprocess="corrupt('fog')|scale(0, 1)"``. ``mean_corruption_error`` summarises
errors as MNIST-C reports them.
"""
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from research import errors
from research.data import preprocess

SIZE = 28
CENTRE = (SIZE - 1) / 2  # 13.5: the point the affine corruptions keep fixed
FOG_MAP_SIZE = 256
FOG_CHUNK = 64  # fog maps drawn at once (bounds memory)


def _ndimage():
  """scipy.ndimage, imported when a corruption runs: importing preprocessing stays cheap."""
  from scipy import ndimage
  return ndimage


def _unit(images: np.ndarray) -> np.ndarray:
  """uint8 (N, 28, 28, 1) -> float64 (N, 28, 28) in [0, 1]."""
  images = np.asarray(images)
  if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (SIZE, SIZE, 1):
    raise ValueError(f"corruptions take uint8 images (N, {SIZE}, {SIZE}, 1), got "
                     f"{images.dtype} {images.shape}")
  return images[..., 0].astype(np.float64) / 255.0


def _uint8(x: np.ndarray) -> np.ndarray:
  return (np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)[..., None]


def _blur(x: np.ndarray, sigma: float) -> np.ndarray:
  """Gaussian blur of each image (N, H, W), edges repeated (scikit-image's default)."""
  return _ndimage().gaussian_filter(x, sigma=(0, sigma, sigma), mode="nearest", truncate=4.0)


def shot_noise(images: np.ndarray, seed: int) -> np.ndarray:
  rate = 3.0
  rng = np.random.default_rng(seed)
  return _uint8(rng.poisson(_unit(images) * rate) / rate)


IMPULSE_AMOUNT = 0.17


def impulse_noise(images: np.ndarray, seed: int) -> np.ndarray:
  x, rng = _unit(images), np.random.default_rng(seed)
  replaced = rng.random(x.shape) < IMPULSE_AMOUNT
  salt = rng.random(x.shape) < 0.5
  return _uint8(np.where(replaced, salt.astype(np.float64), x))


def glass_blur(images: np.ndarray, seed: int) -> np.ndarray:
  sigma, max_delta, passes = 0.7, 1, 2
  rng = np.random.default_rng(seed)
  x = (_blur(_unit(images), sigma) * 255.0).astype(np.uint8)
  n = len(x)
  for _ in range(passes):
    for h in range(SIZE - max_delta, max_delta, -1):
      for w in range(SIZE - max_delta, max_delta, -1):
        swapped = np.nonzero(rng.random(n) < 0.5)[0]
        dx, dy = rng.integers(-max_delta, max_delta, size=(2, n))
        h2, w2 = h + dy[swapped], w + dx[swapped]
        here = x[swapped, h, w]
        x[swapped, h, w] = x[swapped, h2, w2]
        x[swapped, h2, w2] = here
  return _uint8(_blur(x / 255.0, sigma))


def motion_blur(images: np.ndarray, seed: int) -> np.ndarray:
  radius, sigma = 10, 3.0
  x, rng = _unit(images), np.random.default_rng(seed)
  angles = np.deg2rad(rng.uniform(-45.0, 45.0, len(x)))
  width = 2 * radius + 1
  steps = np.arange(width)
  weights = np.exp(-steps ** 2 / (2 * sigma ** 2))
  weights /= weights.sum()
  padded = np.pad(x, ((0, 0), (width, width), (width, width)), mode="edge")
  rows = np.arange(SIZE)[None, :, None] + width
  cols = np.arange(SIZE)[None, None, :] + width
  batch = np.arange(len(x))[:, None, None]
  out = np.zeros_like(x)
  for step, weight in zip(steps, weights):  # sample step pixels along the angle (y down)
    dc = np.ceil(step * np.cos(angles) - 0.5).astype(int)[:, None, None]
    dr = np.ceil(step * np.sin(angles) - 0.5).astype(int)[:, None, None]
    out += weight * padded[batch, rows + dr, cols + dc]
  return _uint8(out)


def _warp(x: np.ndarray, linear_xy: np.ndarray) -> np.ndarray:
  """One image sampled at ``linear_xy @ (col, row) + t`` (the inverse map, in x-y order as
  scikit-image's AffineTransform), t keeping the centre fixed; bilinear, zeros outside."""
  linear_rc = linear_xy[::-1, ::-1]
  offset = CENTRE - linear_rc @ np.array([CENTRE, CENTRE])
  return _ndimage().affine_transform(x, linear_rc, offset=offset, order=1, mode="constant",
                                  cval=0.0)


def _warp_each(images: np.ndarray, linear_maps) -> np.ndarray:
  x = _unit(images)
  return _uint8(np.stack([_warp(image, linear_xy) for image, linear_xy in zip(x, linear_maps)]))


def _random_signs(rng: np.random.Generator, shape) -> np.ndarray:
  return rng.choice(np.array([-1.0, 1.0]), shape)


SHEAR = 0.4
ROTATION = 0.4  # radians
SCALE = 0.7  # the digit's new size
TRANSLATION = 3  # pixels along each axis


def shear(images: np.ndarray, seed: int) -> np.ndarray:
  angles = SHEAR * _random_signs(np.random.default_rng(seed), len(images))
  return _warp_each(images, [np.array([[1.0, -np.sin(a)], [0.0, np.cos(a)]]) for a in angles])


def rotate(images: np.ndarray, seed: int) -> np.ndarray:
  angles = ROTATION * _random_signs(np.random.default_rng(seed), len(images))
  return _warp_each(images, [np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
                             for a in angles])


def scale(images: np.ndarray, seed: int) -> np.ndarray:
  del seed  # deterministic
  return _warp_each(images, [np.eye(2) / SCALE] * len(images))


def translate(images: np.ndarray, seed: int) -> np.ndarray:
  """Shifts each digit by 3 pixels along each axis, the signs random (zeros fill in)."""
  signs = _random_signs(np.random.default_rng(seed), (len(images), 2))
  x, out = _unit(images), np.zeros((len(images), SIZE, SIZE))
  for i, (dr, dc) in enumerate((signs * TRANSLATION).astype(int)):
    out[i, max(dr, 0):SIZE + min(dr, 0), max(dc, 0):SIZE + min(dc, 0)] = \
        x[i, max(-dr, 0):SIZE + min(-dr, 0), max(-dc, 0):SIZE + min(-dc, 0)]
  return _uint8(out)


BRIGHTNESS = 0.5


def brightness(images: np.ndarray, seed: int) -> np.ndarray:
  del seed  # deterministic
  return _uint8(_unit(images) + BRIGHTNESS)


STRIPE_COLUMNS = 7


def stripe(images: np.ndarray, seed: int) -> np.ndarray:
  del seed  # deterministic
  x = _unit(images)
  x[:, :, :STRIPE_COLUMNS] = 1.0 - x[:, :, :STRIPE_COLUMNS]
  x[:, :, SIZE - STRIPE_COLUMNS:] = 1.0 - x[:, :, SIZE - STRIPE_COLUMNS:]
  return _uint8(x)


def plasma_fractal(rng: np.random.Generator, count: int, size: int = FOG_MAP_SIZE,
                   decay: float = 1.4) -> np.ndarray:
  """``count`` diamond-square height maps (count, size, size) in [0, 1]: each level fills
  square centres, then edge midpoints, with the mean of their 4 neighbours plus uniform
  noise whose range shrinks by ``decay`` per level."""
  heights = np.zeros((count, size, size))
  step, wibble = size, 100.0

  def noisy_mean(total):
    return total / 4 + wibble * rng.uniform(-wibble, wibble, total.shape)

  while step >= 2:
    half = step // 2
    corners = heights[:, 0:size:step, 0:size:step]
    around = corners + np.roll(corners, -1, axis=1)
    around = around + np.roll(around, -1, axis=2)
    heights[:, half:size:step, half:size:step] = noisy_mean(around)
    centres = heights[:, half:size:step, half:size:step]
    corners = heights[:, 0:size:step, 0:size:step]
    left_right = centres + np.roll(centres, 1, axis=1) + corners + np.roll(corners, -1, axis=2)
    heights[:, 0:size:step, half:size:step] = noisy_mean(left_right)
    up_down = centres + np.roll(centres, 1, axis=2) + corners + np.roll(corners, -1, axis=1)
    heights[:, half:size:step, 0:size:step] = noisy_mean(up_down)
    step //= 2
    wibble /= decay
  heights -= heights.min(axis=(1, 2), keepdims=True)
  return heights / heights.max(axis=(1, 2), keepdims=True)


def fog(images: np.ndarray, seed: int) -> np.ndarray:
  weight, decay = 3.0, 1.4
  x, rng = _unit(images), np.random.default_rng(seed)
  maps = np.concatenate([plasma_fractal(rng, min(FOG_CHUNK, len(x) - start), decay=decay)
                         [:, :SIZE, :SIZE] for start in range(0, len(x), FOG_CHUNK)] or
                        [np.zeros((0, SIZE, SIZE))])
  peak = x.max(axis=(1, 2), keepdims=True)
  return _uint8((x + weight * maps) * peak / (peak + weight))


def spatter(images: np.ndarray, seed: int) -> np.ndarray:
  mean, std, sigma, threshold, mud_sigma = 0.65, 0.3, 1.0, 0.65, 1.5
  x, rng = _unit(images), np.random.default_rng(seed)
  liquid = _blur(rng.normal(mean, std, x.shape), sigma)
  liquid[liquid < threshold] = 0
  mud = _blur((liquid > threshold).astype(np.float64), mud_sigma)
  mud[mud < 0.8] = 0
  return _uint8(x * (1 - mud) + 63 / 255 * mud)


def line_from_points(c0: float, r0: float, c1: float, r1: float) -> np.ndarray:
  """A (28, 28) line in [0, 1] from column ``c0`` to ``c1``: intensity log(1 - d / 2.3) + 1
  at vertical distance d from the line (MNIST-C's definition), zero outside the columns."""
  if c1 == c0:
    return np.zeros((SIZE, SIZE))
  cols, rows = np.meshgrid(np.arange(SIZE, dtype=np.float64), np.arange(SIZE, dtype=np.float64))
  slope = (r1 - r0) / (c1 - c0)
  distance = np.clip(np.abs(rows - (slope * (cols - c0) + r0)), 0, 2.3 - 1e-10)
  line = np.clip(np.log(1 - distance / 2.3) + 1, 0, 1)
  line[:, :int(np.floor(c0))] = 0
  line[:, int(np.ceil(c1)):] = 0
  return line


def dotted_line(images: np.ndarray, seed: int) -> np.ndarray:
  x, rng = _unit(images), np.random.default_rng(seed)
  gaps = (np.arange(SIZE) // 2) % 2 == 0  # columns 0-1, 4-5, ... are gaps
  for i in range(len(x)):
    r0, r1 = rng.integers(0, 27, size=2)
    line = line_from_points(0, r0, 27, r1)
    line[:, gaps] = 0
    x[i] = np.clip(x[i] + line, 0, 1)
  return _uint8(x)


def _zigzag_points(r0: int, r1: int) -> np.ndarray:
  """The corners (2, K) of MNIST-C's zigzag from column 2 to 25, row r0 to r1: teeth of
  length and height 2 along the straight line, rotated onto it."""
  length, height, c0, c1 = 2.0, 2.0, 2, 25
  theta = np.arctan((r1 - r0) / (c1 - c0))
  span = (c1 - c0) / np.cos(theta)
  points = [(0.0, 0.0)]
  tooth_row = 0.0
  for i in range(int((span - length) // (2 * length)) + 1):
    tooth_row = (-1) ** i * height
    points.append(((2 * i + 1) * length, tooth_row))
  last = (2 * length) * (span // (2 * length))
  if span != last:
    points.append((span, tooth_row / (2 * (span - last))))
  rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
  return rotation @ np.array(points).T + np.array([[c0], [r0]])


def zigzag(images: np.ndarray, seed: int) -> np.ndarray:
  x, rng = _unit(images), np.random.default_rng(seed)
  for i in range(len(x)):
    r0 = int(rng.integers(0, 27))
    cols, rows = _zigzag_points(r0, r0 + int(rng.integers(-5, 5)))
    for k in range(1, cols.shape[0]):
      x[i] = np.clip(x[i] + line_from_points(cols[k - 1], rows[k - 1], cols[k], rows[k]), 0, 1)
  return _uint8(x)


CANNY_SIGMA, CANNY_LOW, CANNY_HIGH = 1.0, 0.1, 0.2
# neighbour offsets (row, col) across the gradient direction, by direction bin 0, 45, 90, 135
_ACROSS = ((0, 1), (1, 1), (1, 0), (1, -1))


def canny_edges_of(x: np.ndarray) -> np.ndarray:
  """Canny edges (bool) of one image in [0, 1]: Gaussian smoothing (zeros outside,
  normalised for the border), Sobel gradients, non-maximum suppression across the edge,
  hysteresis between the low and high thresholds (8-connected); borders are never edges."""
  smoothed = _ndimage().gaussian_filter(x, CANNY_SIGMA, mode="constant")
  smoothed /= _ndimage().gaussian_filter(np.ones_like(x), CANNY_SIGMA, mode="constant")
  d_col, d_row = _ndimage().sobel(smoothed, axis=1), _ndimage().sobel(smoothed, axis=0)
  magnitude = np.hypot(d_col, d_row)
  direction = np.round(np.mod(np.arctan2(d_row, d_col), np.pi) / (np.pi / 4)).astype(int) % 4
  padded = np.pad(magnitude, 1)
  maxima = np.zeros_like(magnitude, bool)
  rows, cols = np.indices(x.shape)
  for bin_index, (dr, dc) in enumerate(_ACROSS):
    ahead = padded[rows + 1 + dr, cols + 1 + dc]
    behind = padded[rows + 1 - dr, cols + 1 - dc]
    maxima |= (direction == bin_index) & (magnitude >= ahead) & (magnitude >= behind)
  maxima[[0, -1], :] = maxima[:, [0, -1]] = False
  weak = maxima & (magnitude >= CANNY_LOW)
  components, _ = _ndimage().label(weak, structure=np.ones((3, 3)))
  strong = np.unique(components[maxima & (magnitude >= CANNY_HIGH)])
  return np.isin(components, strong[strong > 0])


def canny_edges(images: np.ndarray, seed: int) -> np.ndarray:
  del seed  # deterministic
  return _uint8(np.stack([canny_edges_of(x) for x in _unit(images)]).astype(np.float64))


CORRUPTIONS: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "shot_noise": shot_noise, "impulse_noise": impulse_noise, "glass_blur": glass_blur,
    "motion_blur": motion_blur, "shear": shear, "scale": scale, "rotate": rotate,
    "brightness": brightness, "translate": translate, "stripe": stripe, "fog": fog,
    "spatter": spatter, "dotted_line": dotted_line, "zigzag": zigzag,
    "canny_edges": canny_edges,
}


def corrupt_images(name: str, images: np.ndarray, seed: int) -> np.ndarray:
  """``images`` (uint8 (N, 28, 28, 1)) under corruption ``name``, from ``seed``."""
  if name not in CORRUPTIONS:
    raise errors.ConfigError(f"unknown corruption {name!r}; known: {', '.join(CORRUPTIONS)}")
  return CORRUPTIONS[name](images, int(seed))


@preprocess.register("corrupt")
def corrupt(name: str, key: str = "image") -> preprocess.Op:
  """MNIST-C corruption ``name`` of the batch's uint8 (N, 28, 28, 1) images (before
  ``scale``), computed on the host; its seed comes from the step's key, so an evaluation
  with a fixed key sees the same corrupted images every time."""
  if name not in CORRUPTIONS:
    raise errors.ConfigError(f"preprocessing op corrupt: unknown corruption {name!r}; known: "
                             f"{', '.join(CORRUPTIONS)}")

  def apply(images, rng):
    if images.dtype != jnp.uint8 or images.shape[1:] != (SIZE, SIZE, 1):
      raise errors.ConfigError(f"preprocessing op corrupt({name!r}) needs uint8 images "
                               f"(N, {SIZE}, {SIZE}, 1), got {images.dtype} {images.shape}: put "
                               f"it before scale")
    seed = jax.random.randint(rng, (), 0, np.iinfo(np.int32).max)
    return jax.pure_callback(
        lambda x, s: corrupt_images(name, np.asarray(x), int(s)),
        jax.ShapeDtypeStruct(images.shape, jnp.uint8), images, seed, vmap_method="sequential")

  return lambda batch, rng: preprocess._map_key(batch, key, lambda x: apply(x, rng))


def mean_corruption_error(errors_by_corruption: dict[str, float],
                          clean_error: float | None = None) -> dict[str, float]:
  """MNIST-C's summary: the mean test error over the corruptions (unnormalised, unlike
  ImageNet-C's AlexNet-relative CE), and with ``clean_error`` also the mean increase over
  the clean test error."""
  if not errors_by_corruption:
    raise ValueError("mean_corruption_error needs at least one corruption's error")
  mean = float(np.mean(list(errors_by_corruption.values())))
  out = {"mean_corruption_error": mean}
  if clean_error is not None:
    out["mean_error_increase"] = mean - float(clean_error)
  return out
