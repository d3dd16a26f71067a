"""Prepared TFDS image datasets read into numpy: the sources the generated shift benchmarks
(colored_mnist, background_shift) are built from, looked up in the builder's own data dir.
A bundled source (``digits28``, the offline stand-in for MNIST) is prepared there first.

``load_prepared_images`` is the one place those builders read their source; tests replace it
with small stand-in arrays.
"""
import numpy as np
import tensorflow_datasets as tfds

from research import errors
from research.data import digits  # noqa: F401  registers digits28, a bundled source


def load_prepared_images(name: str, split: str, data_dir: str) -> tuple[np.ndarray, np.ndarray]:
  """``(images uint8 (N, H, W, C), labels int64 (N,))`` of the prepared TFDS dataset ``name``
  in ``data_dir``; a UserError naming the fix when it is not prepared there (never
  downloads; a bundled dataset is prepared offline)."""
  from research.data import pipeline
  builder = tfds.builder(name, data_dir=data_dir)
  if not builder.is_prepared() and getattr(builder, "BUNDLED", False):
    pipeline.tensorflow_for_data()
    builder.download_and_prepare()
  if not builder.is_prepared():
    raise errors.UserError(
        f"{name} is not prepared in {data_dir}, and the dataset being built is made from it: "
        f"prepare {name} in your TFDS data dir first (e.g. `tfds build {name} "
        f"--data_dir={data_dir}` on a machine with internet, or copy a prepared {name} folder "
        f"there), then rerun")
  pipeline.tensorflow_for_data()
  arrays = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
  return np.asarray(arrays["image"], np.uint8), np.asarray(arrays["label"], np.int64)
