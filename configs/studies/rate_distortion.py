"""python launch.py --config=studies/rate_distortion --workdir=/tmp/rd_digits   # offline
python launch.py --config=studies/rate_distortion:mnist --config.data_dir=DIR --workdir=/tmp/rd

Rate against distortion over a sweep of the KL weight beta (research/studies/rate_distortion.py):
the MLP VAE (configs/vae.py) per beta and seed, test rate (KL) and distortion (reconstruction
NLL) in nats with 95% intervals over seeds, and the plot with the ELBO's iso-lines. Not yet
measured on MNIST (benchmarks/RESULTS.md).

ARG: ``mnist`` (binarized MNIST, 20 epochs per run) or ``digits`` (bundled, offline).
"""
import ml_collections
from ml_collections import config_dict

from configs import common

DATASETS = {"mnist": ("mnist",), "digits": ("digits",)}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.study_arg(arg, DATASETS)
  config = ml_collections.ConfigDict()
  config.study = "rate_distortion"  # research/studies/rate_distortion.py
  config.datasets = DATASETS[arg]
  config.model_config = "vae"  # a VAE config whose task.beta the sweep sets
  config.betas = (0.1, 0.3, 1.0, 3.0, 10.0)
  config.seeds = (0, 1, 2)  # the 95% intervals are over these
  config.num_epochs = 20 if arg == "mnist" else -1  # > 0: every run's epochs, else its config's
  config.data_dir = config_dict.placeholder(str)  # None: TFDS_DATA_DIR or ~/tensorflow_datasets
  config.total_steps = -1  # > 0: every run this many steps (a quick look), else its own
  return config
