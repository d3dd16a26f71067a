"""How well a one-class model's anomaly score separates the normal classes (the classes it
trained on: the run's ``data.train_labels``, or its replica's ``replicas.train_labels``) from
every other class of a dataset (its test split, by default): ``auroc`` (ROC AUC, normal =
negative, higher score = anomalous; 0.5 is chance), one ``auroc_label_K`` for each other
class K alone, and the mean score of each class in ``WORKDIR/reports/PREFIX_scores.csv``."""
import csv
import os

import numpy as np

from research import errors
from research.evaluators import base
from research.tasks import one_class


def report(scores: np.ndarray, labels: np.ndarray, normal) -> dict[str, float]:
  from sklearn.metrics import roc_auc_score
  anomalous = ~np.isin(labels, np.asarray(tuple(normal)))
  if anomalous.all() or not anomalous.any():
    raise errors.ConfigError(f"anomaly_report: the data has {'no' if anomalous.all() else 'only'} "
                             f"rows of the normal classes {tuple(normal)}; evaluate on a split "
                             f"with both")
  out = {"auroc": float(roc_auc_score(anomalous, scores))}
  for k in sorted(set(labels[anomalous].tolist())):
    rows = ~anomalous | (labels == k)
    out[f"auroc_label_{k}"] = float(roc_auc_score(labels[rows] == k, scores[rows]))
  return out


class Evaluator(base.Evaluator):
  requires = frozenset({one_class.ANOMALY})

  def __init__(self, name, config, context):
    super().__init__(name, config, context)
    self.predict = base.predictions_fn(context, {"score": self.task.prediction("score")},
                                       keep=("label",))

  @classmethod
  def metric_names(cls, config, task_cls):
    return ("auroc",)

  def run(self, state, step, scope):
    out = base.gather(self.predict, state, self.batches, self.context.rng)
    normal = self.context.train_labels
    scalars = report(out["score"], out["label"], normal)
    directory = self.context.report_dir(scope)
    if directory is not None:
      with open(os.path.join(directory, f"{base.prefix(self.name, self.config)}_scores.csv"),
                "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["label", "normal", "rows", "mean_score"])
        for k in sorted(set(out["label"].tolist())):
          rows = out["label"] == k
          writer.writerow([k, k in normal, int(rows.sum()), float(out["score"][rows].mean())])
    return base.Output(scalars)
