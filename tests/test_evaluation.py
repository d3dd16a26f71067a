"""Split-level classifier evaluation: calibration error, per-class metrics, plots."""
import os

import numpy as np
from sklearn import metrics as sk_metrics

from research.evaluation import classification


def test_expected_calibration_error():
  labels = np.zeros(1000, int)
  # Confidence 0.8 on class 0 and right 80% of the time: calibrated.
  probs = np.tile([0.8, 0.2], (1000, 1))
  labels[800:] = 1
  assert classification.expected_calibration_error(probs, labels) < 1e-9
  # Confidence 1.0 but right half the time: ECE 0.5.
  probs = np.tile([1.0, 0.0], (1000, 1))
  labels[500:] = 1
  np.testing.assert_allclose(classification.expected_calibration_error(probs, labels), 0.5)


def test_report_matches_scikit_learn_and_writes_plots(tmp_path):
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 5, 400)
  logits = rng.normal(size=(400, 5)) + 2.0 * np.eye(5)[labels]
  probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
  scalars = classification.report(probs, labels, str(tmp_path), "test")
  predictions = probs.argmax(-1)
  np.testing.assert_allclose(scalars["precision_macro"],
                             sk_metrics.precision_score(labels, predictions, average="macro"))
  np.testing.assert_allclose(scalars["recall_macro"],
                             sk_metrics.recall_score(labels, predictions, average="macro"))
  assert 0 <= scalars["ece"] <= 1
  assert sorted(os.listdir(tmp_path)) == ["test_confusion.png", "test_per_class.csv",
                                          "test_reliability.png"]
  rows = open(tmp_path / "test_per_class.csv").read().splitlines()
  assert rows[0] == "class,precision,recall,f1,support" and len(rows) == 6
  assert sum(int(r.split(",")[-1]) for r in rows[1:]) == 400
