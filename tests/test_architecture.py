"""The package's layers import only downwards, and plug-ins from outside the package
(a task and an evaluator in files of their own, named by dotted path) run unchanged."""
import ast
import os
import sys
import textwrap

import pytest

from tests.conftest import ROOT, load_config

# Lowest first: a module may import its own package and any package of a lower layer.
LAYERS = (
    ("research.errors",),
    ("research.registry",),
    ("research.core",),
    ("research.data", "research.models", "research.evaluation"),
    ("research.tasks",),
    ("research.evaluators",),
    ("research.train",),
    ("research.studies",),
    ("research.serving",),
    ("research.cli",),
)


def package_of(module: str) -> str | None:
  for layer in LAYERS:
    for package in layer:
      if module == package or module.startswith(package + "."):
        return package
  return None


def layer_of(package: str) -> int:
  return next(i for i, layer in enumerate(LAYERS) if package in layer)


def imports_of(path: str, module: str) -> list[tuple[int, str]]:
  """``(line, imported module)`` of every import in a file, relative ones resolved."""
  tree = ast.parse(open(path).read(), path)
  found = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      found += [(node.lineno, alias.name) for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        parts = module.split(".")[:-node.level]
        base = ".".join(parts + ([base] if base else []))
      found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
  return found


def modules():
  for directory, _, files in os.walk(os.path.join(ROOT, "research")):
    for name in files:
      if name.endswith(".py"):
        path = os.path.join(directory, name)
        module = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".").removesuffix(".__init__")
        yield path, module


def test_every_module_belongs_to_a_layer():
  unplaced = [m for _, m in modules() if m != "research" and package_of(m) is None]
  assert not unplaced, f"modules outside every layer of LAYERS: {unplaced}"


def test_imports_point_down():
  upward = []
  for path, module in modules():
    own = package_of(module)
    if own is None:  # research/__init__.py
      continue
    for line, imported in imports_of(path, module):
      target = package_of(imported)
      if target is None or target == own:
        continue
      if layer_of(target) >= layer_of(own):
        upward.append(f"{os.path.relpath(path, ROOT)}:{line} imports {imported}")
  assert not upward, "imports that do not point down:\n" + "\n".join(upward)


def test_the_core_knows_nothing_above_it():
  above = ("research.data", "research.tasks", "research.models", "research.evaluation",
           "research.evaluators", "research.train", "research.studies")
  for path, module in modules():
    if package_of(module) == "research.core":
      bad = [name for _, name in imports_of(path, module) if name.startswith(above)]
      assert not bad, f"{module} imports {bad}"


def test_the_layer_check_catches_an_upward_import(tmp_path):
  path = tmp_path / "bad.py"
  path.write_text("from research.train import loop\nimport research.core.step\n")
  found = [package_of(name) for _, name in imports_of(str(path), "research.core.bad")]
  assert found == ["research.train", "research.core"]
  assert layer_of("research.train") > layer_of("research.core")


PLUGIN_TASK = '''
"""A task from outside the package: a classifier whose loss is the squared error to the one-hot
label, with a prediction of its own."""
import jax
import jax.numpy as jnp
from clu import metrics

from research.tasks import base, classification


class Task(classification.Task):
  metrics = {"loss": metrics.Average.from_output("loss"),
             "accuracy": metrics.Average.from_output("accuracy")}
  predictions = classification.Task.predictions + ("margin",)

  @classmethod
  def validate_config(cls, config):
    pass

  def __init__(self, config):
    base.BaseTask.__init__(self, config)

  def loss_fn(self, params, model_state, batch, rng, train):
    logits, model_state = self.apply(params, model_state, batch, rng, train)
    one_hot = jax.nn.one_hot(batch["label"], logits.shape[-1])
    loss = jnp.sum(jnp.square(logits - one_hot), -1)
    accuracy = (logits.argmax(-1) == batch["label"]).astype(jnp.float32)
    return loss.mean(), ({"loss": loss, "accuracy": accuracy}, model_state)

  def margin(self, params, model_state, batch, rng):
    top2 = jax.lax.top_k(self.logits(params, model_state, batch, rng), 2)[0]
    return top2[:, 0] - top2[:, 1]
'''

PLUGIN_EVALUATOR = '''
"""An evaluator from outside the package: the mean margin of the top two scores, and the
number of examples it saw, on a dataset of its own."""
import numpy as np

from research.evaluators import base


class Evaluator(base.Evaluator):
  fields = {"scale": 1.0}

  def __init__(self, name, config, context):
    super().__init__(name, config, context)
    self.predict = base.predictions_fn(context, {"margin": self.task.prediction("margin")},
                                       keep=("label",))

  @classmethod
  def metric_names(cls, config, task_cls):
    return ("mean_margin", "count")

  def run(self, state, step, scope):
    out = base.gather(self.predict, state, self.batches, self.context.rng)
    directory = self.context.report_dir(scope)
    np.savetxt(f"{directory}/{self.name}_margins.csv", out["margin"], delimiter=",")
    return base.Output({"mean_margin": self.option("scale") * float(out["margin"].mean()),
                        "count": float(len(out["label"]))})
'''


@pytest.fixture
def plugins(tmp_path, monkeypatch):
  package = tmp_path / "my_plugins"
  package.mkdir()
  (package / "__init__.py").write_text("")
  (package / "squared_task.py").write_text(textwrap.dedent(PLUGIN_TASK))
  (package / "margin_eval.py").write_text(textwrap.dedent(PLUGIN_EVALUATOR))
  monkeypatch.syspath_prepend(str(tmp_path))
  yield "my_plugins"
  for name in [m for m in sys.modules if m.startswith("my_plugins")]:
    del sys.modules[name]


def test_a_task_and_an_evaluator_from_outside_the_package(plugins, data_dir, tmp_path):
  from ml_collections import ConfigDict

  from research.core import writers
  from research.train import loop
  config = load_config("mlp", data_dir=data_dir, **{"model.hidden": (32,),
                                                    "optimizer.learning_rate": 1e-2})
  config.task.name = f"{plugins}.squared_task"
  config.evals.margins = ConfigDict(dict(
      type=f"{plugins}.margin_eval", data=ConfigDict(dict(split="train[:100]")), every_steps=10,
      scale=2.0))
  config.gate = "margins/count>=100"
  results = loop.train_and_evaluate(config, str(tmp_path / "run"))
  assert results["margins/count"] == 100  # its own data: 100 training images
  assert results["margins/mean_margin"] > 0 and results["gate_passed"] == 1.0
  records = writers.read_metrics(str(tmp_path / "run"))
  val_loss = [r["val/loss"] for r in records if "val/loss" in r]
  assert len(val_loss) == 2 and val_loss[1] < val_loss[0]  # the plug-in's loss trains the model
  assert results["test/accuracy"] > 0.3
  margins = open(tmp_path / "run" / "reports" / "margins_margins.csv").read().split()
  assert len(margins) == 100
  assert float(sum(map(float, margins))) * 2 / 100 == pytest.approx(results["margins/mean_margin"],
                                                                    rel=1e-4)
