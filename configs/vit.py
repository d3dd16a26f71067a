"""python launch.py --config=vit         # MNIST test accuracy 98.94% in 4,548 s (beside other runs)
python launch.py --config=vit:digits  # bundled 8x8 digits (2x2 patches), offline: seconds

(benchmarks/RESULTS.md has the run.)

Vision Transformer, 4x4 patches (49 tokens on MNIST), 4 blocks of width 64, AdamW, 20
epochs, aiming at >= 98.5% MNIST test accuracy (its gate). MNIST needs a TFDS data dir
with mnist prepared, TFDS_DATA_DIR=DIR. ARG: ``dataset=`` mnist (default),
fashion_mnist, cifar10 or digits (or just the name).
"""
import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(arg, dataset="mnist", choices={"dataset": common.IMAGE_DATASETS})
  config = common.base_config()
  config.gate = "test/accuracy>=0.985"
  config.num_epochs = 20.0
  config.data.augment = "random_shift(2)"
  config.optimizer.name = "adamw"
  config.optimizer.weight_decay = 1e-4
  config.optimizer.warmup_steps = 500
  config.optimizer.grad_clip_norm = 1.0

  config.task.name = "classification"
  config.task.loss = "softmax"
  config.task.l2 = 0.0

  config.model.name = "vit"  # research/models/vit.py
  config.model.num_classes = 10
  config.model.patch_size = 4
  config.model.hidden = 64
  config.model.depth = 4
  config.model.num_heads = 4
  config.model.mlp_dim = 256
  config.model.dropout = 0.0

  config.evals.val = common.periodic_eval(config, "metrics")
  config.evals.test = common.final_eval("metrics")
  config.evals.report = common.final_eval("classification_report")

  common.select_dataset(config, arg.dataset)
  if arg.dataset == "digits":
    config.model.patch_size = 2
    config.data.augment = "random_shift(1)"
    config.optimizer.warmup_steps = 30
  return config
