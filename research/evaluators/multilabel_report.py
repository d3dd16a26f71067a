"""A multi-label classifier over a whole dataset (labels predicted where the probability
exceeds ``threshold``): micro and macro precision, recall and F1, the exact-match ratio,
and ``PREFIX_per_label.csv`` in ``WORKDIR/reports``."""
from research.evaluation import classification
from research.evaluators import base, classification_report
from research.tasks import base as tasks_base


class Evaluator(classification_report.Evaluator):
  """The classification report's predictions (``probs`` and labels), scored per label."""
  requires = frozenset({tasks_base.MULTILABEL})
  fields = {"threshold": 0.5}

  @classmethod
  def metric_names(cls, config, task_cls):
    return tuple(f"{score}_{average}" for average in ("micro", "macro")
                 for score in ("precision", "recall", "f1")) + ("exact_match",)

  def run(self, state, step, scope):
    out = base.gather(self.predict, state, self.batches, self.context.rng)
    return base.Output(classification.multilabel_report(
        out["probs"], out["label"], self.context.report_dir(scope),
        base.prefix(self.name, self.config), self.option("threshold")))
