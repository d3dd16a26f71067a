"""A latent-variable model's negative log-likelihood by importance sampling, averaged over a
dataset (the task's ``nll``): ``nll`` in nats, ``nll_bits_per_dim`` and ``nll_samples``.

    num_samples  k, importance samples per example (0: skip the estimate)
    chunk        samples drawn at a time (bounds memory; a divisor of num_samples)
"""
from research import errors
from research.evaluators import base
from research.tasks import base as tasks_base, likelihoods


class Evaluator(base.Evaluator):
  requires = frozenset({tasks_base.LATENT})
  fields = {"num_samples": 5000, "chunk": 10}

  def __init__(self, name, config, context):
    super().__init__(name, config, context)
    k, chunk = self.option("num_samples"), self.option("chunk")
    nll = self.task.prediction("nll")
    self.predict = base.predictions_fn(context, {"nll": lambda *args: nll(*args, k, chunk)})

  @classmethod
  def validate(cls, name, config, task_cls):
    super().validate(name, config, task_cls)
    k, chunk = config.get("num_samples", 5000), config.get("chunk", 10)
    errors.require(isinstance(chunk, int) and chunk >= 1, f"evals.{name}.chunk", chunk,
                   "a positive integer")
    errors.require(isinstance(k, int) and k >= 0 and k % chunk == 0, f"evals.{name}.num_samples",
                   k, f"0 (skip the NLL) or a multiple of evals.{name}.chunk={chunk}")

  @classmethod
  def metric_names(cls, config, task_cls):
    return ("nll", "nll_bits_per_dim", "nll_samples") if config.get("num_samples", 5000) else ()

  def run(self, state, step, scope):
    k = self.option("num_samples")
    if not k:
      return base.Output()
    out = base.gather(self.predict, state, self.batches, self.context.rng,
                      name=f"{self.name} (k={k})")
    nll = float(out["nll"].mean())
    image_shape = self.task.config.model.image_shape
    return base.Output({"nll": nll, "nll_samples": float(k),
                        "nll_bits_per_dim": float(likelihoods.bits_per_dim(nll, image_shape))})
