"""Semi-supervised learning: balanced labelled subsets (reproducible, inside the training
split, recorded), batches that always carry labels, M2's bounds, and M2 on digits."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from research import errors
from research.data import pipeline, splits
from research.tasks import semi_supervised
from research.train import loop
from tests.conftest import load_config
from tests.test_step import build


def run_data(config):
  return splits.RunData(config.data, "/nonexistent", config.eval_batch_size, num_classes=10)


def test_labelled_subsets_are_balanced_reproducible_and_outside_validation(data_dir):
  config = load_config("m2", "digits,labels=3", data_dir=data_dir)
  data = run_data(config)
  train, val = data.arrays("train"), data.arrays("val")
  labels = train["label"]
  kept = labels[labels >= 0]
  assert np.array_equal(np.bincount(kept, minlength=10), np.full(10, 3))
  assert np.array_equal(np.flatnonzero(labels >= 0), data.labelled)
  raw = pipeline.load_split(config.data, config.data.train_split)
  np.testing.assert_array_equal(labels[data.labelled], raw["label"][data.labelled])
  assert np.sum(labels == splits.UNLABELLED) == len(labels) - 30
  assert np.all(val["label"] >= 0)  # validation keeps every label
  # No labelled image is a validation image (they come from the training split's rows).
  val_images = {image.tobytes() for image in val["image"]}
  assert not any(train["image"][r].tobytes() in val_images for r in data.labelled)
  # The same seed draws the same rows; another seed others; a larger N its own draw.
  assert np.array_equal(run_data(config).arrays("train")["label"], labels)
  config.data.labelled_seed = 1
  assert not np.array_equal(run_data(config).arrays("train")["label"], labels)
  rows = splits.labelled_rows(raw["label"], 3, 0)
  assert np.array_equal(rows, data.labelled) and len(np.unique(rows)) == 30
  with pytest.raises(errors.ConfigError, match="has only"):
    splits.labelled_rows(raw["label"], 1000, 0)
  # A supervised baseline on the same subset: the labelled rows alone.
  config.data.labelled_seed, config.data.labelled_only = 0, True
  only = run_data(config).arrays("train")
  np.testing.assert_array_equal(only["label"], raw["label"][data.labelled])


def test_every_batch_ends_with_labelled_rows_drawn_per_step():
  labels = np.full(1000, -1)
  labels[[5, 17, 300, 999]] = [0, 1, 2, 3]
  arrays = {"image": np.arange(1000)[:, None], "label": labels}
  batches = pipeline.TrainBatches(arrays, 64, seed=0, labelled_batch_size=16)
  assert batches.steps_per_epoch == 1000 // 48
  for step in (0, 1, 25):
    indices = batches.indices(step)
    assert len(indices) == 64 and np.all(labels[indices[48:]] >= 0)
    np.testing.assert_array_equal(indices, pipeline.TrainBatches(
        arrays, 64, seed=0, labelled_batch_size=16).indices(step))
  plain = pipeline.TrainBatches(arrays, 48, seed=0)
  np.testing.assert_array_equal(batches.indices(3)[:48], plain.indices(3))  # the permutation
  assert not np.array_equal(batches.indices(3)[48:], batches.indices(4)[48:])
  with pytest.raises(errors.ConfigError, match="labelled_batch_size"):
    pipeline.TrainBatches(arrays, 64, seed=0, labelled_batch_size=64)


def test_the_unlabelled_bound_is_the_expected_labelled_bound_minus_the_entropy(data_dir):
  config = load_config("m2", "digits", data_dir=data_dir,
                       **{"model.hidden": (32,), "model.classifier_hidden": (32,)})
  task, _, state, batch = build(config, 8, 1)
  assert isinstance(task, semi_supervised.Task)
  from tests.test_vae import processed
  batch, rng = processed(config, batch), jax.random.PRNGKey(2)
  loss = jax.jit(task.loss_fn, static_argnums=4)

  def bound(labels):
    return np.asarray(loss(state.params, state.model_state, {**batch, "label": labels},
                           rng, False)[1][0]["neg_bound"], np.float64)

  unlabelled = bound(jnp.full((8,), -1))
  per_class = np.stack([bound(jnp.full((8,), c)) for c in range(10)], axis=1)  # -L(x, y)
  q = np.asarray(jax.jit(task.probs)(state.params, state.model_state, batch, rng), np.float64)
  entropy = -np.sum(q * np.log(q), axis=1)
  np.testing.assert_allclose(unlabelled, np.sum(q * per_class, axis=1) - entropy, rtol=1e-5)
  # A batch mixing both: each row gets its own bound; the loss weighs the two means and
  # alpha times the labelled rows' cross-entropy.
  mixed = jnp.array([3, -1, 0, -1, -1, 7, -1, 2])
  _, (outputs, _) = loss(state.params, state.model_state, {**batch, "label": mixed}, rng, False)
  rows = np.asarray(mixed) >= 0
  expected = np.where(rows, per_class[np.arange(8), np.maximum(np.asarray(mixed), 0)],
                      unlabelled)
  np.testing.assert_allclose(outputs["neg_bound"], expected, rtol=1e-5)
  total, _ = loss(state.params, state.model_state, {**batch, "label": mixed}, rng, False)
  cross_entropy = -np.log(q[np.arange(8), np.maximum(np.asarray(mixed), 0)])
  np.testing.assert_allclose(
      float(total), expected[rows].mean() + config.task.alpha * cross_entropy[rows].mean()
      + expected[~rows].mean(), rtol=1e-5)


def test_m2_learns_from_a_few_labels_and_records_them(data_dir, tmp_path):
  config = load_config("m2", "digits,labels=5", data_dir=data_dir,
                       **{"total_steps": 200, "model.hidden": (64,)})
  results = loop.train_and_evaluate(config, str(tmp_path))
  assert results["test/accuracy"] > 0.5  # chance 0.1; 50 labels in all
  record = json.load(open(os.path.join(tmp_path, splits.LABELLED_FILE)))
  assert record["labelled_per_class"] == 5 and len(record["rows"]) == 50
  # Another labelled subset in the same workdir is refused.
  config.data.labelled_seed = 1
  with pytest.raises(errors.UserError, match="another labelled subset"):
    splits.record_labelled(str(tmp_path), config.data, splits.labelled_rows(
        pipeline.load_split(config.data, config.data.train_split)["label"], 5, 1))
