"""Every image classifier config on one dataset: test accuracy, ECE and wall time.

    python launch.py --config=studies/classifier_zoo --workdir=/tmp/zoo   # digits, offline
    python launch.py --config=studies/classifier_zoo:mnist --config.data_dir=DIR

Rerunning reuses every finished run (seconds) and resumes unfinished ones. The table is
STUDY_DIR/zoo.md (and .csv), every run's results STUDY_DIR/runs.md; see
benchmarks/RESULTS.md for the measured figures.
"""
import ml_collections
from ml_collections import config_dict

CLASSIFIERS = ("logreg", "svm", "kernel_svm", "mlp", "cnn", "cnn_fast", "cnn_strong", "resnet",
               "rnn", "vit")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.study = "classifier_zoo"  # research/studies/classifier_zoo.py
  config.dataset = arg or "digits"  # the ARG every config gets
  config.configs = CLASSIFIERS
  config.seeds = (0, 1, 2)  # the 95% intervals are over these
  config.data_dir = config_dict.placeholder(str)  # None: TFDS_DATA_DIR or ~/tensorflow_datasets
  config.total_steps = -1  # > 0: every run this many steps (a quick look), else its own
  return config
