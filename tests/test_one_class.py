"""One-class image models (autoencoder, Deep SVDD, GEOM's transformations), the warm start
that carries an autoencoder's encoder into Deep SVDD, the OC-SVM baseline and the
one-class study, on the bundled digits."""
import csv
import importlib
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import load_config
from research import errors
from research.data import pipeline, splits
from research.evaluation import one_class as one_class_lib
from research.evaluators import anomaly_report
from research.models import autoencoder, base as models_base, deep_svdd, transformations
from research.studies import base as studies_base
from research.tasks import base as tasks_base
from research.train import experiment, loop, restore, warm_start

NORMAL = 3


@pytest.fixture(scope="module")
def autoencoder_run(data_dir, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("autoencoder"))
  config = load_config("autoencoder", f"digits,normal={NORMAL}", data_dir, total_steps=40)
  return workdir, loop.train_and_evaluate(config, workdir)


def svdd_config(data_dir, ae_workdir, **overrides):
  return load_config("deep_svdd", f"digits,normal={NORMAL}", data_dir,
                     **{"init_from.workdir": ae_workdir, **overrides})


def test_the_autoencoder_learns_to_reconstruct_its_class(autoencoder_run, data_dir):
  workdir, results = autoencoder_run
  run = restore.restore(workdir)
  images = splits.only_labels(pipeline.load_split(run.config.data, "train[:90%]"), (NORMAL,))
  trained = run.predict("score", images)
  fresh = tasks_base.make_task(run.config).init_variables(jax.random.PRNGKey(1),
                                                          {"image": images["image"] / 255.0})
  untrained = run.task.model.apply(fresh, images["image"] / 255.0)
  assert trained.shape == (len(images["label"]),)
  assert trained.mean() < 0.5 * float(untrained.mean())
  assert 0.5 < results["test/auroc"] <= 1.0  # scored on every class of the test split
  assert isinstance(run.task.model, models_base.OneClass)


def test_deep_svdd_starts_from_the_autoencoder_encoder_and_the_mean_embedding(
    autoencoder_run, data_dir, tmp_path):
  ae = restore.restore(autoencoder_run[0])
  config = svdd_config(data_dir, autoencoder_run[0])
  exp = experiment.build(config, str(tmp_path))
  try:
    state = exp.state
    model = exp.task.model
  finally:
    exp.close()
  assert isinstance(model, models_base.CentredEmbedding)
  jax.tree.map(np.testing.assert_array_equal, state.params[autoencoder.ENCODER],
               ae.state.params[autoencoder.ENCODER])
  jax.tree.map(np.testing.assert_array_equal, state.model_state["batch_stats"],
               {autoencoder.ENCODER: ae.state.model_state["batch_stats"][autoencoder.ENCODER]})
  # The centre: the mean embedding of the normal training images, by the autoencoder's
  # own encoder applied in one batch, its near-zero components pushed out to +-eps.
  images = splits.only_labels(pipeline.load_split(config.data, "train[:90%]"), (NORMAL,))
  encoder = autoencoder.Encoder(config.model.features, config.model.latent_dim,
                                config.model.kernel_size, config.model.conv_impl)
  embeddings = encoder.apply({"params": ae.state.params[autoencoder.ENCODER],
                              "batch_stats": ae.state.model_state["batch_stats"]["encoder"]},
                             jnp.asarray(images["image"] / 255.0, jnp.float32))
  mean = np.asarray(embeddings, np.float64).mean(axis=0)
  eps = config.model.centre_eps
  expected = np.where(np.abs(mean) < eps, np.where(mean < 0, -eps, eps), mean)
  np.testing.assert_allclose(state.model_state[deep_svdd.CENTRE]["c"], expected, atol=1e-5)


def test_deep_svdd_trains_resumes_without_its_autoencoder_and_keeps_its_centre(
    autoencoder_run, data_dir, tmp_path):
  ae_copy = str(tmp_path / "ae")
  shutil.copytree(autoencoder_run[0], ae_copy)
  workdir = str(tmp_path / "svdd")
  config = svdd_config(data_dir, ae_copy)

  def stop_at_10(step):
    if step == 10:
      raise KeyboardInterrupt

  with pytest.raises(KeyboardInterrupt):
    loop.train_and_evaluate(config, workdir, step_hook=stop_at_10)
  centre = np.asarray(restore.restore(workdir).state.model_state[deep_svdd.CENTRE]["c"])
  shutil.rmtree(ae_copy)  # resuming reads the checkpoint, never the warm start's source
  results = loop.train_and_evaluate(config, workdir)
  run = restore.restore(workdir)
  np.testing.assert_array_equal(run.state.model_state[deep_svdd.CENTRE]["c"], centre)
  assert results["step"] == 20 and 0.5 < results["test/auroc"] <= 1.0
  assert results["val/loss"] < float(np.sum(np.square(centre)))  # closer than phi = 0


def test_init_from_refuses_a_run_of_another_shape(autoencoder_run, data_dir, tmp_path):
  config = svdd_config(data_dir, autoencoder_run[0], **{"model.latent_dim": 8})
  with pytest.raises(errors.ConfigError, match="other shapes"):
    experiment.build(config, str(tmp_path))
  config = svdd_config(data_dir, autoencoder_run[0], **{"init_from.modules": ("decoderx",)})
  with pytest.raises(errors.ConfigError, match="decoderx"):
    experiment.build(config, str(tmp_path / "b"))


def test_copy_modules_takes_only_the_named_submodules():
  tree = {"encoder": {"w": np.zeros(2)}, "head": {"w": np.zeros(3)}}
  source = {"encoder": {"w": np.ones(2)}, "head": {"w": np.ones(3)}}
  out = warm_start.copy_modules(tree, source, ("encoder",), "parameters", "a run")
  np.testing.assert_array_equal(out["encoder"]["w"], 1.0)
  np.testing.assert_array_equal(out["head"]["w"], 0.0)


def numpy_transform(x, flip, dy, dx, turns, shift):
  if flip:
    x = x[:, :, ::-1]
  padded = np.pad(x, ((0, 0), (shift, shift), (shift, shift), (0, 0)), mode="reflect")
  h, w = x.shape[1:3]
  shifted = padded[:, shift - dy:shift - dy + h, shift - dx:shift - dx + w]
  return np.rot90(shifted, turns, axes=(1, 2))


def test_transformations_are_geoms_72_and_match_numpy():
  grid = transformations.transformation_grid(True, 8, True)
  assert len(grid) == 72 and len(set(grid)) == 72 and grid[0] == (False, 0, 0, 0)
  assert len(transformations.transformation_grid(False, 0, True)) == 4
  x = np.random.default_rng(0).normal(size=(2, 28, 28, 1)).astype(np.float32)
  for t in grid[::7]:
    np.testing.assert_array_equal(transformations.transform(jnp.asarray(x), *t, 8),
                                  numpy_transform(x, *t, 8))
  # A translation moves the content: pixel (10, 12) lands at (10 + dy, 12 + dx).
  moved = transformations.transform(jnp.asarray(x), False, 8, -8, 0, 8)
  assert moved[0, 18, 4, 0] == x[0, 10, 12, 0]


def test_the_transformation_score_is_the_mean_cross_entropy_over_all_transformations():
  model = transformations.Model(shift=2, conv_features=(4,), train_transforms=3)
  x = jnp.asarray(np.random.default_rng(1).uniform(size=(5, 8, 8, 1)), jnp.float32)
  variables = model.init({"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(1)}, x)
  score = model.apply(variables, x)
  grid = transformations.transformation_grid(True, 2, True)
  expected = []
  for k, t in enumerate(grid):
    logits = model.apply(variables, transformations.transform(x, *t, 2), False,
                         method=model.classify)
    expected.append(-jax.nn.log_softmax(logits)[:, k])
  np.testing.assert_allclose(score, np.mean(expected, axis=0), rtol=1e-5)
  trained, _ = model.apply(variables, x, train=True, rngs={"dropout": jax.random.PRNGKey(2)},
                           mutable=["batch_stats"])
  assert trained.shape == (5,) and np.all(np.isfinite(trained))


def test_the_ocsvm_separates_a_digit_from_the_others(data_dir):
  config = load_config("autoencoder", "digits,normal=0", data_dir)
  train = splits.only_labels(pipeline.load_split(config.data, "train[:90%]"), (0,))
  test = pipeline.load_split(config.data, "test")
  scores = one_class_lib.ocsvm_scores(train["image"] / 255.0, test["image"] / 255.0, 10)
  assert scores.shape == (len(test["label"]),)
  assert anomaly_report.report(scores, test["label"], (0,))["auroc"] > 0.95


def test_the_one_class_study_end_to_end(data_dir, tmp_path):
  config = importlib.import_module("configs.studies.one_class").get_config("digits")
  config.data_dir, config.total_steps = data_dir, 20
  config.classes, config.seeds = (0, 1), (0,)
  config.families = ("deep_svdd", "transformations")
  config.ocsvm_fields.components = 10
  directory = str(tmp_path / "study")
  summary = studies_base.run_study(config, directory)
  assert summary["runs"] == 6  # the autoencoders Deep SVDD starts from are runs too
  runs = os.listdir(os.path.join(directory, "runs"))
  assert all(os.path.exists(os.path.join(directory, "runs", r, "study_run.json")) for r in runs)
  svdd = next(r for r in runs if r.startswith("digits_deep_svdd_class1_seed0"))
  svdd_config = json.load(open(os.path.join(directory, "runs", svdd, "config.json")))
  assert os.path.basename(svdd_config["init_from"]["workdir"]).startswith(
      "digits_autoencoder_class1_seed0")
  rows = list(csv_rows(os.path.join(directory, "one_class.csv")))
  assert [r["family"] for r in rows] == ["autoencoder", "deep_svdd", "transformations", "ocsvm"]
  per_class = list(csv_rows(os.path.join(directory, "per_class.csv")))
  assert len(per_class) == 8
  for row in rows:
    mine = [float(r["auroc"]) for r in per_class if r["family"] == row["family"]]
    np.testing.assert_allclose(float(row["mean_auroc"]), np.mean(mine), rtol=1e-6)
    assert float(row["worst_auroc"]) == pytest.approx(min(mine))
  assert os.path.exists(os.path.join(directory, "one_class_digits.png"))
  again = studies_base.run_study(config, directory)
  assert again == {**summary, "reused": 6.0}


def csv_rows(path):
  with open(path) as f:
    yield from csv.DictReader(f)
