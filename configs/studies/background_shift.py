"""python launch.py --config=studies/background_shift --workdir=/tmp/bg_digits   # offline
python launch.py --config=studies/background_shift:mnist --config.data_dir=DIR --workdir=/tmp/bg

Background shift, a duck on a sofa (research/studies/background_shift.py): CNN, ResNet and
the CVAE as a Bayes classifier (discretized-logistic decoder on the RGB pixels) trained on
Biased MNIST-style data whose background colour or texture is the class's with probability
rho (0.99, 0.999), tested where it is independent of the class; unbiased test accuracy,
split into bias-aligned and bias-conflicting examples, 3 seeds with 95% intervals. Not yet
measured on MNIST (benchmarks/RESULTS.md).

ARG: ``mnist`` (MNIST digits and Fashion-MNIST items; needs a TFDS data dir with mnist and
fashion_mnist prepared, TFDS_DATA_DIR=DIR: the background_shift configs are built there from
them) or ``digits`` (the bundled 8x8 digits blown up to 28x28, ``digits28``: minutes,
offline).
"""
import ml_collections
from ml_collections import config_dict

from configs import common

SOURCES = {"mnist": ("mnist", "fashion_mnist"), "digits": ("digits28",)}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.study_arg(arg, SOURCES)
  config = ml_collections.ConfigDict()
  config.study = "background_shift"  # research/studies/background_shift.py
  config.sources = SOURCES[arg]  # the images put on the backgrounds
  config.kinds = ("colors", "textures")  # the backgrounds (research/data/background_shift.py)
  config.rhos = (0.99, 0.999)  # P(background = the class's) in train and val
  config.classifiers = ("cnn", "resnet")  # discriminative, their configs for the source
  config.generative = ("cvae",)  # Bayes classifiers argmax_y log p(x | y) + log p(y)
  config.likelihood = "logistic"  # the generative models' decoder on the RGB pixels
  # > 0: the generative models' posterior samples per class and image, else their config's
  config.class_samples = -1
  config.seeds = (0, 1, 2)  # the 95% intervals are over these
  config.data_dir = config_dict.placeholder(str)  # None: TFDS_DATA_DIR or ~/tensorflow_datasets
  config.num_epochs = -1.0  # > 0: every run this many epochs, else its config's
  config.total_steps = -1  # > 0: every run this many steps (a quick look), else its own
  return config
