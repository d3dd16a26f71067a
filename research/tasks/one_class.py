"""One-class learning: a density model fitted to the normal data alone (the run's train
split, e.g. one class kept by ``data.train_labels``), whose negative log-likelihood is
the anomaly score of any example.

The model (``gaussian``: research/models/gaussian.py) maps a batch to per-example NLL in
nats; the loss is its mean. Prediction ``score``: that NLL (higher: more anomalous), read
by the ``anomaly_report`` evaluator (ROC AUC of normal vs other classes).
"""
from clu import metrics

from research import errors
from research.tasks import base

ANOMALY = "anomaly"  # capability: ``score(params, model_state, batch, rng)`` per example


class Task(base.BaseTask):
  metrics = {"loss": metrics.Average.from_output("loss")}
  capabilities = frozenset({ANOMALY})
  predictions = ("score",)

  @classmethod
  def validate_config(cls, config):
    labels = tuple(config.data.get("train_labels") or ())
    errors.require(len(labels) > 0 and all(isinstance(k, int) and k >= 0 for k in labels),
                   "data.train_labels", labels,
                   "the normal classes the one-class model trains on, e.g. (0,)")
    errors.require("label" in config.data.features, "data.features",
                   tuple(config.data.features), "a list with label (the normal classes)")

  def apply(self, params, model_state, batch, rng, train):
    return base.apply_model(self.model, params, model_state, *self.model_inputs(batch), rng=rng,
                            train=train, matmul_precision=self.matmul_precision)

  def loss_fn(self, params, model_state, batch, rng, train):
    nll, model_state = self.apply(params, model_state, batch, rng, train)
    return nll.mean(), ({"loss": nll}, model_state)

  def score(self, params, model_state, batch, rng):
    return self.apply(params, model_state, batch, rng, False)[0]
