"""Colored MNIST (Arjovsky et al. 2019, "Invariant Risk Minimization"), generated here.

Follows the construction of the paper's reference code
(facebookresearch/InvariantRiskMinimization, code/colored_mnist/main.py):

- images: MNIST's 28x28 digits subsampled to 14x14 by taking every other pixel
  (``images[:, ::2, ::2]``), in two colour channels;
- label ``y = (digit < 5)``, then flipped with probability 0.25;
- colour ``c = y`` flipped with probability ``e``; the digit goes into channel ``c`` and
  the other channel is zero;
- environments: MNIST's first 50,000 training images, shuffled, make the two training
  environments, rows ``[::2]`` with e = 0.2 and rows ``[1::2]`` with e = 0.1; the other
  10,000 training images make the test environment with e = 0.9. The MNIST test split is
  not used, as in the reference code.

Here the shuffle and every coin flip come from ``numpy.random.default_rng`` seeded by
``seed`` (and the environment's index), so the same seed gives the same data on every
machine; the reference code draws them from global torch/numpy state instead. The held-out
images also make test environments with e = 0.8 and e = 0.7 (fresh label and colour flips
each). For a source other than MNIST's 60,000 images the first 5/6 are the training
images.

The TFDS builder ``colored_mnist`` reads ``mnist`` (train split) from its own data dir,
which must hold a prepared mnist, and writes the splits ``train_e20`` (e = 0.2, 25,000),
``train_e10`` (e = 0.1, 25,000), ``train`` (both), ``test`` (e = 0.9, 10,000; the
reference test environment), ``test_e90`` (the same examples), ``test_e80`` and
``test_e70``, with features ``image`` (14, 14, 2) uint8, ``label`` (the noisy binary
label), ``digit``, ``color`` (the non-zero channel) and ``environment`` (the index into
``ENVIRONMENTS``).
"""
import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from research.data import tfds_sources

LABEL_NOISE = 0.25  # probability that the binary label disagrees with (digit < 5)
TRAIN_FRACTION_NUMERATOR, TRAIN_FRACTION_DENOMINATOR = 5, 6  # 50,000 of MNIST's 60,000
SEED = 0  # the builder's seed
SIZE = 14


@dataclasses.dataclass(frozen=True)
class Environment:
  """One environment: its split name, colour flip probability and which source rows."""
  split: str
  e: float
  rows: str  # "train_even", "train_odd" (of the shuffled training rows) or "held_out"


ENVIRONMENTS = (
    Environment("train_e20", 0.2, "train_even"),
    Environment("train_e10", 0.1, "train_odd"),
    Environment("test_e90", 0.9, "held_out"),
    Environment("test_e80", 0.8, "held_out"),
    Environment("test_e70", 0.7, "held_out"),
)


def subsample(images: np.ndarray) -> np.ndarray:
  """(N, 28, 28[, 1]) -> (N, 14, 14): every other row and column, as the reference code."""
  return np.asarray(images).reshape((-1, 28, 28))[:, ::2, ::2]


def make_environment(images: np.ndarray, digits: np.ndarray, e: float,
                     rng: np.random.Generator) -> dict[str, np.ndarray]:
  """One Colored MNIST environment of 28x28 grey ``images`` and their ``digits``: ``image``
  (N, 14, 14, 2) uint8, ``label`` (noisy ``digit < 5``), ``color`` (label flipped with
  probability ``e``) and ``digit``, all int64 but the image."""
  images, digits = subsample(images), np.asarray(digits, np.int64)
  n = len(digits)
  label = (digits < 5).astype(np.int64) ^ (rng.random(n) < LABEL_NOISE)
  color = label ^ (rng.random(n) < e)
  colored = np.zeros((n, SIZE, SIZE, 2), np.uint8)
  colored[np.arange(n), :, :, color] = images
  return {"image": colored, "label": label, "color": color, "digit": digits}


def source_rows(num_images: int, seed: int) -> dict[str, np.ndarray]:
  """Indices into the source images of each kind of environment: the first 5/6 shuffled
  then split into even and odd positions, the rest held out."""
  num_train = num_images * TRAIN_FRACTION_NUMERATOR // TRAIN_FRACTION_DENOMINATOR
  shuffled = np.random.default_rng(seed).permutation(num_train)
  return {"train_even": shuffled[::2], "train_odd": shuffled[1::2],
          "held_out": np.arange(num_train, num_images)}


def make_environments(images: np.ndarray, digits: np.ndarray,
                      seed: int) -> dict[str, dict[str, np.ndarray]]:
  """Every environment of ``ENVIRONMENTS`` by split name, each with its ``environment``
  index and ``source_index`` (the row of the source images) added."""
  rows = source_rows(len(digits), seed)
  out = {}
  for index, env in enumerate(ENVIRONMENTS):
    chosen = rows[env.rows]
    rng = np.random.default_rng([seed, index])
    out[env.split] = {**make_environment(images[chosen], digits[chosen], env.e, rng),
                      "environment": np.full(len(chosen), index, np.int64),
                      "source_index": chosen.astype(np.int64)}
  return out


def splits_of(environments: dict[str, dict[str, np.ndarray]]) -> dict[str, dict]:
  """The builder's splits: each environment, ``train`` (both training environments) and
  ``test`` (the reference e = 0.9 environment)."""
  train = [environments["train_e20"], environments["train_e10"]]
  return {**environments, "test": environments["test_e90"],
          "train": {k: np.concatenate([env[k] for env in train]) for k in train[0]}}


class ColoredMnist(tfds.core.GeneratorBasedBuilder):
  """Colored MNIST's environments, generated from a prepared mnist (offline)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUNDLED = True  # generated locally from a prepared mnist; never downloaded

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self, description=__doc__,
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Tensor(shape=(SIZE, SIZE, 2), dtype=np.uint8),
            "label": tfds.features.ClassLabel(num_classes=2),
            "digit": tfds.features.ClassLabel(num_classes=10),
            "color": tfds.features.ClassLabel(num_classes=2),
            "environment": tfds.features.Tensor(shape=(), dtype=np.int64),
        }),
        supervised_keys=("image", "label"),
        homepage="https://github.com/facebookresearch/InvariantRiskMinimization")

  def _split_generators(self, dl_manager):
    images, digits = tfds_sources.load_prepared_images(
        "mnist", "train", str(self.data_dir_root))
    splits = splits_of(make_environments(images, digits, SEED))
    return {name: self._generate_examples(arrays) for name, arrays in splits.items()}

  def _generate_examples(self, arrays):
    for i, source_index in enumerate(arrays["source_index"]):
      yield int(source_index), {
          "image": arrays["image"][i], "label": int(arrays["label"][i]),
          "digit": int(arrays["digit"][i]), "color": int(arrays["color"][i]),
          "environment": int(arrays["environment"][i])}
