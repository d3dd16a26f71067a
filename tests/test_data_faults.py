"""Damaged data is never used silently: a cache entry unlike its dataset is reread, labels
a classifier cannot hold, damaged prepared files and a data_dir that is a file are each one
line (a UserError), and nothing of a failed read is cached or trained on."""
import glob
import logging
import os
import shutil

import numpy as np
import pytest

from research import errors
from research.data import cache, pipeline, splits
from tests.conftest import (assert_one_line_failure, error_lines, load_config, run_launcher,
                            stderr_summary)

SPLIT = "train[:90%]"  # the configs' train_split: 1,293 of digits' 1,437 training images


def data_config(data_dir, cache_dir=""):
  config = load_config("vae", data_dir=str(data_dir)).data
  config.cache_dir = str(cache_dir)
  return config


def one_line(error) -> str:
  message = str(error.value)
  assert "\n" not in message, message
  return message


@pytest.fixture(scope="module")
def prepared(data_dir):
  """The session's data dir, with digits prepared in it."""
  pipeline.get_builder("digits", data_dir, download=False)
  return data_dir


@pytest.fixture(scope="module")
def cached(prepared, tmp_path_factory):
  """``(cache_dir, entry file name, arrays)`` of SPLIT read once through TFDS."""
  cache_dir = tmp_path_factory.mktemp("cache")
  arrays = pipeline.load_split(data_config(prepared, cache_dir), SPLIT)
  (entry,) = os.listdir(cache_dir)
  return cache_dir, entry, arrays


@pytest.fixture
def damaged_copy(prepared, tmp_path):
  """A data dir holding a copy of the prepared digits, to damage; and its version folder."""
  copy = tmp_path / "tfds"
  shutil.copytree(os.path.join(prepared, "digits"), copy / "digits")
  (version,) = (copy / "digits").iterdir()
  return copy, version


def train_record(version) -> str:
  (path,) = glob.glob(os.path.join(version, "digits-train.tfrecord*"))
  return path


def relabel_first_example(version, label: int) -> None:
  """Rewrites the train split's first example with ``label``: what TFDS itself never
  writes for a ClassLabel outside its classes."""
  tf = pipeline.tensorflow_for_data()
  path = train_record(version)
  records = [r.numpy() for r in tf.data.TFRecordDataset(path)]
  example = tf.train.Example.FromString(records[0])
  example.features.feature["label"].int64_list.value[:] = [label]
  records[0] = example.SerializeToString()
  with tf.io.TFRecordWriter(path) as writer:
    for record in records:
      writer.write(record)


def truncate(path) -> None:
  with open(path, "rb") as f:
    content = f.read()
  with open(path, "wb") as f:
    f.write(content[:len(content) // 2])


def cached_copy(cached, tmp_path, damage=None) -> tuple[str, str]:
  """A cache dir holding a copy of the module's entry, with ``damage(arrays)`` applied."""
  source, entry, arrays = cached
  cache_dir = tmp_path / "cache"
  cache_dir.mkdir()
  path = str(cache_dir / entry)
  if damage is None:
    shutil.copy(source / entry, path)
  else:
    with open(path, "wb") as f:
      np.savez(f, **damage(dict(arrays)))
  return str(cache_dir), path


DAMAGED_ENTRIES = {
    "float32 images": (lambda a: {**a, "image": a["image"].astype(np.float32)},
                       "image is float32, the dataset's is uint8"),
    "cut to 200 examples": (lambda a: {k: v[:200] for k, v in a.items()},
                            "200 examples, the split has 1293"),
    "images of another shape": (lambda a: {**a, "image": a["image"][..., 0]},
                                "image is (8, 8) per example, the dataset's is (8, 8, 1)"),
    "a label outside the classes": (lambda a: {**a, "label": np.where(np.arange(len(a["label"]))
                                                                        == 3, 10, a["label"])},
                                    "label holds [10], outside its 10 classes 0..9"),
}


@pytest.mark.parametrize("case", sorted(DAMAGED_ENTRIES))
def test_a_cache_entry_unlike_its_dataset_is_reread(case, prepared, cached, tmp_path, caplog):
  damage, difference = DAMAGED_ENTRIES[case]
  cache_dir, path = cached_copy(cached, tmp_path, damage)
  with caplog.at_level(logging.WARNING):
    arrays = pipeline.load_split(data_config(prepared, cache_dir), SPLIT)
  warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
  assert len(warnings) == 1 and path in warnings[0] and difference in warnings[0], warnings
  assert "rereading" in warnings[0]
  expected = cached[2]
  for name in expected:
    assert arrays[name].dtype == expected[name].dtype
    np.testing.assert_array_equal(arrays[name], expected[name])
  rewritten = cache.load(path, expected)
  assert rewritten["image"].dtype == np.uint8 and len(rewritten["image"]) == 1293
  assert sorted(os.listdir(cache_dir)) == [os.path.basename(path)]  # no temporary files left


def test_an_intact_cache_entry_is_used_without_a_warning(prepared, cached, tmp_path, caplog,
                                                         monkeypatch):
  cache_dir, _ = cached_copy(cached, tmp_path)
  monkeypatch.setattr(pipeline, "read_split", None)  # any read through TFDS would fail
  with caplog.at_level(logging.WARNING):
    arrays = pipeline.load_split(data_config(prepared, cache_dir), SPLIT)
  assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
  np.testing.assert_array_equal(arrays["image"], cached[2]["image"])


def test_labels_outside_the_classifiers_classes_are_refused(prepared):
  data = splits.RunData(data_config(prepared), None, 100, num_classes=5)
  with pytest.raises(errors.UserError) as error:
    data.arrays("train")
  message = one_line(error)
  for fragment in ["data.train_split='train[:90%]' of 'digits'", "label(s) [5, 6, 7, 8, 9]",
                   "model.num_classes=5", "at least 10"]:
    assert fragment in message, message
  with pytest.raises(errors.UserError) as error:
    splits.check_labels(np.array([0, -1, 2, 3]), 4, "data.test_split='test' of 'digits'")
  message = one_line(error)
  for fragment in ["data.test_split='test' of 'digits'", "label(s) [-1]", "unlabeled"]:
    assert fragment in message, message
  assert splits.RunData(data_config(prepared), None, 100, num_classes=10).arrays("val")
  # Out-of-distribution data (ood_report's sets) may carry any labels; the same split read
  # as the run's own is still checked.
  ood = data.arrays("train", any_labels=True)
  assert ood["label"].max() == 9
  with pytest.raises(errors.UserError, match="model.num_classes=5"):
    data.arrays("train")


def test_a_label_outside_the_datasets_classes_in_its_files(damaged_copy, tmp_path):
  copy, version = damaged_copy
  relabel_first_example(version, 10)
  config = data_config(copy, tmp_path / "cache")
  with pytest.raises(errors.UserError) as error:
    pipeline.load_split(config, SPLIT, "train_split")
  message = one_line(error)
  for fragment in ["data.train_split='train[:90%]' of dataset 'digits'",
                   "label holds [10], outside its 10 classes 0..9", "damaged", str(version)]:
    assert fragment in message, message
  assert not (tmp_path / "cache").exists()


def test_a_truncated_record_file_is_one_line_and_caches_nothing(damaged_copy, tmp_path):
  copy, version = damaged_copy
  truncate(train_record(version))
  config = data_config(copy, tmp_path / "cache")
  with pytest.raises(errors.UserError) as error:
    pipeline.load_split(config, SPLIT, "train_split")
  message = one_line(error)
  for fragment in ["data.train_split='train[:90%]'", "dataset 'digits'", str(version),
                   "are damaged (DataLossError: truncated record", f"delete {version} and rerun"]:
    assert fragment in message, message
  assert not (tmp_path / "cache").exists()
  assert len(pipeline.load_split(config, "test")["image"]) == 360  # its other split reads


def test_a_malformed_dataset_info_is_one_line(damaged_copy):
  copy, version = damaged_copy
  truncate(version / "dataset_info.json")
  with pytest.raises(errors.UserError) as error:
    pipeline.load_split(data_config(copy), SPLIT)
  message = one_line(error)
  for fragment in [f"{version / 'dataset_info.json'} cannot be read", "dataset 'digits' is damaged",
                   f"delete {version} and rerun"]:
    assert fragment in message, message


def test_a_data_dir_that_is_a_file_is_one_line(tmp_path):
  (tmp_path / "a_file").write_text("not a folder")
  for data_dir in [tmp_path / "a_file", tmp_path / "a_file" / "tfds"]:
    with pytest.raises(errors.UserError) as error:
      pipeline.load_split(data_config(data_dir), SPLIT)
    message = one_line(error)
    for fragment in [f"data.data_dir='{data_dir}' is not a folder",
                     f"({tmp_path / 'a_file'} is a file)", "point it at the folder"]:
      assert fragment in message, message
  assert (tmp_path / "a_file").read_text() == "not a folder"


LAUNCHER_CASES = {  # (damage of the prepared digits, fragments of the error line)
    "truncated record file": (lambda version: truncate(train_record(version)),
                              ["data.train_split='train[:90%]'", "'digits'",
                               "are damaged (DataLossError", "delete "]),
    "label outside the classes": (lambda version: relabel_first_example(version, 10),
                                  ["data.train_split='train[:90%]'", "'digits'",
                                   "label holds [10], outside its 10 classes", "damaged"]),
    "malformed dataset_info.json": (lambda version: truncate(version / "dataset_info.json"),
                                    ["dataset_info.json cannot be read",
                                     "dataset 'digits' is damaged"]),
}


@pytest.mark.parametrize("case", sorted(LAUNCHER_CASES))
def test_damaged_data_stops_the_launcher_before_training(case, damaged_copy, tmp_path):
  damage, fragments = LAUNCHER_CASES[case]
  copy, version = damaged_copy
  damage(version)
  workdir = tmp_path / "run"
  proc = run_launcher("--config=logreg:digits", "--config.total_steps=60",
                      f"--config.data.data_dir={copy}",
                      f"--config.data.cache_dir={tmp_path / 'cache'}", f"--workdir={workdir}")
  assert_one_line_failure(proc, 2, *fragments)
  assert not (workdir / "checkpoints").exists()
  assert not (tmp_path / "cache").exists()


def test_a_data_dir_that_is_a_file_stops_the_launcher(tmp_path):
  (tmp_path / "a_file").write_text("not a folder")
  proc = run_launcher("--config=logreg:digits", f"--config.data.data_dir={tmp_path / 'a_file'}",
                      f"--workdir={tmp_path / 'run'}")
  assert proc.returncode == 2, stderr_summary(proc.stderr)
  assert "Traceback" not in proc.stderr + proc.stdout
  lines = error_lines(proc)
  assert len(lines) == 1 and "is not a folder" in lines[0], stderr_summary(proc.stderr)
  assert not (tmp_path / "run").exists()
