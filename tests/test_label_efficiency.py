"""The label-efficiency study end to end on digits: the same labelled subset for every
family, the table's means and intervals over draws, the crossover and the plot."""
import csv
import importlib
import json
import os

import numpy as np
import pytest
import scipy.stats

from research.data import splits
from research.studies import base, label_efficiency


@pytest.fixture(scope="module")
def study(data_dir, tmp_path_factory):
  config = importlib.import_module("configs.studies.label_efficiency").get_config("digits")
  config.labels, config.draws, config.supervised = (3, 0), (0, 1), ("logreg",)
  config.latent_semi_supervised = ()  # its runs' order and inputs: the test below
  config.data_dir, config.total_steps = data_dir, 20
  directory = str(tmp_path_factory.mktemp("label_efficiency"))
  summary = base.run_study(config, directory)
  runs = list(csv.DictReader(open(os.path.join(directory, "runs.csv"))))
  return directory, summary, runs


def test_every_family_sees_the_same_labelled_subset_of_a_draw(study):
  directory, summary, runs = study
  assert summary["runs"] == 12
  subsets = {}
  for run in runs:
    path = os.path.join(directory, run["workdir"], splits.LABELLED_FILE)
    if run["labels"] == "0":  # every label: no subset drawn
      assert not os.path.exists(path)
      continue
    record = json.load(open(path))
    assert record["labelled_per_class"] == 3 and len(record["rows"]) == 30
    subsets.setdefault(run["draw"], set()).add(tuple(record["rows"]))
  assert all(len(rows) == 1 for rows in subsets.values())  # logreg, cvae and m2 agree
  assert subsets["0"] != subsets["1"]  # another draw, another subset


def test_the_table_is_the_mean_over_draws_with_its_interval(study):
  directory, _, runs = study
  rows = list(csv.DictReader(open(os.path.join(directory, "label_efficiency.csv"))))
  assert {(r["config"], r["labels_per_class"]) for r in rows} == {
      (c, n) for c in ("logreg", "cvae", "m2") for n in ("3", "all")}
  for row in rows:
    labels = "0" if row["labels_per_class"] == "all" else row["labels_per_class"]
    accuracies = [float(r["test/accuracy"]) for r in runs
                  if r["config"] == row["config"] and r["labels"] == labels]
    assert len(accuracies) == 2 and float(row["test_accuracy"]) == pytest.approx(
        np.mean(accuracies))
    low, high = scipy.stats.t.interval(0.95, 1, loc=np.mean(accuracies),
                                       scale=scipy.stats.sem(accuracies))
    if low < high:
      assert float(row["test_accuracy_ci95"]) == pytest.approx((high - low) / 2)
  crossover = open(os.path.join(directory, "crossover.md")).read()
  assert "| digits | cvae | logreg |" in crossover
  assert os.path.getsize(os.path.join(directory, "label_efficiency_digits.png")) > 10_000


def test_m1m2_reads_the_m1_run_of_its_dataset_and_draw_trained_before_it(tmp_path):
  config = importlib.import_module("configs.studies.label_efficiency").get_config("digits")
  config.labels, config.draws, config.supervised, config.generative = (3, 0), (0, 1), (), ()
  study = label_efficiency.Study(config)
  runs = study.runs(str(tmp_path))
  m1 = {r.columns["draw"]: i for i, r in enumerate(runs) if r.columns["config"] == "m1"}
  assert sorted(m1) == [0, 1]
  for i, run in enumerate(runs):
    if run.columns["config"] == "m1m2":
      draw = run.columns["draw"]
      assert m1[draw] < i and run.config.data.labelled_seed == draw
      assert run.config.init_from.workdir == base.run_workdir(str(tmp_path), runs[m1[draw]])
  assert runs[m1[0]].config.model.hidden == (600, 600)  # Kingma et al.'s M1
  assert "m1" not in study.families()  # M1 is not a row of the table
