"""The task's image summaries (e.g. a VAE's reconstructions, samples, interpolations,
traversals) on the first batch of the data, as grids of 8 images a row: written to
TensorBoard (the plain grid) and ``WORKDIR/images/NAME_STEP.png`` (upscaled, with the
labels of the task's ``image_layouts()``: the IMAGES capability's
``{name: research.evaluation.images.Layout}``, and a title naming the run and step)."""
import dataclasses

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
    self.layouts = self.task.image_layouts()

  def grids(self, summaries: dict, step: int, scope: str) -> dict[str, images_lib.Grid]:
    """Each summary's (N, H, W, C) images as a grid of its layout, titled by run and step."""
    grids = {}
    for name, images in summaries.items():
      layout = self.layouts.get(name, images_lib.Layout())
      layout = dataclasses.replace(
          layout, columns=layout.columns or COLUMNS,
          title=images_lib.run_title(self.context.workdir, layout.title or name, step, scope))
      grids[name] = images_lib.make_grid(np.asarray(images), layout=layout)
    return grids

  def run(self, state, step, scope):
    summaries = self.images(state, self.batches[0], self.context.rng)
    return base.Output(images=self.grids(summaries, step, scope))
