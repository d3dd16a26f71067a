"""python launch.py --config=studies/search:logreg,digits --workdir=/tmp/search  # 8 trials, 3 folds: CV 95.98% +- 1.45, test 96.11%, 212 s
python launch.py --config=studies/search:mlp,penguins --workdir=/tmp/search_penguins  # CV 100%, test 98.55%, 176 s

Measured on the shared 2-core CPU: the best trial's mean val accuracy over its 3 folds
(+- its 95% interval), then the test accuracy of its retrain on the whole training split.

Hyperparameter search with cross-validation (research/studies/search.py): Optuna (TPE,
median pruning) over ``search.space``, each trial the mean ``search.metric`` over
``search.num_folds`` stratified folds of the training split; then the best config retrained
on the whole training split and tested once; the gate decides the exit status. ARG:
``base=`` a classifier config (default logreg; or just its name) and ``dataset=`` its ARG
(default digits). The study is ``sqlite:///STUDY_DIR/search.db`` unless ``search.storage``
names another database: processes (or hosts sharing STUDY_DIR) that run the same command
on it share the trial budget. Outputs: STUDY_DIR/trials.csv, history.png, importance.png,
best_config.py (``python launch.py --config=STUDY_DIR/best_config.py``), search.md.
"""
import ml_collections
from ml_collections import config_dict

from configs import common

BASES = ("logreg", "svm", "kernel_svm", "mlp", "cnn", "cnn_fast", "cnn_strong", "resnet", "rnn",
         "vit")

# Each base's default space: fields of its config and their distributions
# (loguniform/uniform(LOW, HIGH), int(LOW, HIGH[, log][, step=S]), categorical(V1, ...)).
COMMON_SPACE = {"optimizer.learning_rate": "loguniform(1e-4, 1e-1)"}
SPACES = {
    "logreg": {"task.l2": "loguniform(1e-6, 1e-2)", "batch_size": "categorical(32, 64, 128)"},
    "svm": {"task.l2": "loguniform(1e-6, 1e-2)"},
    "kernel_svm": {"task.l2": "loguniform(1e-6, 1e-2)"},
    "mlp": {"model.hidden": "categorical((128,), (256, 256), (512, 512))",
            "model.dropout": "uniform(0.0, 0.5)"},
}


def datasets() -> tuple[str, ...]:
  """The ARGs a base config may take here (image datasets, text datasets, tabular if any)."""
  return (tuple(common.IMAGE_DATASETS) + tuple(common.TEXT_DATASETS)
          + tuple(getattr(common, "TABULAR_DATASETS", ())))


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(arg, base="logreg", dataset="digits",
                         choices={"base": BASES, "dataset": datasets()})
  config = ml_collections.ConfigDict()
  config.study = "search"  # research/studies/search.py
  config.base = arg.base  # configs/BASE.py, the config searched
  config.dataset = arg.dataset  # the base config's ARG
  config.data_dir = config_dict.placeholder(str)  # None: TFDS_DATA_DIR or ~/tensorflow_datasets
  config.total_steps = -1  # > 0: every run this many steps (a quick look), else the base's
  config.gate = config_dict.placeholder(str)  # the final run's gate; None: the base config's

  config.search = ml_collections.ConfigDict()
  # Fields of the base config and their distributions; "" leaves a field out.
  config.search.space = ml_collections.ConfigDict(_nested({**COMMON_SPACE,
                                                           **SPACES.get(arg.base, {})}))
  config.search.metric = "val/accuracy"  # each fold run's, on its val fold; the objective: the mean
  config.search.direction = "maximize"  # or minimize
  config.search.num_trials = 8  # finished (complete or pruned) trials, over all processes
  config.search.num_folds = 3  # stratified folds of the training split per trial
  config.search.fold_seed = 0  # shuffles the training split before it is cut into folds
  config.search.seed = 0  # the sampler's
  config.search.sampler = "tpe"  # or random
  config.search.startup_trials = 3  # random trials before TPE; trials before pruning starts
  config.search.pruner = "median"  # prunes after a fold below the median of the others; or none
  config.search.storage = ""  # an Optuna database URL; "": sqlite:///STUDY_DIR/search.db
  config.search.study_name = "search"  # the study's name in the storage
  config.search.heartbeat_s = 10  # a running trial's heartbeat interval
  config.search.grace_s = 60  # a running trial without heartbeat this long is retried
  config.search.max_retries = 3  # times a trial whose process died is queued again
  return config


def _nested(flat: dict) -> dict:
  out = {}
  for field, text in flat.items():
    node = out
    *path, name = field.split(".")
    for part in path:
      node = node.setdefault(part, {})
    node[name] = text
  return out
