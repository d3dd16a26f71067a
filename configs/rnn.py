"""LSTM (or GRU: ``--config.model.cell=gru``) classifier on row-sequential MNIST:
each image is a sequence of 28 rows of 28 pixels. Target: >= 98.5% test accuracy.
On a text dataset it reads embedded words instead, up to each text's end.

    python launch.py --config=rnn            # MNIST (TFDS_DATA_DIR=../shared/tfds)
    python launch.py --config=rnn:digits     # bundled, offline (8 rows of 8 pixels)
    python launch.py --config=rnn:clinc_oos  # text: word ids (also rnn:goemotions)
"""
import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = common.base_config()
  config.gate = "test/accuracy>=0.985"
  config.num_epochs = 20.0  # 10 epochs: 98.40%
  config.optimizer.grad_clip_norm = 1.0
  common.classification(config, "rnn", cell="lstm", hidden=128, num_layers=1)
  if arg in common.TEXT_DATASETS:
    common.text_dataset(config, arg)
    config.model.embed_dim = 128
    config.num_epochs = 10.0
  else:
    common.select_dataset(config, arg)
  return config
