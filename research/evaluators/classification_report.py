"""A classifier over a whole dataset: macro precision, recall and F1, the expected
calibration error, and in ``WORKDIR/reports``: ``PREFIX_confusion.png``,
``PREFIX_reliability.png`` and ``PREFIX_per_class.csv`` (research/evaluation/classification.py).
The probabilities are the task's ``probs`` (for hinge losses, softmaxed margins)."""
from research.evaluation import classification
from research.evaluators import base
from research.tasks import base as tasks_base


class Evaluator(base.Evaluator):
  requires = frozenset({tasks_base.CLASSIFIER})

  def __init__(self, name, config, context):
    super().__init__(name, config, context)
    self.predict = base.predictions_fn(context, {"probs": self.task.prediction("probs")},
                                       keep=("label",))

  @classmethod
  def metric_names(cls, config, task_cls):
    return ("ece", "precision_macro", "recall_macro", "f1_macro")

  def run(self, state, step, scope):
    out = base.gather(self.predict, state, self.batches, self.context.rng)
    return base.Output(classification.report(out["probs"], out["label"],
                                             self.context.report_dir(scope),
                                             base.prefix(self.name, self.config)))
