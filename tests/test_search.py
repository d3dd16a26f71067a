"""Hyperparameter search with cross-validation (research/studies/search.py) on digits: the
search runs and writes its outputs, each objective is the mean of its folds' results, the
folds partition the training split, a killed trial is retried and the budget is met exactly,
also by two processes on one SQLite study, and the test split is read once, at the end."""
import datetime
import importlib
import json
import os
import subprocess
import sys
import time
from unittest import mock

import numpy as np
import pytest

from tests.conftest import ROOT, stderr_summary

def search_config(data_dir, total_steps=20, num_trials=3, num_folds=2, **search):
  config = importlib.import_module("configs.studies.search").get_config("logreg,digits")
  config.data_dir, config.total_steps = data_dir, total_steps
  config.search.num_trials, config.search.num_folds = num_trials, num_folds
  config.search.update(search)
  return config


def load_study(directory):
  import optuna
  return optuna.load_study(study_name="search", storage=f"sqlite:///{directory}/search.db")


def finished(study):
  from optuna.trial import TrialState
  return [t for t in study.get_trials() if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]


@pytest.fixture(scope="module")
def searched(data_dir, tmp_path_factory):
  """A search of 3 trials, 2 folds; every load_split call recorded with its time."""
  from research.data import pipeline
  from research.studies import base
  directory = str(tmp_path_factory.mktemp("search"))
  reads, load = [], pipeline.load_split

  def recording(config, split, field="split"):
    reads.append((split, datetime.datetime.now()))
    return load(config, split, field)

  with mock.patch.object(pipeline, "load_split", recording):
    summary = base.run_study(search_config(data_dir), directory)
  return directory, summary, reads


def test_the_search_writes_its_outputs(searched):
  directory, summary, _ = searched
  assert summary["trials"] == 3 and summary["complete"] + summary["pruned"] == 3
  for name in ("trials.csv", "trials.md", "history.png", "importance.png", "best_config.py",
               "search.md", "search.csv", "search.db"):
    assert os.path.getsize(os.path.join(directory, name)) > 0, name
  rows = open(os.path.join(directory, "trials.csv")).read().splitlines()
  assert rows[0].startswith("number,state,objective,batch_size,optimizer.learning_rate,task.l2,")
  assert len(rows) == 4
  table = open(os.path.join(directory, "search.md")).read()
  assert "cv_val/accuracy" in table and "test/accuracy" in table
  assert summary["test/accuracy"] > 0 and summary["gate_passed"]


def test_the_objective_is_the_mean_of_the_folds_results(searched):
  directory, summary, _ = searched
  study = load_study(directory)
  for trial in finished(study):
    scores = [json.load(open(os.path.join(directory, w, "results.json")))["val/accuracy"]
              for w in trial.user_attrs["workdirs"]]
    assert len(scores) == (2 if trial.state.name == "COMPLETE" else len(scores))
    assert trial.user_attrs["fold_scores"] == pytest.approx(scores)
    if trial.state.name == "COMPLETE":
      assert trial.value == pytest.approx(np.mean(scores))
    # A fold run evaluates only its own folds and has no gate.
    config = json.load(open(os.path.join(directory, trial.user_attrs["workdirs"][0],
                                         "config.json")))
    assert sorted(config["evals"]) == ["val"] and config["gate"] == ""
    assert config["data"]["folds"]["num_folds"] == 2
  best = study.best_trial
  assert summary["best_trial"] == best.number
  assert summary["cv_mean"] == pytest.approx(best.value)


def test_the_test_split_is_read_once_after_the_search(searched):
  directory, _, reads = searched
  tests = [when for split, when in reads if split == "test"]
  assert len(tests) == 1
  assert {split for split, _ in reads} == {"train[:90%]", "train[90%:]", "test"}
  last_trial = max(t.datetime_complete for t in load_study(directory).get_trials())
  assert tests[0] > last_trial
  # Only the final run read the val split: the fold runs' val is a fold of the train split.
  assert [split for split, _ in reads].count("train[90%:]") == 1


def test_the_best_config_is_a_config_the_launcher_accepts(searched):
  from research.cli import overrides
  from research.studies import base
  directory, summary, _ = searched
  best = overrides.load(os.path.join(directory, "best_config.py"), None)
  # It is the config the search retrained: its results are in that run's workdir.
  workdir = base.run_workdir(directory, base.Run("best", best, {}))
  results = json.load(open(os.path.join(workdir, "results.json")))
  assert results["test/accuracy"] == pytest.approx(summary["test/accuracy"])


def test_folds_are_a_stratified_partition_of_the_train_split():
  import ml_collections
  from research.data import pipeline, splits
  labels = np.repeat(np.arange(4), [30, 20, 10, 12])
  raw = {"image": np.arange(len(labels))[:, None], "label": labels}
  data_config = importlib.import_module("configs.logreg").get_config("digits").data
  data_config.folds = splits.folds_config(3, 0, seed=1)
  seen, vals = [], []
  with mock.patch.object(pipeline, "load_split", return_value=raw) as load:
    for fold in range(3):
      config = ml_collections.ConfigDict(data_config.to_dict())
      config.folds.fold = fold
      data = splits.RunData(config, None, 100)
      train, val = (data.arrays(s)["image"][:, 0] for s in ("train", "val"))
      assert not set(train) & set(val) and sorted([*train, *val]) == list(range(len(labels)))
      counts = np.bincount(labels[val], minlength=4)
      assert np.all(np.abs(counts - np.bincount(labels, minlength=4) / 3) <= 1)  # stratified
      vals.append(val)
      seen.append([call.args[1] for call in load.call_args_list])
  assert sorted(np.concatenate(vals)) == list(range(len(labels)))  # each example: one val fold
  assert all(s == ["train[:90%]"] * (i + 1) for i, s in enumerate(seen))  # read once per run


@pytest.mark.parametrize("text", ["loguniform(1e-4)", "uniform(0, x)", "int(1.5, 3)",
                                  "gaussian(0, 1)", "categorical()", "loguniform(0, 1",
                                  "loguniform(-1, 1)"])
def test_a_space_that_does_not_parse_is_one_line(text):
  from research import errors
  from research.studies import search
  config = search_config(None)
  config.search.space.optimizer.learning_rate = text
  with pytest.raises(errors.ConfigError) as e:
    search.Study(config)
  assert "\n" not in str(e.value) and "search.space.optimizer.learning_rate" in str(e.value)


def test_a_field_the_base_config_lacks_is_one_line(tmp_path):
  from research import errors
  from research.studies import base
  import ml_collections
  config = search_config(None)
  config.search.space.model = ml_collections.ConfigDict({"widht": "int(1, 4)"})
  with pytest.raises(errors.ConfigError, match="no field 'model.widht'"):
    base.run_study(config, str(tmp_path))


def test_a_killed_trial_is_retried_and_the_budget_is_met(data_dir, tmp_path):
  """A trial left RUNNING by a killed process (its heartbeat stops) is failed and rerun
  with its values; the search still ends with exactly its budget."""
  from research.studies import base, search
  directory = str(tmp_path)
  config = search_config(data_dir, total_steps=10, num_trials=2, heartbeat_s=1, grace_s=2)
  study_lib = search.Study(config)
  study = study_lib.open_study(directory)
  killed = study_lib.claim(study)  # the process that took it dies: no tell, no more beats
  study._storage.record_heartbeat(killed._trial_id)
  # Its first fold ran to the end before the kill: the retry reuses it.
  values = study_lib.values(killed.params)
  fold0 = base.Run("fold0", study_lib.fold_config(values, 0), {})
  base.execute(fold0, base.run_workdir(directory, fold0))
  time.sleep(2.5)
  summary = base.run_study(config, directory)
  study = load_study(directory)
  states = {t.number: t.state.name for t in study.get_trials()}
  assert states[killed.number] == "FAIL" and len(finished(study)) == 2 == summary["trials"]
  retry = next(t for t in study.get_trials()
               if t.system_attrs.get("failed_trial") == killed.number)
  assert retry.params == killed.params and retry.state.name in ("COMPLETE", "PRUNED")
  assert retry.user_attrs["workdirs"][0] == os.path.relpath(base.run_workdir(directory, fold0),
                                                            directory)


def test_two_processes_share_one_study_and_its_budget(searched, data_dir, tmp_path):
  # (after ``searched``: digits is prepared in data_dir, not by both processes at once)
  directory = str(tmp_path / "shared")
  args = [sys.executable, os.path.join(ROOT, "launch.py"), "--config=studies/search:logreg,digits",
          f"--workdir={directory}", f"--config.data_dir={data_dir}", "--config.total_steps=10",
          "--config.search.num_trials=3", "--config.search.num_folds=2"]
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
  procs = [subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True) for _ in range(2)]
  outs = [p.communicate(timeout=400) for p in procs]
  for p, (out, err) in zip(procs, outs):
    assert p.returncode == 0, stderr_summary(err)
  study = load_study(directory)
  assert len(finished(study)) == 3  # exactly the budget, between them
  ran = [float(next(x for x in out.split("results: ")[1].split(", ") if x.startswith("ran_here"))
               .split("=")[1]) for out, _ in outs]
  assert sum(ran) == 3  # each trial ran in one of them
  # The best run was trained once; the other process read its results.
  assert sum("retrained on the training split (reused)" in out for out, _ in outs) == 1
  assert len([w for w in os.listdir(os.path.join(directory, "runs")) if w.startswith("best-")]) == 1


def test_a_trial_asked_past_the_budget_is_given_up(tmp_path):
  """Two processes that both saw one trial left both ask; the later-numbered one gives up."""
  from research.studies import search
  config = search_config(None, num_trials=1)
  study_lib = search.Study(config)
  study = study_lib.open_study(str(tmp_path))
  first = study_lib.claim(study)  # the other process's trial
  real, calls = study.get_trials, []

  def stale_view(*args, **kwargs):  # this process counted before the other one asked
    calls.append(1)
    return [] if len(calls) == 1 else real(*args, **kwargs)

  with mock.patch.object(study, "get_trials", stale_view):
    assert study_lib.claim(study) is None
  states = [t.state.name for t in real()]
  assert first.number == 0 and states == ["RUNNING", "FAIL"]
  assert real()[1].user_attrs["over_budget"] and study_lib.claim(study) is None


def test_a_rerun_after_the_budget_only_retests_and_the_gate_decides(searched, data_dir):
  """A finished search rerun with a gate the best config misses: no trial runs, the
  final run (a new one: its gate differs) fails the gate."""
  from research.studies import base
  directory, first, _ = searched
  config = search_config(data_dir)
  config.gate = "test/accuracy>=0.9999"
  summary = base.run_study(config, directory)
  assert summary["ran_here"] == 0 and summary["best_trial"] == first["best_trial"]
  assert summary["gate_passed"] is False  # launch.py exits with status 1
  assert "config.gate = 'test/accuracy>=0.9999'" in open(os.path.join(directory,
                                                                     "best_config.py")).read()
