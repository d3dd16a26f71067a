"""python launch.py --config=rnn             # MNIST test accuracy 98.63% in 565 s (benchmarks/RESULTS.md)
python launch.py --config=rnn:clinc_oos   # CLINC150 in-scope test accuracy 83.60% in 1,140 s
python launch.py --config=rnn:goemotions  # GoEmotions, 28 labels, multi-label: not yet measured
python launch.py --config=rnn:digits      # bundled 8x8 digits (8 rows of 8 pixels), offline: seconds
python launch.py --config=rnn:synthetic_intents        # generated text, offline: test accuracy 67.00% in 57 s
python launch.py --config=rnn:synthetic_multi_intents  # offline, multi-label: micro F1 0.775 in 124 s

LSTM-128 (or GRU: ``--config.model.cell=gru``) classifier on row-sequential MNIST: each
image is a sequence of 28 rows of 28 pixels, 20 epochs; gate >= 98.5%. On a text dataset
it reads embedded words instead (a 10,000-word vocabulary from the training split), up to
each text's end, 10 epochs. MNIST needs a TFDS data dir with mnist prepared (the text
datasets: clinc_oos, goemotions), TFDS_DATA_DIR=DIR; digits and the generated text
datasets (research/data/synthetic_intents.py; learning rate 1e-2 there) need none (the
offline times: on the 2-core CPU shared with other runs). ARG: ``dataset=`` mnist
(default), fashion_mnist, cifar10, digits, clinc_oos, goemotions, synthetic_intents or
synthetic_multi_intents (or just the name).
"""
import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(arg, dataset="mnist", choices={
      "dataset": common.IMAGE_DATASETS + tuple(common.TEXT_DATASETS)})
  config = common.base_config()
  config.gate = "test/accuracy>=0.985"
  config.num_epochs = 20.0  # 10 epochs: 98.40%
  config.optimizer.grad_clip_norm = 1.0

  config.task.name = "classification"
  config.task.loss = "softmax"
  config.task.l2 = 0.0

  config.model.name = "rnn"  # research/models/rnn.py
  config.model.num_classes = 10
  config.model.cell = "lstm"
  config.model.hidden = 128
  config.model.num_layers = 1

  config.evals.val = common.periodic_eval(config, "metrics")
  config.evals.test = common.final_eval("metrics")
  config.evals.report = common.final_eval("classification_report")

  if arg.dataset in common.TEXT_DATASETS:
    text = common.text_dataset(config, arg.dataset)
    config.task.inputs = ("tokens", "length")
    if len(text["labels"]) > 1:  # GoEmotions: several labels per text
      config.task.name = "multilabel"  # sigmoid cross-entropy per label (task.loss unused)
      config.evals.report = common.final_eval("multilabel_report")
    config.model.num_classes = text["num_classes"]
    config.model.vocab_size = config.data.text.get_ref("vocab_size")
    config.model.embed_dim = 128
    config.num_epochs = 10.0
    config.gate = ""
    if text.get("bundled"):  # generated, offline: 230 (multi-label 310) steps
      # At 1e-3 the LSTM is slow on them: 50% test accuracy, and multi-label no label above
      # p=0.5 at all; 1e-2 learns both.
      config.optimizer.learning_rate = 1e-2
  else:
    common.select_dataset(config, arg.dataset)
  return config
