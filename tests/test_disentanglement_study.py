"""The disentanglement study end to end on dsprites_like/small with tiny networks: every
model and setting one run of vmapped seeds, the table of their scores over seeds, a box plot
per metric and each model's best and median traversals."""
import csv
import importlib
import os

import numpy as np
import pytest

from research.studies import base, disentanglement

SEEDS = (0, 1)
TINY = {"model": {"channels": (4, 4, 8, 8), "hidden": 16, "latent_dim": 4},
        "optimizer": {"learning_rate": 1e-3}, "log_every_steps": 2,
        "evals": {"disentanglement": dict(data="val", num_train=300, num_test=200,
                                          batch_size=16, num_votes_train=4, num_votes_eval=2,
                                          num_variance=200)}}  # val: 576 images


def test_the_study_scores_every_model_and_setting_over_its_seeds(data_dir, tmp_path):
  config = importlib.import_module("configs.studies.disentanglement").get_config("small")
  for spec in config.models.values():
    spec["values"] = spec["values"][1:2]
  config.models.factor_vae.overrides = {"task": {"discriminator_hidden": (16, 16)}}
  config.seeds, config.total_steps, config.data_dir = SEEDS, 2, data_dir
  config.run_overrides.update(TINY)
  summary = base.run_study(config, str(tmp_path))
  assert summary["runs"] == 4
  rows = list(csv.DictReader(open(tmp_path / "disentanglement.csv")))
  runs = {r["model"]: r for r in csv.DictReader(open(tmp_path / "runs.csv"))}
  assert [r["model"] for r in rows] == list(config.models)
  for row in rows:
    run = runs[row["model"]]
    for metric in disentanglement.METRICS:
      per_seed = [float(run[f"replica_{i}/test/{metric}"]) for i in range(len(SEEDS))]
      assert 0.0 <= float(row[metric]) <= 1.0, metric
      assert float(row[metric]) == pytest.approx(np.mean(per_seed)), (row["model"], metric)
    assert row["seeds"] == str(len(SEEDS)) and float(row["neg_elbo"]) > 0
  for metric in disentanglement.METRICS:
    assert os.path.getsize(tmp_path / f"disentanglement_{metric}.png") > 5_000
  for model in config.models:
    for rank in ("best", "median"):
      assert os.path.getsize(tmp_path / f"traversals_{model}_{rank}.png") > 1_000
  factor = next(r for r in rows if r["model"] == "factor_vae")
  assert summary["factor_vae_gamma30_mig"] == pytest.approx(float(factor["mig"]))
