"""python launch.py --config=studies/corruptions --workdir=/tmp/corruptions_digits  # offline
python launch.py --config=studies/corruptions:mnist --config.data_dir=DIR --workdir=/tmp/mnist_c

Corruption robustness, MNIST-C (research/studies/corruptions.py): classifiers trained on clean
images (cnn, cnn_strong, cnn_fast: clean MNIST test error < 1%; an MLP and the CVAE's Bayes
classifier beside them) tested on the clean test split and under each of the 15 MNIST-C
corruptions (the ``corrupt(NAME)`` op); per-corruption test error, the mean corruption error
(MNIST-C's: the plain mean error) and the error relative to the cnn's, 3 seeds with 95%
intervals. Not yet measured on MNIST (benchmarks/RESULTS.md).

ARG: ``mnist`` (needs a TFDS data dir with mnist prepared, TFDS_DATA_DIR=DIR) or ``digits``
(the bundled 8x8 digits blown up to 28x28, ``digits28``, which the corruptions need:
minutes, offline).
"""
import ml_collections
from ml_collections import config_dict

from configs import common

DATASETS = {"mnist": "mnist", "digits": "digits28"}
CLASSIFIERS = {"mnist": ("cnn", "cnn_strong", "cnn_fast"), "digits": ("cnn",)}
# research/data/corruptions.py:CORRUPTIONS, listed here so that loading a config imports no
# JAX (tests/test_corruptions_study.py checks that they agree).
CORRUPTIONS = ("shot_noise", "impulse_noise", "glass_blur", "motion_blur", "shear", "scale",
               "rotate", "brightness", "translate", "stripe", "fog", "spatter", "dotted_line",
               "zigzag", "canny_edges")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.study_arg(arg, DATASETS)
  config = ml_collections.ConfigDict()
  config.study = "corruptions"  # research/studies/corruptions.py
  config.dataset = DATASETS[arg]  # trained on its clean train split, tested on its test split
  config.classifiers = CLASSIFIERS[arg]  # the robustness candidates
  config.contrast = ("mlp",)  # classifiers shown beside them
  config.generative = ("cvae",)  # Bayes classifiers argmax_y log p(x | y) + log p(y)
  # > 0: the generative models' posterior samples per class and image, else their config's
  config.class_samples = -1
  config.corruptions = CORRUPTIONS  # the test split under each (MNIST-C's severities)
  config.baseline = "cnn"  # relative_mce divides each corruption's error by this model's
  config.seeds = (0, 1, 2)  # the 95% intervals are over these
  config.data_dir = config_dict.placeholder(str)  # None: TFDS_DATA_DIR or ~/tensorflow_datasets
  config.num_epochs = -1.0  # > 0: every run this many epochs, else its config's
  config.total_steps = -1  # > 0: every run this many steps (a quick look), else its own
  return config
