"""scikit-learn's handwritten digits as a TFDS dataset, so it loads like any other.

1,797 8x8 grey images of the digits 0-9 ship inside scikit-learn: no download. Pixel
values 0..16 are rescaled to 0..255 (uint8) to match MNIST-style images; a fixed
stratified split holds out 360 images as test.
"""
import numpy as np
import tensorflow_datasets as tfds

NUM_TEST = 360


class Digits(tfds.core.GeneratorBasedBuilder):
  """scikit-learn's 8x8 handwritten digits (bundled, offline)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUNDLED = True  # prepared locally from an installed package; never downloaded

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(8, 8, 1)),
            "label": tfds.features.ClassLabel(num_classes=10),
        }),
        supervised_keys=("image", "label"),
        homepage="https://scikit-learn.org/stable/datasets/toy_dataset.html#digits-dataset",
    )

  def _split_generators(self, dl_manager):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    indices = np.arange(len(images))
    train, test = train_test_split(
        indices, test_size=NUM_TEST, stratify=digits.target, random_state=0)
    return {
        "train": self._generate_examples(images, digits.target, np.sort(train)),
        "test": self._generate_examples(images, digits.target, np.sort(test)),
    }

  def _generate_examples(self, images, labels, indices):
    for i in indices:
      yield int(i), {"image": images[i], "label": int(labels[i])}
