"""A classifier's accuracy on a split, optionally on a shifted copy of it and per group:

    shift         preprocessing ops (research/data/preprocess.py) applied to the raw
                  batches before the run's own, e.g. "corrupt('fog')" (an MNIST-C
                  corruption of the split's images); "": the split as it is
    aligned_with  a feature of the data, e.g. background_shift's ``background``: examples
                  whose feature equals their label are bias-aligned, the others
                  bias-conflicting, and each group's accuracy is reported beside the
                  split's; "": no groups

Scalars: ``accuracy``, ``error`` (1 - accuracy) and ``examples``; with ``aligned_with`` also
``aligned_accuracy``, ``conflicting_accuracy``, ``aligned_examples`` and
``conflicting_examples`` (a group without examples has accuracy nan). The prediction is the
argmax of the task's ``probs``.
"""
import numpy as np

from research import errors
from research.data import preprocess as preprocess_lib
from research.evaluators import base
from research.tasks import base as tasks_base

GROUP_SCALARS = ("aligned_accuracy", "conflicting_accuracy", "aligned_examples",
                 "conflicting_examples")


def accuracy(correct: np.ndarray) -> float:
  return float(np.mean(correct)) if len(correct) else float("nan")


def group_accuracies(predicted: np.ndarray, labels: np.ndarray,
                     aligned_feature: np.ndarray | None = None) -> dict[str, float]:
  """Accuracy, error and examples of ``predicted`` class ids against ``labels``; with
  ``aligned_feature`` (one value per example) also those of the aligned examples
  (feature == label) and of the conflicting ones (feature != label)."""
  correct = np.asarray(predicted) == np.asarray(labels)
  out = {"accuracy": accuracy(correct), "error": 1.0 - accuracy(correct),
         "examples": float(len(correct))}
  if aligned_feature is not None:
    aligned = np.asarray(aligned_feature) == np.asarray(labels)
    out.update(aligned_accuracy=accuracy(correct[aligned]),
               conflicting_accuracy=accuracy(correct[~aligned]),
               aligned_examples=float(aligned.sum()), conflicting_examples=float((~aligned).sum()))
  return out


class Evaluator(base.Evaluator):
  requires = frozenset({tasks_base.CLASSIFIER})
  fields = {"shift": "", "aligned_with": ""}

  def __init__(self, name, config, context):
    super().__init__(name, config, context)
    self.aligned_with = self.option("aligned_with")
    errors.require(not self.aligned_with or self.aligned_with in self.batches[0],
                   f"evals.{name}.aligned_with", self.aligned_with,
                   f"a feature of the evaluated data, one of {sorted(self.batches[0])}")
    shifted = base.shifted(context, preprocess_lib.parse(self.option("shift")))
    self.predict = base.predictions_fn(shifted, {"probs": self.task.prediction("probs")},
                                       keep=("label",) + ((self.aligned_with,)
                                                          if self.aligned_with else ()))

  @classmethod
  def metric_names(cls, config, task_cls):
    return ("accuracy", "error", "examples") + (
        GROUP_SCALARS if config.get("aligned_with", "") else ())

  @classmethod
  def validate(cls, name, config, task_cls):
    super().validate(name, config, task_cls)
    preprocess_lib.parse(config.get("shift", ""))  # unknown ops fail before training

  def run(self, state, step, scope):
    out = base.gather(self.predict, state, self.batches, self.context.rng, self.name)
    feature = out[self.aligned_with] if self.aligned_with else None
    return base.Output(group_accuracies(out["probs"].argmax(-1), out["label"], feature))
