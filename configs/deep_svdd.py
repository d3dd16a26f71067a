"""python launch.py --config=deep_svdd:normal=0 --workdir=/tmp/svdd0 \\
    --config.init_from.workdir=/tmp/ae0   # the autoencoder of configs/autoencoder.py first
python launch.py --config=deep_svdd:digits,normal=3 --workdir=/tmp/svdd_digits  # offline

One-class Deep SVDD (Ruff et al. 2018; research/models/deep_svdd.py): the autoencoder's
bias-free encoder, warm-started from a run of ``autoencoder`` on the same normal class
(``init_from``: its ``encoder`` is copied before step 0; with no workdir it starts from
random weights, which the paper finds worse), maps the normal images close to a centre
fixed from their mean embedding; the squared distance scores the test split
(``test/auroc``). Adam with Ruff et al.'s weight decay. Figures: the one-class
study (configs/studies/one_class.py, benchmarks/RESULTS.md). ARG: as ``autoencoder``.
"""
import ml_collections

from configs import autoencoder


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = autoencoder.get_config(arg)
  config.model.name = "deep_svdd"
  config.model.centre_eps = 0.1
  config.init_from = ml_collections.ConfigDict()
  config.init_from.workdir = ""  # a run of configs/autoencoder.py with the same model fields
  config.init_from.modules = ("encoder",)
  # Ruff et al.: 1e-4 for 150 epochs; 5x that for the 10 epochs here, so the encoder
  # moves about as far.
  config.optimizer.learning_rate = 5e-4
  return config
