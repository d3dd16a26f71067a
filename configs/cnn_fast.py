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

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(arg, dataset="mnist", choices={"dataset": common.IMAGE_DATASETS})
  config = common.base_config()
  config.gate = "test/accuracy>=0.99"
  config.total_steps = 800
  config.log_every_steps = 100
  config.eval_every_steps = 800
  config.checkpoint_every_steps = 800
  config.optimizer.learning_rate = 4e-3
  config.optimizer.warmup_steps = 120
  config.optimizer.schedule = "linear"
  config.microbatch_size = 16

  config.task.name = "classification"
  config.task.loss = "softmax"
  config.task.l2 = 0.0

  config.model.name = "cnn"  # research/models/cnn.py
  config.model.num_classes = 10
  config.model.conv_impl = common.CONV_IMPL
  config.model.conv_features = (16, 32)
  config.model.dense_features = (128,)
  config.model.pool = "max"
  config.model.dropout = 0.0
  config.model.batch_norm = True

  config.evals.val = common.periodic_eval(config, "metrics")
  config.evals.test = common.final_eval("metrics")
  config.evals.report = common.final_eval("classification_report")

  common.select_dataset(config, arg.dataset)
  if arg.dataset == "digits":  # 1,437 images
    config.total_steps = 200
    config.log_every_steps = 50
    config.eval_every_steps = 100
    config.checkpoint_every_steps = 100
  return config
