"""A latent-variable model's posterior over a dataset: active units (Cov_x(E_q[z]) above
0.01) and the largest per-dimension KL; ``PREFIX_latents.csv`` (and for 2-D latents a
scatter of the posterior means by label) in ``WORKDIR/reports``."""
from research.evaluation import generative
from research.evaluators import base
from research.tasks import base as tasks_base, vae


class Evaluator(base.Evaluator):
  requires = frozenset({tasks_base.LATENT})

  def __init__(self, name, config, context):
    super().__init__(name, config, context)
    self.predict = base.predictions_fn(context, {"posterior": self.task.prediction("encode")},
                                       keep=("label",))

  @classmethod
  def metric_names(cls, config, task_cls):
    return ("active_units", "kl_max_dim")

  def run(self, state, step, scope):
    out = base.gather(self.predict, state, self.batches, self.context.rng)
    mean, log_var = out["posterior"]
    return base.Output(generative.latent_report(
        mean, vae.gaussian_kl(mean, log_var), out.get("label"), self.context.report_dir(scope),
        base.prefix(self.name, self.config)))
