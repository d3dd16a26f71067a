"""A finished (or checkpointed) run, restored from its workdir without its training data.

    run = restore.restore("workdirs/cnn_digits")          # newest checkpoint
    probs = run.predict("probs", {"image": images})       # raw inputs, as the dataset has them
    probs = run.predict("probs", run.encode(rows))        # tabular rows (or texts): the workdir's
                                                          # tabular.json (tokenizer.json) applied
    run.config, run.task, run.state, run.step

Nothing is written to the workdir and no writer is opened; the state's shapes come from
``input_spec.json``, the config from ``config.json`` (or the one passed in).
"""
import dataclasses
import os

import jax
import ml_collections
import numpy as np

from research import errors
from research.core import checkpoint, optim, sharding, state as state_lib
from research.data import preprocess, splits
from research.tasks import base as tasks_base
from research.train import replicas as replicas_lib, validation, workdir as workdir_lib


@dataclasses.dataclass
class Restored:
  config: ml_collections.ConfigDict
  workdir: str
  task: tasks_base.Task
  state: state_lib.TrainState  # stacked on a leading axis for replicas
  step: int
  adaptor: replicas_lib.Single | replicas_lib.Replicas
  mesh: jax.sharding.Mesh
  _jitted: dict = dataclasses.field(default_factory=dict, repr=False)

  def replica(self, index: int | None) -> state_lib.TrainState:
    """The state of one model: the run's, or replica ``index``'s."""
    if isinstance(self.adaptor, replicas_lib.Replicas):
      if index is None or not 0 <= index < self.adaptor.count():
        raise errors.ConfigError(f"{self.workdir} holds {self.adaptor.count()} replicas: "
                                 f"choose one with replica=0..{self.adaptor.count() - 1}")
      return self.adaptor.take(self.state, index)
    return self.state

  def _predict_fn(self, name: str, options: tuple):
    if (name, options) in self._jitted:
      return self._jitted[name, options]
    fn, preprocess_fn = self.task.prediction(name), preprocess.parse(self.config.data.preprocess)

    def predict(state, batch, rng):
      preprocess_key, predict_key = jax.random.split(rng)
      return fn(state.params, state.model_state, preprocess_fn(batch, preprocess_key),
                predict_key, **dict(options))

    self._jitted[name, options] = jax.jit(predict)
    return self._jitted[name, options]

  def encode(self, arrays: dict) -> dict:
    """Raw rows of the run's dataset (numpy arrays by feature) as its model takes them:
    tabular columns through the workdir's ``tabular.json``, text through its
    ``tokenizer.json`` (read from there, never refitted); other data unchanged."""
    return splits.encoder(self.config.data, self.workdir, None)(arrays)

  def predict(self, name: str, batch: dict, rng: jax.Array | None = None,
              replica: int | None = None, **options):
    """The task's prediction ``name`` on a batch of raw inputs (preprocessed as the run's
    evaluation is, with ``rng`` or the run's evaluation key)."""
    rng = state_lib.run_rngs(self.config.seed)["eval"] if rng is None else rng
    out = self._predict_fn(name, tuple(sorted(options.items())))(self.replica(replica), batch, rng)
    return jax.tree.map(np.asarray, out)


def example_inputs(workdir: str) -> dict[str, np.ndarray]:
  """One zero example of each training feature, from ``input_spec.json``."""
  spec = workdir_lib.read_input_spec(workdir)
  if spec is None:
    raise errors.UserError(f"no {workdir_lib.INPUT_SPEC_FILE} in {workdir}: no run has "
                           f"started there")
  return {name: np.zeros((1, *shape), dtype) for name, (shape, dtype) in spec.items()}


def restore(workdir: str, step: int | None = None,
            config: ml_collections.ConfigDict | None = None) -> Restored:
  """The run in ``workdir`` at its newest checkpoint (or ``step``): config, task and state."""
  directory = os.path.join(os.path.abspath(workdir), "checkpoints")
  if not os.path.isdir(directory):  # checked first: the Checkpointer would create it
    raise errors.UserError(f"no checkpoint in {directory}: train first, or pass the "
                           f"--workdir of a trained run")
  config = workdir_lib.read_config(workdir) if config is None else config
  validation.validate(config, None)
  example = example_inputs(workdir)
  checkpointer = checkpoint.Checkpointer(directory, config.keep_checkpoints)
  try:
    if checkpointer.latest_step() is None:
      raise errors.UserError(f"no checkpoint in {directory}: train first, or pass the "
                             f"--workdir of a trained run")
    tasks_base.task_class(config).complete_config(config, {
        k: (v.shape[1:], str(v.dtype)) for k, v in example.items()})
    task = tasks_base.make_task(config)
    adaptor = replicas_lib.from_config(config)
    mesh = sharding.make_mesh()
    replicated = sharding.replicated(mesh)
    # The optimizer's state has the same structure for any number of steps.
    init = state_lib.make_init(task, optim.make_optimizer(config.optimizer, 1),
                               preprocess.parse(config.data.preprocess))
    abstract = jax.eval_shape(adaptor.batched_init(init), example)
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated),
                            abstract)
    state = checkpointer.restore(abstract, step)
  finally:
    checkpointer.close()
  return Restored(config, workdir, task, state, state_lib.step_of(state), adaptor, mesh)
