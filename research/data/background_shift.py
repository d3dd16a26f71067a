"""Background shift (a duck on a sofa: an object on an unusual background), as Biased MNIST
(Bahng et al. 2020, "Learning De-biased Representations with Biased Representations"),
generated here.

Each class has its own background (one of 10); an image's background is its class's with
probability ``rho`` and otherwise one of the other nine, as in the reference code
(clovaai/rebias, datasets/colour_mnist.py): within each class, floor(n * rho) images,
chosen at random, get the class's background and the rest are split evenly, in a random
order, among the other nine backgrounds. Training data uses rho = 0.99 or 0.999 (the
configs); the test split uses rho = 0.1, which makes the background independent of the
label (Biased MNIST's unbiased test). Backgrounds:

- ``colors``: Biased MNIST's 10 flat colours (its COLOUR_MAP);
- ``textures``: 10 grey procedural patterns drawn here (horizontal, vertical, diagonal and
  anti-diagonal stripes, large and small checks, dots, grid lines, rings, random noise),
  each at a random phase per image.

The digit (or Fashion-MNIST item) is composited in white over the background with its grey
level as opacity: ``out = ink + (1 - ink / 255) * background``. Biased MNIST paints every
non-zero pixel pure white instead; for MNIST the two differ only at the strokes' soft edges,
and the opacity keeps Fashion-MNIST items' inner texture.

The TFDS builder ``background_shift`` has one config per source, background kind and rho,
``{mnist,fashion_mnist}_{colors,textures}_rho{99,999}`` (e.g.
``background_shift/mnist_colors_rho99``), read from the prepared source in its own data dir,
and ``digits28_{colors,textures}_rho{99,999}``, made offline from the bundled 8x8 digits
blown up to 28x28 (research/data/digits.py: 1,197 train, 240 val, 360 test images).
Splits: ``train`` (5/6 of the source's training images, biased), ``val`` (the other 1/6,
biased as train: selecting models on it is honest, since nothing of the test distribution
is seen) and ``test`` (the source's test images, unbiased). Features: ``image`` (28, 28, 3)
uint8, ``label`` and ``background`` (the background's index; ``background == label`` is the
bias-aligned case). Everything is a function of the seed.
"""
import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from research.data import tfds_sources

NUM_CLASSES = 10
SIZE = 28
COLORS = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [225, 225, 0], [225, 0, 225],
                   [0, 255, 255], [255, 128, 0], [255, 0, 128], [128, 0, 255], [128, 128, 128]],
                  np.uint8)  # Biased MNIST's COLOUR_MAP: background k is class k's
TEXTURE_NAMES = ("horizontal_stripes", "vertical_stripes", "diagonal_stripes",
                 "antidiagonal_stripes", "checks", "small_checks", "dots", "grid", "rings",
                 "noise")
TEXTURE_LEVEL = 160  # grey level of a texture's "on" pixels (the rest black)
UNBIASED_RHO = 0.1  # 1 / NUM_CLASSES: the background carries no information on the label
TRAIN_FRACTION_NUMERATOR, TRAIN_FRACTION_DENOMINATOR = 5, 6
SEED = 0  # the builder's seed
SOURCES = ("mnist", "fashion_mnist", "digits28")  # digits28: bundled, the offline stand-in
PERIOD = 12  # every texture repeats within 12 pixels: the random phase spans one period


def assign_backgrounds(labels: np.ndarray, rho: float, rng: np.random.Generator) -> np.ndarray:
  """Each example's background index: within each class, floor(n * rho) random examples get
  the class's own, the rest go in equal chunks (ceil) to the other nine in random order."""
  labels = np.asarray(labels, np.int64)
  backgrounds = np.empty(len(labels), np.int64)
  for label in range(NUM_CLASSES):
    members = rng.permutation(np.nonzero(labels == label)[0])
    aligned = int(len(members) * rho)
    backgrounds[members[:aligned]] = label
    rest = members[aligned:]
    if len(rest):
      others = rng.permutation([(label + k) % NUM_CLASSES for k in range(1, NUM_CLASSES)])
      chunk = int(np.ceil(len(rest) / (NUM_CLASSES - 1)))
      for i, start in enumerate(range(0, len(rest), chunk)):
        backgrounds[rest[start:start + chunk]] = others[i]
  return backgrounds


def texture_masks(textures: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """Boolean (N, 28, 28) "on" pixels of texture indices ``textures``, each at a random
  phase (rings: a random centre offset; noise: fresh coin flips)."""
  textures = np.asarray(textures, np.int64)
  n = len(textures)
  phase = rng.integers(0, PERIOD, size=(2, n))[:, :, None, None]
  noise = rng.random((n, SIZE, SIZE)) < 0.5
  r = np.broadcast_to(np.arange(SIZE)[None, :, None] + phase[0], (n, SIZE, SIZE))
  c = np.broadcast_to(np.arange(SIZE)[None, None, :] + phase[1], (n, SIZE, SIZE))
  rings = np.hypot(r - PERIOD - SIZE / 2, c - PERIOD - SIZE / 2)
  patterns = [
      (r // 2) % 2 == 0,
      (c // 2) % 2 == 0,
      ((r + c) // 3) % 2 == 0,
      ((r - c) // 3) % 2 == 0,
      ((r // 4) + (c // 4)) % 2 == 0,
      ((r // 2) + (c // 2)) % 2 == 0,
      (r % 4 < 2) & (c % 4 < 2),
      (r % 6 == 0) | (c % 6 == 0),
      (np.floor(rings) // 2) % 2 == 0,
      noise,
  ]
  out = np.zeros((n, SIZE, SIZE), bool)
  for index, pattern in enumerate(patterns):
    rows = textures == index
    out[rows] = pattern[rows]
  return out


def render_backgrounds(kind: str, backgrounds: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """uint8 (N, 28, 28, 3) backgrounds of indices ``backgrounds``: ``colors`` or
  ``textures``."""
  backgrounds = np.asarray(backgrounds, np.int64)
  if kind == "colors":
    return np.broadcast_to(COLORS[backgrounds][:, None, None, :],
                           (len(backgrounds), SIZE, SIZE, 3)).copy()
  if kind == "textures":
    on = texture_masks(backgrounds, rng)
    return np.repeat((on * TEXTURE_LEVEL).astype(np.uint8)[..., None], 3, axis=-1)
  raise ValueError(f"unknown background kind {kind!r}; known: colors, textures")


def composite(images: np.ndarray, backgrounds: np.ndarray) -> np.ndarray:
  """White ink of grey ``images`` (N, 28, 28[, 1]) over ``backgrounds`` (N, 28, 28, 3), the
  grey level as opacity."""
  ink = np.asarray(images, np.float64).reshape(-1, SIZE, SIZE, 1)
  out = ink + (1.0 - ink / 255.0) * backgrounds.astype(np.float64)
  return np.clip(np.round(out), 0, 255).astype(np.uint8)


def make_split(images: np.ndarray, labels: np.ndarray, kind: str, rho: float,
               rng: np.random.Generator) -> dict[str, np.ndarray]:
  """One split: ``image`` (N, 28, 28, 3) uint8, ``label`` and ``background`` (int64)."""
  labels = np.asarray(labels, np.int64)
  backgrounds = assign_backgrounds(labels, rho, rng)
  image = composite(images, render_backgrounds(kind, backgrounds, rng))
  return {"image": image, "label": labels, "background": backgrounds}


def make_splits(train_images, train_labels, test_images, test_labels, kind: str, rho: float,
                seed: int) -> dict[str, dict[str, np.ndarray]]:
  """``train`` and ``val`` (a random 5/6 and 1/6 of the training images, both biased with
  ``rho``) and ``test`` (unbiased), each with ``source_index`` (the row in its source)."""
  num_train = len(train_labels) * TRAIN_FRACTION_NUMERATOR // TRAIN_FRACTION_DENOMINATOR
  shuffled = np.random.default_rng(seed).permutation(len(train_labels))
  parts = {"train": (train_images, train_labels, np.sort(shuffled[:num_train]), rho),
           "val": (train_images, train_labels, np.sort(shuffled[num_train:]), rho),
           "test": (test_images, test_labels, np.arange(len(test_labels)), UNBIASED_RHO)}
  out = {}
  for index, (split, (images, labels, rows, split_rho)) in enumerate(parts.items()):
    rng = np.random.default_rng([seed, index])
    out[split] = {**make_split(images[rows], labels[rows], kind, split_rho, rng),
                  "source_index": rows.astype(np.int64)}
  return out


@dataclasses.dataclass
class BackgroundShiftConfig(tfds.core.BuilderConfig):
  """A source dataset, a background kind and the training correlation rho."""
  source: str = "mnist"
  kind: str = "colors"
  rho: float = 0.99


def _configs() -> list[BackgroundShiftConfig]:
  return [BackgroundShiftConfig(
      name=f"{source}_{kind}_rho{str(rho)[2:]}", source=source, kind=kind, rho=rho,
      description=f"{source} on {kind} backgrounds, P(background = class's) = {rho} in "
                  f"train and val, 0.1 (independent) in test")
          for source in SOURCES for kind in ("colors", "textures")
          for rho in (0.99, 0.999)]


class BackgroundShift(tfds.core.GeneratorBasedBuilder):
  """Biased-MNIST-style background shift, generated from a prepared source (offline)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUNDLED = True  # generated locally from a prepared mnist or fashion_mnist; never downloaded
  BUILDER_CONFIGS = _configs()

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self, description=__doc__,
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(SIZE, SIZE, 3)),
            "label": tfds.features.ClassLabel(num_classes=NUM_CLASSES),
            "background": tfds.features.ClassLabel(num_classes=NUM_CLASSES),
        }),
        supervised_keys=("image", "label"),
        homepage="https://github.com/clovaai/rebias")

  def _split_generators(self, dl_manager):
    config, data_dir = self.builder_config, str(self.data_dir_root)
    train = tfds_sources.load_prepared_images(config.source, "train", data_dir)
    test = tfds_sources.load_prepared_images(config.source, "test", data_dir)
    splits = make_splits(*train, *test, config.kind, config.rho, SEED)
    return {name: self._generate_examples(arrays) for name, arrays in splits.items()}

  def _generate_examples(self, arrays):
    for i, source_index in enumerate(arrays["source_index"]):
      yield int(source_index), {"image": arrays["image"][i], "label": int(arrays["label"][i]),
                                "background": int(arrays["background"][i])}
