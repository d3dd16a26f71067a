"""Transformer text classifier trained from scratch (word vocabulary from the training
split, 2 blocks of width 128, mean-pooled).

    python launch.py --config=text_transformer              # CLINC150 intents (150 classes)
    python launch.py --config=text_transformer:goemotions   # GoEmotions, 28 labels, multi-label

(TFDS_DATA_DIR=../shared/tfds holds both.) On CLINC150 it aims at >= 85% in-scope test
accuracy; GoEmotions reports micro and macro F1.
"""
import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  name = arg or "clinc_oos"
  if name not in common.TEXT_DATASETS:
    raise ValueError(f"unknown config argument {arg!r}; known: {', '.join(common.TEXT_DATASETS)}")
  config = common.base_config()
  config.num_epochs = 10.0
  config.eval_every_steps = 500
  config.optimizer.name = "adamw"
  config.optimizer.weight_decay = 1e-2
  config.optimizer.warmup_steps = 200
  config.optimizer.grad_clip_norm = 1.0
  common.classification(config, "text_transformer", hidden=128, depth=2, num_heads=4,
                        mlp_dim=256, dropout=0.0, pooled_dropout=0.1)
  common.text_dataset(config, name)
  if name == "clinc_oos":
    config.gate = "test/accuracy>=0.85"
  else:  # 43k longer texts
    config.num_epochs = 2.0
  return config
