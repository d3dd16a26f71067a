"""Studies end to end on digits: every run in its own workdir, one table, and a rerun that
reuses finished runs and resumes unfinished ones."""
import json
import os

import pytest

from tests.conftest import run_launcher, stderr_summary


def zoo_config(data_dir, configs=("logreg", "mlp"), seeds=(0,)):
  import importlib
  config = importlib.import_module("configs.studies.classifier_zoo").get_config("digits")
  config.configs, config.seeds, config.data_dir, config.total_steps = configs, seeds, data_dir, 20
  return config


@pytest.fixture(scope="module")
def zoo(data_dir, tmp_path_factory):
  from research.studies import base
  directory = str(tmp_path_factory.mktemp("zoo"))
  return directory, base.run_study(zoo_config(data_dir, seeds=(0, 1)), directory)


def test_the_zoo_writes_its_tables(zoo):
  directory, summary = zoo
  assert summary["runs"] == 4 and summary["reused"] == 0
  rows = open(os.path.join(directory, "zoo.csv")).read().splitlines()
  assert rows[0] == "config,seeds,test_accuracy,test_accuracy_ci95,test_ece,test_ece_ci95,wall_s"
  assert [r.split(",")[0] for r in rows[1:]] == ["logreg", "mlp"]
  runs = open(os.path.join(directory, "runs.md")).read()
  assert runs.count("\n| logreg |") == 2 and "test/accuracy" in runs
  assert os.path.getsize(os.path.join(directory, "zoo.png")) > 0
  # Each run's row is its own results.json; the zoo's mean is their mean.
  workdirs = sorted(os.listdir(os.path.join(directory, "runs")))
  assert [w.rsplit("-", 1)[0] for w in workdirs] == ["logreg_seed0", "logreg_seed1", "mlp_seed0",
                                                     "mlp_seed1"]
  accuracy = [json.load(open(os.path.join(directory, "runs", w, "results.json")))["test/accuracy"]
              for w in workdirs[:2]]
  assert accuracy[0] != accuracy[1]  # two seeds, two runs
  logreg = rows[1].split(",")
  assert float(logreg[2]) == pytest.approx(sum(accuracy) / 2)
  assert float(logreg[3]) > 0  # a 95% interval from two seeds


def test_a_rerun_reuses_finished_runs_and_resumes_unfinished_ones(zoo, data_dir):
  from research.studies import base
  directory, first = zoo
  # An unfinished run: its results are gone, its checkpoints kept.
  mlp = next(w for w in os.listdir(os.path.join(directory, "runs")) if w.startswith("mlp_seed0"))
  workdir = os.path.join(directory, "runs", mlp)
  from research.train import workdir as workdir_lib
  before = workdir_lib.read_results(workdir)  # without the run's wall time
  os.remove(os.path.join(workdir, "results.json"))
  os.remove(os.path.join(workdir, base.RUN_INFO_FILE))
  again = base.run_study(zoo_config(data_dir, seeds=(0, 1)), directory)
  assert again["runs"] == 4 and again["reused"] == 3
  assert workdir_lib.read_results(workdir) == pytest.approx(before)
  # A changed config trains afresh in a workdir of its own, beside the old one.
  changed = zoo_config(data_dir, configs=("logreg",), seeds=(0,))
  changed.total_steps = 10
  assert base.run_study(changed, directory)["reused"] == 0
  assert len([w for w in os.listdir(os.path.join(directory, "runs"))
              if w.startswith("logreg_seed0")]) == 2


def test_a_study_from_the_launcher(data_dir, tmp_path):
  args = ["--config=studies/classifier_zoo", f"--workdir={tmp_path}", "--config.configs=('logreg',)", "--config.seeds=(0,)",
          f"--config.data_dir={data_dir}", "--config.total_steps=10"]
  proc = run_launcher(*args)
  assert proc.returncode == 0, stderr_summary(proc.stderr)
  assert "run 1/1 logreg_seed0: trained" in proc.stdout
  assert "| logreg |" in open(tmp_path / "zoo.md").read()
  proc = run_launcher(*args)
  assert proc.returncode == 0 and "run 1/1 logreg_seed0: reused" in proc.stdout
