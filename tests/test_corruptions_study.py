"""The corruption-robustness study end to end on digits28 (the bundled digits at 28x28): the
per-corruption errors are those of the corrupted test images, averaged over seeds with
their intervals; the mean corruption error and its baseline-relative form."""
import csv
import importlib
import os

import numpy as np
import pytest
import scipy.stats
import tensorflow_datasets as tfds

from research.data import corruptions
from research.studies import base, corruptions as corruptions_study
from research.train import restore

CORRUPTIONS = ("stripe", "rotate", "impulse_noise")


@pytest.fixture(scope="module")
def study(data_dir, tmp_path_factory):
  config = importlib.import_module("configs.studies.corruptions").get_config("digits")
  config.classifiers, config.contrast, config.generative = ("mlp",), (), ()
  config.baseline, config.seeds, config.corruptions = "mlp", (0, 1), CORRUPTIONS
  config.data_dir, config.total_steps = data_dir, 10
  directory = str(tmp_path_factory.mktemp("corruptions"))
  summary = base.run_study(config, directory)
  runs = list(csv.DictReader(open(os.path.join(directory, "runs.csv"))))
  return config, directory, summary, runs


def read(directory: str, name: str) -> list[dict]:
  return list(csv.DictReader(open(os.path.join(directory, f"{name}.csv"))))


def interval(values) -> float:
  low, high = scipy.stats.t.interval(0.95, len(values) - 1, loc=np.mean(values),
                                     scale=scipy.stats.sem(values))
  return (high - low) / 2


def test_the_config_lists_every_corruption():
  config = importlib.import_module("configs.studies.corruptions")
  assert config.CORRUPTIONS == tuple(corruptions.CORRUPTIONS)
  assert len(config.get_config("mnist").corruptions) == 15


def test_each_corruption_row_is_the_mean_error_over_seeds_with_its_interval(study):
  _, directory, summary, runs = study
  assert summary["runs"] == 2 and len(runs) == 2
  rows = read(directory, "corruptions")
  assert [r["corruption"] for r in rows] == ["clean", *CORRUPTIONS]
  for row in rows:
    errors = [float(r[f"{row['corruption']}/error"]) for r in runs]
    assert float(row["test_error"]) == pytest.approx(np.mean(errors))
    if np.std(errors) > 0:
      assert float(row["test_error_ci95"]) == pytest.approx(interval(errors))
  assert os.path.getsize(os.path.join(directory, "corruptions.png")) > 10_000


def test_the_reported_errors_are_those_of_the_corrupted_test_images(study, data_dir):
  """stripe is deterministic: the run's own model on stripe(test images) gives its error."""
  _, directory, _, runs = study
  test = tfds.as_numpy(tfds.builder("digits28", data_dir=data_dir).as_dataset(
      split="test", batch_size=-1))
  run = restore.restore(os.path.join(directory, runs[0]["workdir"]))
  for name, images in (("clean", test["image"]),
                       ("stripe", corruptions.stripe(test["image"], 0))):
    predicted = np.asarray(run.predict("probs", {"image": images})).argmax(-1)
    assert float(runs[0][f"{name}/error"]) == pytest.approx(np.mean(predicted != test["label"]))
  assert float(runs[0]["stripe/error"]) != float(runs[0]["clean/error"])


def test_the_summary_is_the_mean_corruption_error_and_relative_to_the_baseline(study):
  _, directory, summary, runs = study
  (row,) = read(directory, "summary")
  per_seed = [np.mean([float(r[f"{c}/error"]) for c in CORRUPTIONS]) for r in runs]
  assert float(row["mce"]) == pytest.approx(np.mean(per_seed))
  assert float(row["mce_ci95"]) == pytest.approx(interval(per_seed))
  clean = [float(r["clean/error"]) for r in runs]
  assert float(row["mean_error_increase"]) == pytest.approx(np.mean(per_seed) - np.mean(clean))
  assert float(row["relative_mce"]) == pytest.approx(1.0)  # the baseline against itself
  assert summary["mlp_mce"] == pytest.approx(float(row["mce"]))


def test_run_summary_follows_mnist_c_and_imagenet_c():
  results = {"clean/error": 0.01, "fog/error": 0.3, "rotate/error": 0.1}
  out = corruptions_study.run_summary(results, ("fog", "rotate"), {"fog": 0.6, "rotate": 0.05})
  assert out["mce"] == pytest.approx(0.2) and out["mean_error_increase"] == pytest.approx(0.19)
  assert out["relative_mce"] == pytest.approx((0.5 + 2.0) / 2)


def test_rerunning_the_study_reuses_every_run(study):
  config, directory, _, _ = study
  again = base.run_study(config, directory)
  assert again["runs"] == again["reused"] == 2
