"""The rate-distortion study on digits: a small beta spends more rate for less distortion
than a large one, the table is the runs' test KL and reconstruction NLL, and the plot."""
import csv
import importlib
import os

import pytest

from research.studies import base


def test_a_small_beta_trades_rate_for_distortion(data_dir, tmp_path):
  config = importlib.import_module("configs.studies.rate_distortion").get_config("digits")
  config.betas, config.seeds, config.data_dir, config.total_steps = (0.1, 10.0), (0,), data_dir, 100
  summary = base.run_study(config, str(tmp_path))
  assert summary["runs"] == 2
  rows = {float(r["beta"]): r for r in csv.DictReader(open(tmp_path / "rate_distortion.csv"))}
  runs = {float(r["beta"]): r for r in csv.DictReader(open(tmp_path / "runs.csv"))}
  for beta, row in rows.items():
    assert float(row["rate"]) == pytest.approx(float(runs[beta]["test/kl"]))
    assert float(row["distortion"]) == pytest.approx(float(runs[beta]["test/recon_nll"]))
    assert float(row["neg_elbo"]) == pytest.approx(float(row["rate"]) + float(row["distortion"]),
                                                   rel=1e-4)
  assert float(rows[0.1]["rate"]) > 5 * float(rows[10.0]["rate"])
  assert float(rows[0.1]["distortion"]) < float(rows[10.0]["distortion"])
  assert os.path.getsize(tmp_path / "rate_distortion_digits.png") > 10_000
