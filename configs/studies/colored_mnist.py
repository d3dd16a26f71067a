"""python launch.py --config=studies/colored_mnist --workdir=/tmp/colored_mnist
    # needs a TFDS data dir with mnist prepared, TFDS_DATA_DIR=DIR; results: see README

Colored MNIST's context shift with model selection on the training environments only
(research/studies/colored_mnist.py): the reference ERM MLP, IRMv1 (reads the environment
labels) over a grid of penalty weights, the grey-scale oracle, the CVAE's Bayes classifier
and M2 with 250 labels per class (configs/colored_mnist.py); 5 seeds for the MLPs, 2 for
the VAEs; the selected setting per model by validation accuracy on held-out images of the
training environments; test accuracy on e = 0.9, 0.8 and 0.7 with 95% intervals over seeds.

ARG: ``mnist`` (the only one, the default).
"""
import ml_collections
from ml_collections import config_dict

from configs import common

MODELS = {"mnist": ("erm", "irm", "grey", "cvae", "m2")}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.study_arg(arg or "mnist", MODELS)
  config = ml_collections.ConfigDict()
  config.study = "colored_mnist"  # research/studies/colored_mnist.py
  config.models = MODELS[arg]  # configs/colored_mnist.py's ARG
  config.environment_labels = ("irm",)  # the models that read them
  config.seeds = (0, 1, 2, 3, 4)  # erm, irm, grey: the 95% intervals are over these
  config.vae_seeds = (0, 1)  # cvae, m2
  config.grids = ml_collections.ConfigDict()
  # IRMv1's penalty weight (from step 190), the reference's tuned 91257.19 among them.
  config.grids.irm = ("task.penalty_weight", (100.0, 1000.0, 10000.0, 91257.18613115903))
  config.m2_labels = 250  # per class; the other training images unlabelled
  config.target = 0.70  # the e = 0.9 accuracy target
  config.batch_size = 0  # > 0: caps every run's batch (tiny data), else the configs' own
  config.eval_batch_size = 0  # > 0: caps every run's evaluation batch, likewise
  config.data_dir = config_dict.placeholder(str)  # None: TFDS_DATA_DIR or ~/tensorflow_datasets
  config.total_steps = -1  # > 0: every run this many steps (a quick look), else its own
  return config
