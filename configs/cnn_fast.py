"""python launch.py --config=cnn_fast         # MNIST test accuracy 99.17% in 39 s (benchmarks/RESULTS.md)
python launch.py --config=cnn_fast:digits  # bundled 8x8 digits, offline: seconds

A CNN made for speed: >= 99.0% MNIST test accuracy (its gate) in <= 60 s from process
start on a 2-core CPU. A small batch-norm CNN (conv 16-32, max pooling, dense 128: ~5x
fewer FLOPs per example than the yardstick ``cnn``), one cycle of Adam (linear warm-up to
4e-3, then linear decay to zero) over 800 steps of 128 (1.9 epochs), and evaluation only
at the end. Each batch's gradient is taken in microbatches of 16 (``microbatch_size``):
on a CPU one microbatch's activations stay in cache, ~1.9x the examples/s of whole
batches (batch norm then normalizes over each microbatch). MNIST needs a TFDS data dir
with mnist prepared, TFDS_DATA_DIR=DIR. ARG: ``dataset=`` mnist (default), fashion_mnist,
cifar10 or digits (or just the name).
"""
import ml_collections

from configs import cnn, common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """``cnn``'s config (its ARG too), smaller, with batch norm, one-cycle Adam over 800 steps
  and gradients in microbatches of 16."""
  dataset = common.parse_arg(arg, dataset="mnist",
                             choices={"dataset": common.IMAGE_DATASETS}).dataset
  config = cnn.get_config(arg)
  config.gate = "test/accuracy>=0.99"
  config.total_steps = 800
  config.log_every_steps = 100
  config.eval_every_steps = 800
  config.checkpoint_every_steps = 800
  config.optimizer.learning_rate = 4e-3
  config.optimizer.warmup_steps = 120
  config.optimizer.schedule = "linear"
  config.microbatch_size = 16
  config.model.conv_features = (16, 32)
  config.model.dense_features = (128,)
  config.model.pool = "max"
  config.model.batch_norm = True
  common.select_dataset(config, dataset)  # again: its digits settings win over the above
  if dataset == "digits":  # 1,437 images
    config.total_steps = 200
    config.log_every_steps = 50
    config.eval_every_steps = 100
    config.checkpoint_every_steps = 100
  return config
