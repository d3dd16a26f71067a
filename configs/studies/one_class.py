"""python launch.py --config=studies/one_class --workdir=/tmp/one_class_digits  # offline
python launch.py --config=studies/one_class:mnist --config.data_dir=DIR --workdir=/tmp/oc

One-class anomaly detection (research/studies/one_class.py), Ruff et al. (2018)'s
protocol: per dataset, class c and seed, each family trains on class c's training images
alone and scores the whole test split (c normal, the other nine anomalous): the
autoencoder's reconstruction error, Deep SVDD warm-started from it, GEOM's transformation
classifier, and an OC-SVM on PCA features of the pixels. Outputs in STUDY_DIR:
one_class.md / .csv (mean AUROC over classes with its 95% interval over seeds, worst class,
anchors), per_class.md / .csv and one_class_D.png. Figures: benchmarks/RESULTS.md.

ARG: ``mnist`` (MNIST and Fashion-MNIST, prepared in the TFDS data dir) or ``digits``
(the bundled 8x8 digits: minutes, offline).

``class_replicas=True``: the autoencoder and GEOM train the classes of a dataset and seed
as one run of vmapped replicas (replica i: class ``classes[i]``, its own training images
and normal class) instead of a run per class; same tables. Deep SVDD keeps a run per class
(its warm start and its data-fixed centre are a single run's), starting from its class's
replica of the autoencoder run. Replicas share one step count, and on MNIST the families
train 10 epochs of each class's own size, so there ``total_steps`` must be set (for both
modes, to compare them). Off by default: on the loaded 2-core CPU it saves start-ups and
compilations (digits: 1.2-1.4x faster) but a step of ten replicas costs more than ten single
steps there, so MNIST runs slower (benchmarks/RESULTS.md); measure before using it elsewhere.
"""
import ml_collections
from ml_collections import config_dict

from configs import common

DATASETS = {"mnist": ("mnist", "fashion_mnist"), "digits": ("digits",)}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.study_arg(arg, DATASETS)
  config = ml_collections.ConfigDict()
  config.study = "one_class"  # research/studies/one_class.py
  config.datasets = DATASETS[arg]
  config.classes = tuple(range(10))  # each in turn the normal class
  config.seeds = (0, 1, 2)  # the 95% intervals are over these
  # Configs trained per class and seed: configs/<family>.py with ARG dataset=D,normal=c.
  config.families = ("autoencoder", "deep_svdd", "transformations")
  config.pretrain = True  # deep_svdd starts from the autoencoder run of its class and seed
  config.ocsvm = True  # also scikit-learn's OneClassSVM per class (no seeds: deterministic)
  config.ocsvm_fields = ml_collections.ConfigDict(dict(components=50, nu=0.1, gamma="scale"))
  config.data_dir = config_dict.placeholder(str)  # None: TFDS_DATA_DIR or ~/tensorflow_datasets
  config.total_steps = -1  # > 0: every run this many steps (a quick look), else its own
  # True: a family's classes (of a dataset and seed) as one run of vmapped replicas
  # (research/studies/one_class.py); False: a run per class.
  config.class_replicas = False
  return config
