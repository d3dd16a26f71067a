"""The task's own metrics (``task.metrics`` over ``loss_fn``'s outputs), averaged over a
whole dataset: e.g. ``val/loss``, ``val/accuracy``, ``test/neg_elbo``."""
from research.core import step as step_lib
from research.evaluators import base


class Evaluator(base.Evaluator):

  def __init__(self, name, config, context):
    super().__init__(name, config, context)
    self.eval_step = context.jit(step_lib.make_eval_step(self.task, context.preprocess))

  @classmethod
  def metric_names(cls, config, task_cls):
    return tuple(task_cls.metrics)

  def run(self, state, step, scope):
    return base.Output(base.mean_metrics(self.eval_step, state, self.batches, self.context.rng))
