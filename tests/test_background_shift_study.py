"""The background-shift study end to end on digits28 on coloured backgrounds: accuracy on
the biased val and the unbiased test split, the test split's bias-aligned and
bias-conflicting groups, means over seeds with their intervals, the RGB Bayes classifier."""
import csv
import importlib
import json
import os

import numpy as np
import pytest
import scipy.stats
import tensorflow_datasets as tfds

from research.evaluators import group_accuracy
from research.studies import base

DATASET = "background_shift/digits28_colors_rho99"


@pytest.fixture(scope="module")
def study(data_dir, tmp_path_factory):
  config = importlib.import_module("configs.studies.background_shift").get_config("digits")
  config.kinds, config.rhos, config.classifiers = ("colors",), (0.99,), ("mlp",)
  config.seeds, config.data_dir, config.total_steps = (0, 1), data_dir, 10
  config.class_samples = 1  # the Bayes classifier's evaluations in seconds
  directory = str(tmp_path_factory.mktemp("background_shift"))
  summary = base.run_study(config, directory)
  runs = list(csv.DictReader(open(os.path.join(directory, "runs.csv"))))
  rows = list(csv.DictReader(open(os.path.join(directory, "background_shift.csv"))))
  return config, directory, summary, runs, rows


def test_group_accuracies_split_the_examples_by_their_bias():
  predicted, labels = np.array([0, 1, 2, 2, 0]), np.array([0, 1, 1, 2, 1])
  background = np.array([0, 1, 1, 0, 2])  # aligned: examples 0, 1, 2
  out = group_accuracy.group_accuracies(predicted, labels, background)
  assert out["accuracy"] == pytest.approx(3 / 5) and out["error"] == pytest.approx(2 / 5)
  assert out["aligned_accuracy"] == pytest.approx(2 / 3)
  assert out["conflicting_accuracy"] == pytest.approx(1 / 2)
  assert (out["aligned_examples"], out["conflicting_examples"]) == (3, 2)
  assert set(group_accuracy.group_accuracies(predicted, labels)) == {"accuracy", "error",
                                                                     "examples"}


def test_the_table_has_a_row_per_model_with_means_and_intervals_over_seeds(study):
  _, _, summary, runs, rows = study
  assert summary["runs"] == 4
  assert [(r["source"], r["kind"], r["rho"], r["config"]) for r in rows] == [
      ("digits28", "colors", "0.99", "mlp"), ("digits28", "colors", "0.99", "cvae")]
  for row in rows:
    mine = [r for r in runs if r["config"] == row["config"]]
    assert row["seeds"] == "2" and len(mine) == 2
    for key, column in (("test/accuracy", "test_accuracy"), ("val_groups/accuracy",
                                                            "val_accuracy"),
                        ("test/conflicting_accuracy", "conflicting_accuracy")):
      values = [float(r[key]) for r in mine]
      assert float(row[column]) == pytest.approx(np.mean(values))
      if np.std(values) > 0:
        low, high = scipy.stats.t.interval(0.95, 1, loc=np.mean(values),
                                           scale=scipy.stats.sem(values))
        assert float(row[f"{column}_ci95"]) == pytest.approx((high - low) / 2)
  assert summary["digits28_colors_rho99_cvae_minus_mlp_points"] == pytest.approx(
      100 * (float(rows[1]["test_accuracy"]) - float(rows[0]["test_accuracy"])))


def test_aligned_and_conflicting_groups_partition_the_unbiased_test_split(study, data_dir):
  _, _, _, runs, rows = study
  test = tfds.as_numpy(tfds.builder(DATASET, data_dir=data_dir).as_dataset(
      split="test", batch_size=-1))
  aligned = int(np.sum(test["background"] == test["label"]))
  assert 0 < aligned < 0.2 * len(test["label"])  # unbiased: about 1 in 10
  for row in rows:
    assert int(row["aligned_examples"]) == aligned
    assert int(row["aligned_examples"]) + int(row["conflicting_examples"]) == len(test["label"])
  for run in runs:  # the split's accuracy is the groups' weighted by their sizes
    weighted = (float(run["test/aligned_accuracy"]) * float(run["test/aligned_examples"])
                + float(run["test/conflicting_accuracy"])
                * float(run["test/conflicting_examples"])) / len(test["label"])
    assert float(run["test/accuracy"]) == pytest.approx(weighted)


def test_the_generative_classifier_models_rgb_levels(study):
  _, directory, _, runs, _ = study
  for run in runs:
    config = json.load(open(os.path.join(directory, run["workdir"], "config.json")))
    assert config["data"]["name"] == DATASET
    assert config["data"]["val_split"] == "val" and "background" in config["data"]["features"]
    if run["config"] == "cvae":
      assert config["task"]["likelihood"] == "logistic"
      assert config["data"]["preprocess"] == "scale(0, 1)"  # no binarization of colours
      assert config["task"]["name"] == "generative_classifier"
      assert config["task"]["class_samples"] == 1


def test_outputs_and_rerun(study):
  config, directory, _, _, _ = study
  margin = list(csv.DictReader(open(os.path.join(directory, "margin.csv"))))
  assert [(m["generative"], m["discriminative"]) for m in margin] == [("cvae", "mlp")]
  assert os.path.getsize(os.path.join(directory, "background_shift.png")) > 10_000
  again = base.run_study(config, directory)
  assert again["runs"] == again["reused"] == 4
