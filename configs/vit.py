"""Vision Transformer on MNIST (4x4 patches: 49 tokens), aiming at >= 98.5% test accuracy.

    python launch.py --config=vit            # MNIST (TFDS_DATA_DIR=../shared/tfds)
    python launch.py --config=vit:digits     # bundled, offline (2x2 patches)
"""
import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = common.base_config()
  config.gate = "test/accuracy>=0.985"
  config.num_epochs = 20.0
  config.data.augment = "random_shift(2)"
  config.optimizer.name = "adamw"
  config.optimizer.weight_decay = 1e-4
  config.optimizer.warmup_steps = 500
  config.optimizer.grad_clip_norm = 1.0
  common.classification(config, "vit", patch_size=4, hidden=64, depth=4, num_heads=4,
                        mlp_dim=256, dropout=0.0)
  common.select_dataset(config, arg)
  if config.data.name == "digits":
    config.model.patch_size = 2
    config.data.augment = "random_shift(1)"
    config.optimizer.warmup_steps = 30
  return config
