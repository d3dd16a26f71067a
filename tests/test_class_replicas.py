"""Replicas with their own training classes (``replicas.train_labels``): replica i is the
single run with ``data.train_labels = train_labels[i]`` (its feed, its trained model, its
anomaly report), and the one-class study's ``class_replicas`` mode gives the tables of a
run per class."""
import csv
import importlib
import os

import jax
import ml_collections
import numpy as np
import pytest

from conftest import load_config
from research import errors
from research.data import feeds, pipeline
from research.studies import base as studies_base
from research.train import experiment, replicas, restore, workdir as workdir_lib

CLASSES = (0, 3)
STEPS = 10


def one_class_config(data_dir, normal: int = CLASSES[0], **overrides):
  return load_config("autoencoder", f"digits,normal={normal}", data_dir, total_steps=STEPS,
                     **overrides)


def first_batches(config, workdir: str, steps) -> list[dict]:
  """The batches the run's feed gives at ``steps`` (stacked over replicas, if any)."""
  prepared = experiment.setup(config, workdir)
  try:
    adaptor = replicas.from_config(config)
    feed = feeds.make(prepared.train, prepared.mesh, 1, experiment.replica_batches(
        adaptor, prepared.train, prepared.replica_trains))
    return [feed.local_batch(step) for step in steps]
  finally:
    prepared.close()


def test_each_replica_reads_the_feed_of_its_single_run(data_dir, tmp_path):
  seeds = (0, 1)
  config = one_class_config(data_dir, **{"replicas.seeds": seeds})
  config.replicas.train_labels = tuple((c,) for c in CLASSES)
  steps = (0, 1, 7)  # 7: past the first epoch of ~130 images in batches of 64
  stacked = first_batches(config, str(tmp_path / "replicas"), steps)
  for i, (seed, normal) in enumerate(zip(seeds, CLASSES)):
    alone = first_batches(one_class_config(data_dir, normal, seed=seed),
                          str(tmp_path / f"class{normal}"), steps)
    for got, want in zip(stacked, alone):
      assert set(got) == set(want)
      for key in want:
        np.testing.assert_array_equal(got[key][i], want[key], err_msg=f"replica {i} {key}")
      assert set(want["label"].tolist()) == {normal}


def test_replicas_with_classes_of_other_step_counts_are_refused(data_dir):
  config = ml_collections.ConfigDict(dict(total_steps=-1, num_epochs=2.0))
  trains = [pipeline.TrainBatches({"x": np.zeros((n, 1))}, 10, 0) for n in (40, 50)]
  assert experiment.shared_total_steps(config, trains[:1]) == 8
  with pytest.raises(errors.ConfigError, match="8..10 steps.*set total_steps"):
    experiment.shared_total_steps(config, trains)
  bad = one_class_config(data_dir, **{"replicas.seeds": (0, 1, 2)})
  bad.replicas.train_labels = ((0,), (1,))
  with pytest.raises(errors.ConfigError, match="one per replica"):
    experiment.setup(bad, "/nonexistent/never-written")


def study_config(data_dir, class_replicas: bool) -> ml_collections.ConfigDict:
  config = importlib.import_module("configs.studies.one_class").get_config("digits")
  config.data_dir, config.total_steps = data_dir, STEPS
  config.classes, config.seeds = CLASSES, (0,)
  config.families = ("deep_svdd",)  # and its autoencoders
  config.ocsvm = False
  config.class_replicas = class_replicas
  return config


@pytest.fixture(scope="module")
def studies(data_dir, tmp_path_factory):
  """The study on two classes, as a run per class and with class replicas."""
  out = {}
  for mode in (False, True):
    directory = str(tmp_path_factory.mktemp(f"class_replicas_{mode}"))
    out[mode] = directory, studies_base.run_study(study_config(data_dir, mode), directory)
  return out


def run_dirs(directory: str, prefix: str) -> list[str]:
  runs = os.path.join(directory, "runs")
  return sorted(os.path.join(runs, r) for r in os.listdir(runs) if r.startswith(prefix))


def csv_rows(path: str) -> list[dict]:
  with open(path) as f:
    return list(csv.DictReader(f))


def test_the_study_trains_the_autoencoders_as_one_run_with_the_same_tables(studies):
  (separate, separate_summary), (together, together_summary) = studies[False], studies[True]
  assert separate_summary["runs"] == 4 and together_summary["runs"] == 3
  assert len(run_dirs(together, "digits_autoencoder_classes_seed0")) == 1
  for table in ("one_class.csv", "per_class.csv"):
    want, got = (csv_rows(os.path.join(d, table)) for d in (separate, together))
    assert [list(r) for r in got] == [list(r) for r in want]
    for w, g in zip(want, got):
      assert (g["family"], g.get("normal")) == (w["family"], w.get("normal"))
      key = "mean_auroc" if "mean_auroc" in w else "auroc"
      assert float(g[key]) == pytest.approx(float(w[key]), abs=2e-3), (table, w)


def test_each_replica_is_its_class_run_and_reports_its_normal_class(studies):
  (separate, _), (together, _) = studies[False], studies[True]
  [workdir] = run_dirs(together, "digits_autoencoder_classes_seed0")
  run = restore.restore(workdir)
  results = workdir_lib.read_results(workdir)
  for i, normal in enumerate(CLASSES):
    [alone_dir] = run_dirs(separate, f"digits_autoencoder_class{normal}_seed0")
    alone = restore.restore(alone_dir)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
                 run.replica(i).params, alone.state.params)
    alone_results = workdir_lib.read_results(alone_dir)
    assert results[f"replica_{i}/test/auroc"] == pytest.approx(alone_results["test/auroc"],
                                                              abs=1e-4)
    scores = csv_rows(os.path.join(workdir, "reports", f"replica_{i}", "test_scores.csv"))
    assert [int(r["label"]) for r in scores if r["normal"] == "True"] == [normal]
  # Deep SVDD starts from its class's replica.
  [svdd] = run_dirs(together, f"digits_deep_svdd_class{CLASSES[1]}_seed0")
  init_from = restore.restore(svdd).config.init_from
  assert (init_from.workdir, init_from.replica) == (workdir, 1)
