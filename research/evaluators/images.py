"""The task's image summaries (e.g. a VAE's reconstructions, samples, interpolations,
traversals) on the first batch of the data, as grids of 8 images a row: written to
TensorBoard and ``WORKDIR/images/NAME_STEP.png``."""
import numpy as np

from research.core import step as step_lib

from research.evaluation import images as images_lib
from research.evaluators import base
from research.tasks import base as tasks_base

COLUMNS = 8


class Evaluator(base.Evaluator):
  requires = frozenset({tasks_base.IMAGES})

  def __init__(self, name, config, context):
    super().__init__(name, config, context)
    rng = context.rng

    def images(state, batch, _):
      batch, _ = step_lib.split_mask(batch)
      return self.task.images(state.params, state.model_state, context.preprocess(batch, rng), rng)

    self.images = context.jit(images)

  def run(self, state, step, scope):
    summaries = self.images(state, self.batches[0], self.context.rng)
    return base.Output(images={k: images_lib.make_grid(np.asarray(v), columns=COLUMNS)
                               for k, v in summaries.items()})
