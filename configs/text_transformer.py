"""python launch.py --config=text_transformer             # CLINC150 in-scope test accuracy 89.62% in 1,789 s
python launch.py --config=text_transformer:goemotions  # GoEmotions test micro F1 0.512, macro 0.323 in 1,864 s

(benchmarks/RESULTS.md; both times on a heavily shared CPU.)

Transformer text classifier trained from scratch: word embeddings (a 10,000-word
vocabulary from the training split), 2 blocks of width 128, the mean over the valid
tokens, dropout 0.1 on the pooled features, AdamW. CLINC150: its 150 in-scope intents,
24 tokens, 10 epochs, gate >= 85% test accuracy; GoEmotions: 28 labels, multi-label
(sigmoid cross-entropy, a label where p > 0.5), 40 tokens, 2 epochs, micro and macro F1.
Both need a TFDS data dir with clinc_oos (or goemotions) prepared, TFDS_DATA_DIR=DIR.
ARG: ``dataset=`` clinc_oos (default) or goemotions (or just the name).
"""
import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(arg, dataset="clinc_oos",
                         choices={"dataset": tuple(common.TEXT_DATASETS)})
  config = common.base_config()
  config.num_epochs = 10.0
  config.eval_every_steps = 500
  config.optimizer.name = "adamw"
  config.optimizer.weight_decay = 1e-2
  config.optimizer.warmup_steps = 200
  config.optimizer.grad_clip_norm = 1.0
  text = common.text_dataset(config, arg.dataset)
  multilabel = len(text["labels"]) > 1  # GoEmotions: several labels per text

  # multilabel: sigmoid cross-entropy per label (task.loss unused)
  config.task.name = "multilabel" if multilabel else "classification"
  config.task.loss = "softmax"
  config.task.l2 = 0.0
  config.task.inputs = ("tokens", "length")

  config.model.name = "text_transformer"  # research/models/text_transformer.py
  config.model.num_classes = text["num_classes"]
  config.model.hidden = 128
  config.model.depth = 2
  config.model.num_heads = 4
  config.model.mlp_dim = 256
  config.model.dropout = 0.0
  config.model.pooled_dropout = 0.1
  config.model.vocab_size = config.data.text.get_ref("vocab_size")

  config.evals.val = common.periodic_eval(config, "metrics")
  config.evals.test = common.final_eval("metrics")
  config.evals.report = common.final_eval(
      "multilabel_report" if multilabel else "classification_report")

  if arg.dataset == "clinc_oos":
    config.gate = "test/accuracy>=0.85"
  else:  # 43k longer texts
    config.num_epochs = 2.0
  return config
