"""A classifier over a whole dataset: macro precision, recall and F1, the expected
calibration error, and in ``WORKDIR/reports``: ``PREFIX_confusion.png``,
``PREFIX_reliability.png`` (each titled with the run, the prefix and the step; the
reliability diagram with the examples in each confidence bin) and ``PREFIX_per_class.csv``
(research/evaluation/classification.py). With ``accuracy=True`` it also reports the
accuracy, for tasks whose metrics do not (a generative classifier's are its ELBO's). The
probabilities are the task's ``probs``: for
hinge losses (an SVM) softmaxed margins, not calibrated probabilities, so their ECE
measures those margins and the reliability diagram says so in its title."""
import numpy as np

from research.evaluation import classification, images
from research.evaluators import base
from research.tasks import base as tasks_base


def probs_note(task) -> str:
  """What the calibration figures should say about the task's ``probs``: HINGE_NOTE for a
  hinge loss (``task.loss`` hinge or squared_hinge), else nothing."""
  return classification.HINGE_NOTE if "hinge" in str(task.config.task.get("loss", "")) else ""


class Evaluator(base.Evaluator):
  requires = frozenset({tasks_base.CLASSIFIER})
  fields = {"accuracy": False}

  def __init__(self, name, config, context):
    super().__init__(name, config, context)
    self.predict = base.predictions_fn(context, {"probs": self.task.prediction("probs")},
                                       keep=("label",))

  @classmethod
  def metric_names(cls, config, task_cls):
    return ("ece", "precision_macro", "recall_macro", "f1_macro") + (
        ("accuracy",) if config.get("accuracy", False) else ())

  def title(self, step: int, scope: str) -> str:
    """``RUN[/replica_I] · PREFIX · step STEP``, RUN the workdir's name."""
    return images.run_title(self.context.workdir, base.prefix(self.name, self.config), step,
                            scope)

  def run(self, state, step, scope):
    out = base.gather(self.predict, state, self.batches, self.context.rng)
    scalars = classification.report(
        out["probs"], out["label"], self.context.report_dir(scope),
        base.prefix(self.name, self.config), title=self.title(step, scope),
        note=probs_note(self.task))
    if self.option("accuracy"):
      scalars["accuracy"] = float(np.mean(out["probs"].argmax(-1) == out["label"]))
    return base.Output(scalars)
