"""scikit-learn's handwritten digits as TFDS datasets, so they load like any other.

1,797 8x8 grey images of the digits 0-9 ship inside scikit-learn: no download. Pixel
values 0..16 are rescaled to 0..255 (uint8) to match MNIST-style images; a fixed
stratified split holds out 360 images as test.

``digits`` is the 8x8 images; ``digits28`` the same images and split shaped like MNIST,
28x28: each pixel a 3x3 block, a 2-pixel black border around (``mnist_like``). It stands in
for MNIST offline where a 28x28 input is required (the MNIST-C corruptions, the background
shift built from it).
"""
import numpy as np
import tensorflow_datasets as tfds

NUM_TEST = 360
MNIST_SIZE = 28
PIXEL_BLOCK = 3  # digits28: each 8x8 pixel becomes a 3x3 block (24x24), padded to 28x28


def load_splits() -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
  """``(images uint8 (N, 8, 8, 1), labels, {"train": rows, "test": rows})``: the fixed
  stratified split, rows sorted."""
  from sklearn.datasets import load_digits
  from sklearn.model_selection import train_test_split

  digits = load_digits()
  images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
  train, test = train_test_split(np.arange(len(images)), test_size=NUM_TEST,
                                 stratify=digits.target, random_state=0)
  return images, digits.target, {"train": np.sort(train), "test": np.sort(test)}


def mnist_like(images: np.ndarray) -> np.ndarray:
  """uint8 (N, 8, 8, 1) digits as (N, 28, 28, 1): pixels blown up to PIXEL_BLOCK squares,
  black border around."""
  blocks = np.kron(images[..., 0], np.ones((1, PIXEL_BLOCK, PIXEL_BLOCK), images.dtype))
  pad = (MNIST_SIZE - blocks.shape[1]) // 2
  return np.pad(blocks, ((0, 0), (pad, pad), (pad, pad)))[..., None]


class Digits(tfds.core.GeneratorBasedBuilder):
  """scikit-learn's 8x8 handwritten digits (bundled, offline)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUNDLED = True  # prepared locally from an installed package; never downloaded
  SIZE = 8

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(self.SIZE, self.SIZE, 1)),
            "label": tfds.features.ClassLabel(num_classes=10),
        }),
        supervised_keys=("image", "label"),
        homepage="https://scikit-learn.org/stable/datasets/toy_dataset.html#digits-dataset",
    )

  def images(self, images: np.ndarray) -> np.ndarray:
    return images

  def _split_generators(self, dl_manager):
    images, labels, rows = load_splits()
    images = self.images(images)
    return {split: self._generate_examples(images, labels, indices)
            for split, indices in rows.items()}

  def _generate_examples(self, images, labels, indices):
    for i in indices:
      yield int(i), {"image": images[i], "label": int(labels[i])}


class Digits28(Digits):
  """The same digits and split as ``digits``, 28x28 like MNIST (bundled, offline)."""

  SIZE = MNIST_SIZE

  def images(self, images: np.ndarray) -> np.ndarray:
    return mnist_like(images)
