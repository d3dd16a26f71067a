"""The input pipeline: preprocessing ops, deterministic batches, splits, clear data errors."""
import json
import time

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from research import errors
from research.train import loop
from research.data import pipeline, preprocess
from tests.conftest import closed_port_url, load_config


def test_an_offline_download_fails_in_seconds(tmp_path, monkeypatch):
  monkeypatch.setenv("https_proxy", closed_port_url())  # refused at once, no network
  config = load_config("cnn", arg=None, data_dir=str(tmp_path))
  assert config.data.download  # the default, as in TFDS
  start = time.perf_counter()
  with pytest.raises(pipeline.DatasetUnavailableError, match="cannot download dataset 'mnist'"):
    pipeline.load_split(config.data, "train")
  assert time.perf_counter() - start < 10 and not list(tmp_path.iterdir())


def test_a_failed_download_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
  """TFDS's partial files (``downloads/*.tmp.*``, ``NAME/VERSION.incomplete*``) are removed;
  what was there before stays."""
  (tmp_path / "kept").mkdir()
  monkeypatch.setattr(pipeline, "check_connection", lambda name, data_dir: None)

  def interrupted_download(builder, *args, **kwargs):
    (tmp_path / "downloads" / "mnist.tmp.1234").mkdir(parents=True)
    (tmp_path / "downloads" / "mnist.tmp.1234" / "train.gz").write_bytes(b"partial")
    (tmp_path / "mnist" / "3.0.1.incomplete.ABC").mkdir(parents=True)
    raise ConnectionError("Max retries exceeded with url: /cvdf-datasets/mnist/\n(Caused by x)")

  builder_class = type(tfds.builder("mnist", data_dir=str(tmp_path)))
  monkeypatch.setattr(builder_class, "download_and_prepare", interrupted_download)
  config = load_config("cnn", arg=None, data_dir=str(tmp_path))
  with pytest.raises(pipeline.DatasetUnavailableError) as error:
    pipeline.load_split(config.data, "train")
  message = str(error.value)
  assert "\n" not in message and "downloading dataset 'mnist'" in message
  assert "ConnectionError: Max retries exceeded" in message and "removed" in message
  assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"]


def test_scale_and_binarize():
  images = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1)
  scaled = preprocess.parse("scale(0, 1)")({"image": images}, jax.random.PRNGKey(0))["image"]
  assert scaled.dtype == np.float32
  np.testing.assert_allclose([scaled.min(), scaled.max()], [0.0, 1.0])
  scaled = preprocess.parse("scale(-1, 1)")({"image": images}, jax.random.PRNGKey(0))["image"]
  np.testing.assert_allclose([scaled.min(), scaled.max()], [-1.0, 1.0])

  grey = np.full((2000, 8, 8, 1), 64, np.uint8)  # 64/255 ~ 0.251
  chain = preprocess.parse("scale(0, 1)|binarize")
  a = np.asarray(chain({"image": grey}, jax.random.PRNGKey(0))["image"])
  b = np.asarray(chain({"image": grey}, jax.random.PRNGKey(1))["image"])
  assert set(np.unique(a)) == {0.0, 1.0}
  assert abs(a.mean() - 64 / 255) < 0.01
  assert not np.array_equal(a, b)  # dynamic: a fresh draw for every key
  np.testing.assert_array_equal(a, chain({"image": grey}, jax.random.PRNGKey(0))["image"])


def test_random_shift_translates_each_image():
  images = np.zeros((64, 6, 6, 1), np.float32)
  images[:, 2:4, 2:4] = 1.0  # a 2x2 square in the middle
  shift = preprocess.parse("random_shift(2)")
  shifted = np.asarray(shift({"image": images}, jax.random.PRNGKey(0))["image"])
  assert shifted.shape == images.shape
  assert np.all(shifted.sum(axis=(1, 2, 3)) == 4)  # moved by at most 2: the square stays whole
  positions = {tuple(np.argwhere(s[..., 0])[0]) for s in shifted}
  assert len(positions) > 5 and all(0 <= r <= 4 and 0 <= c <= 4 for r, c in positions)
  np.testing.assert_array_equal(
      preprocess.parse("random_shift(0)")({"image": images}, jax.random.PRNGKey(0))["image"], images)


def test_preprocess_spec_errors():
  with pytest.raises(errors.ConfigError, match="unknown preprocessing op 'scael'.*known: binarize"):
    preprocess.parse("scael(0, 1)")
  with pytest.raises(errors.ConfigError, match="cannot parse"):
    preprocess.parse("scale[0]")


def test_train_batches_are_a_function_of_seed_and_step():
  arrays = {"x": np.arange(100), "y": np.arange(100) * 2}
  batches = pipeline.TrainBatches(arrays, global_batch_size=16, seed=3)
  assert batches.steps_per_epoch == 6
  epoch = np.concatenate([batches.indices(s) for s in range(6)])
  assert len(np.unique(epoch)) == 96  # no example twice in an epoch
  again = pipeline.TrainBatches(arrays, 16, seed=3)
  for step in [7, 0, 13, 6]:  # any order: the batch depends only on the step
    np.testing.assert_array_equal(batches.local_batch(step)["x"], again.local_batch(step)["x"])
  np.testing.assert_array_equal(batches.local_batch(7)["y"], 2 * batches.local_batch(7)["x"])
  assert not np.array_equal(batches.indices(0), batches.indices(6))  # reshuffled per epoch
  other_seed = pipeline.TrainBatches(arrays, 16, seed=4)
  assert not np.array_equal(batches.indices(0), other_seed.indices(0))


def test_eval_batches_cover_the_split_once_with_a_mask():
  arrays = {"x": np.arange(1, 11, dtype=np.int32)}
  batches = pipeline.eval_batches(arrays, global_batch_size=4)
  assert [b["x"].shape for b in batches] == [(4,)] * 3
  mask = np.concatenate([b["mask"] for b in batches])
  values = np.concatenate([b["x"] for b in batches])
  np.testing.assert_array_equal(mask, [1] * 10 + [0] * 2)
  np.testing.assert_array_equal(values[mask == 1], arrays["x"])


def test_digits_loads_through_tfds_with_disjoint_splits(data_dir):
  config = load_config("vae", data_dir=data_dir)
  train = pipeline.load_split(config.data, config.data.train_split)
  val = pipeline.load_split(config.data, config.data.val_split)
  test = pipeline.load_split(config.data, config.data.test_split)
  full = pipeline.load_split(config.data, "train")
  assert train["image"].shape[1:] == (8, 8, 1) and train["image"].dtype == np.uint8
  assert len(full["image"]) == 1437 and len(test["image"]) == 360
  # train[:90%] and train[90%:] partition train: validation never overlaps training.
  assert len(train["image"]) + len(val["image"]) == len(full["image"])
  np.testing.assert_array_equal(np.concatenate([train["image"], val["image"]]), full["image"])
  np.testing.assert_array_equal(np.concatenate([train["label"], val["label"]]), full["label"])
  assert set(np.unique(test["label"])) == set(range(10))


def test_mock_mnist_trains_end_to_end(mock_tfds, tmp_path):
  config = load_config("cnn", arg=None, total_steps=4, log_every_steps=2, batch_size=16,
                       eval_batch_size=32, eval_every_steps=4, checkpoint_every_steps=4)
  results = loop.train_and_evaluate(config, str(tmp_path))
  assert 0.0 <= results["test/accuracy"] <= 1.0 and np.isfinite(results["val/loss"])
  assert "gate_passed" in results  # the MNIST config gates on test accuracy


def test_resnet_trains_on_cifar10_by_name(mock_tfds, tmp_path):
  """CIFAR-10 (32x32x3) by its TFDS name, with random images of the real features."""
  config = load_config("resnet", arg="cifar10", total_steps=2, log_every_steps=1, batch_size=8,
                       eval_batch_size=32, eval_every_steps=2, checkpoint_every_steps=2,
                       **{"model.stage_sizes": (1, 1, 1), "model.width": 4})
  assert config.data.name == "cifar10"
  results = loop.train_and_evaluate(config, str(tmp_path))
  assert 0.0 <= results["test/accuracy"] <= 1.0 and np.isfinite(results["val/loss"])
  spec = json.load(open(tmp_path / "input_spec.json"))
  assert spec["image"][0] == [32, 32, 3]


def test_missing_dataset_is_a_clear_error(tmp_path):
  config = load_config("cnn", arg=None, data_dir=str(tmp_path))
  config.data.download = False
  with pytest.raises(pipeline.DatasetUnavailableError) as e:
    pipeline.load_split(config.data, "train")
  message = str(e.value)
  assert "'mnist' is not prepared" in message and str(tmp_path) in message
  assert "TFDS_DATA_DIR" in message and "digits" in message
  config.data.name = "no_such_dataset"
  with pytest.raises(pipeline.DatasetUnavailableError, match="unknown dataset 'no_such_dataset'"):
    pipeline.load_split(config.data, "train")
  config.data.name = "digits"
  with pytest.raises(pipeline.DatasetUnavailableError, match="split='validation' is not a split of 'digits'"):
    pipeline.load_split(config.data, "validation")
