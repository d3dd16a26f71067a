"""python launch.py --config=studies/label_efficiency --workdir=/tmp/labels_digits  # offline
python launch.py --config=studies/label_efficiency:mnist --config.data_dir=DIR --workdir=/tmp/le

Labels and families (research/studies/label_efficiency.py): test accuracy against labels per
class N for logreg, mlp and cnn on the labelled images alone, the CVAE's Bayes classifier on
the same images, M2 on them plus every other training image unlabelled, and M1+M2 (M2 on
the codes of an unsupervised M1 VAE of each draw) likewise; 3 label draws per N; the curves
(log x-axis), the table and where the curves cross. Not yet measured on MNIST
(benchmarks/RESULTS.md).

ARG: ``mnist`` (MNIST and Fashion-MNIST, N in 1, 3, 10, 30, 100, 600 and all; needs both
prepared in the TFDS data dir) or ``digits`` (the bundled 8x8 digits, N in 1, 3, 10, 30 and
all: minutes, offline).
"""
import ml_collections
from ml_collections import config_dict

from configs import common

DATASETS = {"mnist": ("mnist", "fashion_mnist"), "digits": ("digits",)}
LABELS = {"mnist": (1, 3, 10, 30, 100, 600, 0), "digits": (1, 3, 10, 30, 0)}  # 0: all


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.study_arg(arg, DATASETS)
  config = ml_collections.ConfigDict()
  config.study = "label_efficiency"  # research/studies/label_efficiency.py
  config.datasets = DATASETS[arg]
  config.labels = LABELS[arg]  # labels per class N; 0: every training label
  config.draws = (0, 1, 2)  # labelled subsets (and seeds): the 95% intervals are over these
  config.supervised = ("logreg", "mlp", "cnn")  # trained on the labelled images alone
  config.generative = ("cvae",)  # Bayes classifiers, on the same labelled images
  config.semi_supervised = ("m2",)  # the labelled images and the rest unlabelled
  # As semi_supervised, on the codes of an M1 run (vae:kingma_m1) of each dataset and draw.
  config.latent_semi_supervised = ("m1m2",)
  config.subset_steps = 1000  # steps of a supervised or generative run on N < all labels
  config.data_dir = config_dict.placeholder(str)  # None: TFDS_DATA_DIR or ~/tensorflow_datasets
  config.total_steps = -1  # > 0: every run this many steps (a quick look), else its own
  return config
