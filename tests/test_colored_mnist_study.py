"""IRMv1 (research/tasks/irm.py), the Colored MNIST configs and the context-shift study end to
end on Colored MNIST built from the stand-in digits (no MNIST, offline)."""
import csv
import importlib
import os
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from research.data import colored_mnist, preprocess, tfds_sources
from research.studies import base
from research.tasks import base as tasks_base, irm
from tests.test_context_shift import stand_in_digits


def binary_cross_entropy(logits, labels):
  return np.mean(np.logaddexp(0.0, logits) - labels * logits)


def test_penalty_is_the_squared_scale_gradient_of_each_environment_risk():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(12, 1)).astype(np.float32)
  labels = rng.integers(0, 2, 12)
  environments = np.array([0] * 5 + [1] * 7)
  risks, gradients, present = irm.risks_and_scale_gradients(
      jnp.asarray(logits), jnp.asarray(labels), jnp.asarray(environments), 3)
  assert present.tolist() == [True, True, False]  # environment 2 is not in the batch
  f = logits[:, 0]
  for e in (0, 1):
    mine = environments == e
    assert risks[e] == pytest.approx(binary_cross_entropy(f[mine], labels[mine]), rel=1e-5)
    sigmoid = 1 / (1 + np.exp(-f[mine]))  # d/dw BCE(w f) at w = 1 = mean((sigmoid(f) - y) f)
    assert gradients[e] == pytest.approx(np.mean((sigmoid - labels[mine]) * f[mine]), rel=1e-4)
  expected = np.mean(np.square(np.asarray(gradients[:2])))
  assert irm.irm_penalty(jnp.asarray(logits), jnp.asarray(labels), jnp.asarray(environments),
                         3) == pytest.approx(expected, rel=1e-6)


def test_penalty_of_softmax_logits_matches_a_finite_difference():
  rng = np.random.default_rng(1)
  logits = rng.normal(size=(9, 3)).astype(np.float64)
  labels, environments = rng.integers(0, 3, 9), rng.integers(0, 2, 9)

  def risk(scale, e):
    scaled = scale * logits[environments == e]
    log_softmax = scaled - np.log(np.exp(scaled).sum(-1, keepdims=True))
    return -np.mean(log_softmax[np.arange(len(scaled)), labels[environments == e]])

  h = 1e-5
  finite = [(risk(1 + h, e) - risk(1 - h, e)) / (2 * h) for e in (0, 1)]
  penalty = irm.irm_penalty(jnp.asarray(logits, jnp.float32), jnp.asarray(labels),
                            jnp.asarray(environments), 2)
  assert penalty == pytest.approx(np.mean(np.square(finite)), rel=1e-3)


def test_penalty_weight_anneals_and_the_objective_is_rescaled():
  weight = lambda step: float(irm.penalty_weight_at(jnp.asarray(step), 1e4, 190))  # noqa: E731
  assert (weight(0), weight(189), weight(190), weight(500)) == (1.0, 1.0, 1e4, 1e4)
  assert float(irm.penalty_weight_at(jnp.asarray(3), 0.0, 0)) == 0.0  # ERM: no penalty ever
  assert float(irm.irm_objective(0.5, 0.01, 1e4, 0.2)) == pytest.approx((0.7 + 100) / 1e4)
  assert float(irm.irm_objective(0.5, 0.01, 1.0, 0.2)) == pytest.approx(0.71)
  assert float(irm.irm_objective(0.5, 0.01, 0.0, 0.2)) == pytest.approx(0.7)


def test_irm_task_loss_is_the_reference_objective_and_counts_its_steps():
  config = importlib.import_module("configs.colored_mnist").get_config("irm")
  config.task.penalty_anneal_steps = 2
  task = tasks_base.make_task(config)
  rng = np.random.default_rng(0)
  batch = {"image": jnp.asarray(rng.random((16, 14, 14, 2)), jnp.float32),
           "label": jnp.asarray(rng.integers(0, 2, 16)),
           "environment": jnp.asarray(np.repeat([0, 1], 8))}
  variables = task.init_variables(jax.random.key(0), batch)
  params = variables.pop("params")
  state = variables
  f = np.asarray(task.model.apply({"params": params}, batch["image"]))
  assert f.shape == (16, 1)  # one logit (single_logit), two classes for the data and metrics
  weights = sum(float(np.sum(np.square(w))) for w in jax.tree_util.tree_leaves(params))
  penalty = float(irm.irm_penalty(jnp.asarray(f), batch["label"], batch["environment"], 2))
  risk = np.mean([binary_cross_entropy(f[:8, 0], np.asarray(batch["label"][:8])),
                  binary_cross_entropy(f[8:, 0], np.asarray(batch["label"][8:]))])
  for step, weight in ((0, 1.0), (2, config.task.penalty_weight)):
    state = {irm.STEP: {"step": jnp.asarray(step, jnp.int32)}}
    loss, (outputs, new_state) = task.loss_fn(params, state, batch, jax.random.key(1), True)
    expected = (risk + config.task.l2 * weights + weight * penalty) / max(weight, 1.0)
    assert float(loss) == pytest.approx(expected, rel=1e-4)
    assert int(new_state[irm.STEP]["step"]) == step + 1
    assert np.allclose(outputs["penalty"], penalty, rtol=1e-4)
  probs = task.probs(params, state, batch, jax.random.key(1))
  assert np.allclose(probs[:, 1], 1 / (1 + np.exp(-f[:, 0])), atol=1e-5)


def test_sum_channels_is_the_grey_scale_image():
  images = np.random.default_rng(0).random((3, 14, 14, 2)).astype(np.float32)
  out = preprocess.parse("sum_channels")({"image": images}, jax.random.key(0))["image"]
  assert out.shape == (3, 14, 14, 1) and np.allclose(out[..., 0], images.sum(-1))


def test_configs_select_on_the_training_environments_only():
  configs = importlib.import_module("configs.colored_mnist")
  for model in configs.MODELS:
    config = configs.get_config(model)
    assert config.data.name == "colored_mnist"
    assert "test" not in config.data.train_split + config.data.val_split
    assert config.data.val_split == "train_e20[90%:]+train_e10[90%:]"
    assert config.data.test_split == "test_e90"
    assert {config.evals[s].data.split for s in ("test_e80", "test_e70")} == {
        "test_e80", "test_e70"}
  irm_config = configs.get_config("irm")
  assert (irm_config.model.hidden, irm_config.total_steps, irm_config.batch_size) == (
      (390, 390), 501, 45_000)
  assert configs.get_config("erm").task.penalty_weight == 0.0
  assert configs.get_config("m2,labels=100").data.labelled_per_class == 100
  with pytest.raises(ValueError, match="unknown config argument"):
    configs.get_config("vit")


@pytest.fixture(scope="module")
def tiny_colored_mnist(tmp_path_factory):
  """A TFDS data dir with colored_mnist prepared from the stand-in digits (1,497 training
  images: 1,347 train, 150 validation; 300 per test environment)."""
  data_dir = str(tmp_path_factory.mktemp("colored_tfds"))
  with mock.patch.object(tfds_sources, "load_prepared_images",
                         return_value=stand_in_digits()):
    colored_mnist.ColoredMnist(data_dir=data_dir).download_and_prepare()
  return data_dir


@pytest.fixture(scope="module")
def study(tiny_colored_mnist, tmp_path_factory):
  config = importlib.import_module("configs.studies.colored_mnist").get_config()
  config.models = ("irm", "cvae", "m2")  # erm is irm's task with no penalty
  config.seeds, config.vae_seeds = (0, 1), (0,)
  config.grids.irm = ("task.penalty_weight", (10.0, 1000.0))
  config.m2_labels, config.batch_size, config.total_steps = 20, 128, 6
  config.eval_batch_size = 150
  config.data_dir = tiny_colored_mnist
  directory = str(tmp_path_factory.mktemp("colored_mnist_study"))
  with mock.patch.dict(os.environ, {"XDG_CACHE_HOME": str(tmp_path_factory.mktemp("cache"))}):
    summary = base.run_study(config, directory)
  runs = list(csv.DictReader(open(os.path.join(directory, "runs.csv"))))
  return directory, summary, runs


def read_table(directory: str, name: str) -> list[dict]:
  return list(csv.DictReader(open(os.path.join(directory, name + ".csv"))))


def test_the_study_runs_every_model_setting_and_seed(study):
  directory, summary, runs = study
  assert summary["runs"] == 2 * 2 + 1 + 1
  assert {(r["model"], r["setting"], r["seed"]) for r in runs} == {
      ("irm", "penalty_weight=10", "0"), ("irm", "penalty_weight=10", "1"),
      ("irm", "penalty_weight=1000", "0"), ("irm", "penalty_weight=1000", "1"),
      ("cvae", "reference", "0"), ("m2", "reference", "0")}
  for run in runs:
    for key in ("val/accuracy", "test/accuracy", "test_e80/accuracy", "test_e70/accuracy"):
      assert 0.0 <= float(run[key]) <= 1.0
  assert os.path.getsize(os.path.join(directory, "colored_mnist.png")) > 10_000


def test_the_grid_table_is_the_mean_over_seeds_with_its_interval(study):
  directory, _, runs = study
  grid = read_table(directory, "colored_mnist_grid")
  for row in grid:
    mine = [r for r in runs if r["model"] == row["model"] and r["setting"] == row["setting"]]
    assert int(row["seeds"]) == len(mine)
    for stem, key in (("val_accuracy", "val/accuracy"), ("test_e90_accuracy", "test/accuracy"),
                      ("test_e70_accuracy", "test_e70/accuracy")):
      values = [float(r[key]) for r in mine]
      assert float(row[stem]) == pytest.approx(np.mean(values), abs=1e-4)
      if len(values) > 1 and np.std(values) > 0:
        low, high = scipy.stats.t.interval(0.95, len(values) - 1, loc=np.mean(values),
                                           scale=scipy.stats.sem(values))
        assert float(row[stem + "_ci95"]) == pytest.approx((high - low) / 2, abs=1e-4)
  assert {r["environment_labels"] for r in grid if r["model"] == "irm"} == {"yes"}
  assert {r["environment_labels"] for r in grid if r["model"] != "irm"} == {"no"}


def test_each_model_is_selected_on_validation_accuracy_alone(study):
  directory, summary, _ = study
  grid, selected = read_table(directory, "colored_mnist_grid"), read_table(directory,
                                                                           "colored_mnist")
  assert [r["model"] for r in selected] == ["irm", "cvae", "m2"]
  for row in selected:
    mine = [r for r in grid if r["model"] == row["model"]]
    best = max(mine, key=lambda r: float(r["val_accuracy"]))
    assert row["setting"] == best["setting"]
    assert summary[f"{row['model']}_test_e90_accuracy"] == pytest.approx(
        float(row["test_e90_accuracy"]), abs=1e-4)
    assert row["meets_target"] == ("yes" if float(row["test_e90_accuracy"]) >= 0.7 else "no")


def test_the_validation_split_is_held_out_of_both_training_environments(tiny_colored_mnist):
  import tensorflow_datasets as tfds
  config = importlib.import_module("configs.colored_mnist").get_config("erm")
  builder = tfds.builder("colored_mnist", data_dir=tiny_colored_mnist)
  read = lambda split: tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))  # noqa
  train, val = read(config.data.train_split), read(config.data.val_split)
  assert (len(train["label"]), len(val["label"])) == (1347, 150)
  assert set(np.unique(train["environment"])) == set(np.unique(val["environment"])) == {0, 1}
  rows = lambda d: {bytes(image) for image in d["image"]}  # noqa: E731
  assert len(rows(train) & rows(val)) < 10  # the stand-in digits repeat a few images
