"""OOD detection (research/evaluation/ood.py, research/evaluators/ood_report.py): each score
and metric against an independent oracle, then the evaluator end to end on the digits."""
import csv

import jax
import ml_collections
import numpy as np
import pytest
import scipy.spatial.distance
import scipy.special
import scipy.stats
from sklearn import metrics as sk_metrics

from research import errors
from research.data import preprocess
from research.evaluation import ood
from research.evaluators import ood_report
from research.tasks import classification, vae
from research.train import loop
from tests.conftest import load_config


def test_msp_and_energy_match_hand_computation_and_rank_flat_logits_as_ood():
  logits = np.array([[4.0, 0.0, 0.0], [0.1, 0.0, -0.1]], np.float32)
  probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
  np.testing.assert_allclose(ood.msp_score(logits), -probs.max(-1), rtol=1e-6)
  for t in (1.0, 2.0):
    expected = -t * np.log(np.exp(logits / t).sum(-1))
    np.testing.assert_allclose(ood.energy_score(logits, t), expected, rtol=1e-5)
  # The confident row is in-distribution-like: lower MSP and energy scores than the flat one.
  assert np.all(np.diff(np.asarray(ood.msp_score(logits))) > 0)
  assert np.all(np.diff(np.asarray(ood.energy_score(logits))) > 0)
  assert jax.jit(ood.energy_score)(logits).shape == (2,)


def test_mahalanobis_is_the_closest_class_distance_under_the_tied_covariance():
  rng = np.random.default_rng(0)
  mixing = rng.normal(size=(3, 3))
  means = np.array([[0.0, 0.0, 0.0], [4.0, 0.0, 1.0]])
  labels = rng.integers(0, 2, 400)
  features = means[labels] + rng.normal(size=(400, 3)) @ mixing
  fitted = ood.fit_gaussian(features, labels, num_classes=3)  # class 2 has no examples
  np.testing.assert_array_equal(fitted.classes, [0, 1])
  centred = features - np.stack([features[labels == c].mean(0) for c in (0, 1)])[labels]
  np.testing.assert_allclose(fitted.covariance, centred.T @ centred / 400, rtol=1e-10)
  queries = rng.normal(size=(5, 3)) * 3
  inverse = np.linalg.inv(fitted.covariance)
  expected = [min(scipy.spatial.distance.mahalanobis(q, m, inverse) ** 2 for m in fitted.means)
              for q in queries]
  np.testing.assert_allclose(ood.mahalanobis_score(fitted, queries), expected, rtol=1e-8)
  far = ood.mahalanobis_score(fitted, means + 50.0)
  assert np.all(far > ood.mahalanobis_score(fitted, means))


def test_mahalanobis_of_rank_deficient_features_is_finite():
  rng = np.random.default_rng(1)
  features = np.concatenate([rng.normal(size=(50, 2)), np.zeros((50, 2))], axis=1)
  fitted = ood.fit_gaussian(features, rng.integers(0, 2, 50), 2)
  assert np.all(np.isfinite(ood.mahalanobis_score(fitted, rng.normal(size=(4, 4)))))


def test_ood_metrics_match_sklearn_and_the_known_answers():
  rng = np.random.default_rng(0)
  in_scores, out_scores = rng.normal(size=300), rng.normal(1.0, size=200)
  y = np.r_[np.zeros(300), np.ones(200)]
  scores = np.r_[in_scores, out_scores]
  out = ood.ood_metrics(in_scores, out_scores)
  assert out["auroc"] == pytest.approx(sk_metrics.roc_auc_score(y, scores))
  assert out["aupr_out"] == pytest.approx(sk_metrics.average_precision_score(y, scores))
  assert out["aupr_in"] == pytest.approx(sk_metrics.average_precision_score(1 - y, -scores))
  threshold = np.sort(out_scores)[::-1][int(np.ceil(0.95 * 200)) - 1]  # detects 95% of OOD
  assert out["fpr_at_95_tpr"] == pytest.approx(np.mean(in_scores >= threshold))

  separated = ood.ood_metrics(np.arange(10.0), np.arange(10.0) + 100)
  assert separated == pytest.approx({"auroc": 1.0, "aupr_in": 1.0, "aupr_out": 1.0,
                                     "fpr_at_95_tpr": 0.0})
  same = ood.ood_metrics(rng.normal(size=4000), rng.normal(size=4000))
  assert same["auroc"] == pytest.approx(0.5, abs=0.03)
  assert same["fpr_at_95_tpr"] == pytest.approx(0.95, abs=0.03)
  assert all(np.isnan(v) for v in ood.ood_metrics([0.0, np.nan], [1.0]).values())


def test_fpr95_on_a_hand_example():
  out_scores = np.arange(1.0, 21.0)  # 19 of the 20 (95%) score >= 2: the threshold is 2
  in_scores = np.array([0.0, 1.5, 2.0, 3.0])  # 2.0 and 3.0 are flagged
  assert ood.fpr_at_tpr(in_scores, out_scores) == 0.5
  assert ood.ood_metrics(in_scores, out_scores)["fpr_at_95_tpr"] == 0.5


def test_the_flip_ops_mirror_every_image_the_same_way():
  images = np.arange(2 * 3 * 4).reshape(2, 3, 4, 1).astype(np.uint8)
  for name, flipped in (("flip_vertical", images[:, ::-1]),
                        ("flip_horizontal", images[:, :, ::-1])):
    for seed in (0, 1):
      out = preprocess.parse(name)({"image": images}, jax.random.PRNGKey(seed))["image"]
      np.testing.assert_array_equal(out, flipped)


def test_constant_images_are_far_less_complex_than_noise():
  rng = np.random.default_rng(0)
  constant = np.full((2, 32, 32, 1), 128, np.uint8)
  noise = rng.integers(0, 256, (2, 32, 32, 1), dtype=np.uint8)
  simple, complex_ = ood.input_complexity_bits(constant), ood.input_complexity_bits(noise)
  assert np.all(complex_ > 32 * 32 * 8 * 0.9)  # noise does not compress
  assert np.all(simple * 10 < complex_)
  assert ood.input_complexity_bits(rng.integers(0, 256, (1, 8, 8, 3), dtype=np.uint8)).shape == (1,)
  with pytest.raises(ValueError, match="uint8"):
    ood.input_complexity_bits(constant.astype(np.float32))
  np.testing.assert_allclose(ood.complexity_corrected_score([100.0, 50.0], [30.0, 40.0]),
                             [70.0, 10.0])


def test_typicality_flags_batches_whose_mean_nll_is_atypical():
  rng = np.random.default_rng(0)
  train, val = rng.normal(10.0, 1.0, 2000), rng.normal(10.0, 1.0, 1000)
  typical, low = rng.normal(10.0, 1.0, 400), rng.normal(7.0, 1.0, 400)  # too likely: OOD too
  result = ood.typicality_test(np.r_[typical, low], train, val, batch_size=20)
  assert result.scores.shape == (40,)
  np.testing.assert_allclose(result.scores[:2], np.abs([typical[:20].mean() - train.mean(),
                                                        typical[20:40].mean() - train.mean()]))
  assert result.ood[20:].all() and result.ood[:20].mean() < 0.2
  assert 0.3 < result.threshold < 1.0  # about 2.6 standard errors of a 20-batch mean, 1/sqrt(20)


def test_mean_and_interval_is_the_student_t_interval():
  values = [0.81, 0.84, 0.79, 0.86]
  mean, half = ood.mean_and_interval(values, 0.9)
  low, high = scipy.stats.t.interval(0.9, 3, loc=np.mean(values), scale=scipy.stats.sem(values))
  assert mean == pytest.approx(np.mean(values)) and half == pytest.approx((high - low) / 2)
  mean, half = ood.mean_and_interval([0.5])
  assert mean == 0.5 and np.isnan(half)


def ood_config(name: str, data_dir: str, **fields) -> ml_collections.ConfigDict:
  config = load_config(name, data_dir=data_dir, checkpoint_every_steps=20)
  config.gate = ""
  config.evals = ml_collections.ConfigDict(
      {"ood": dict(type="ood_report", data="test", every_steps=0, **fields)})
  return config


def test_a_classifier_tells_inverted_digits_from_the_digits(data_dir, tmp_path):
  config = ood_config("logreg", data_dir, ood_data="test", ood_preprocess="scale(255, 0)")
  results = loop.train_and_evaluate(config, str(tmp_path))
  names = ood_report.Evaluator.metric_names(config.evals.ood, classification.Task)
  assert len(names) == 12 and "ood/auroc_mahalanobis" in results
  assert all(0.0 <= results[f"ood/{name}"] <= 1.0 for name in names)
  assert max(results[f"ood/auroc_{s}"] for s in ood_report.CLASSIFIER_SCORES) > 0.9
  with open(tmp_path / "reports" / "ood_ood_scores.csv") as f:
    rows = list(csv.reader(f))
  assert rows[0] == ["set", "msp", "energy", "mahalanobis"]
  assert [r[0] for r in rows[1:]].count("in") == [r[0] for r in rows[1:]].count("ood") > 100


def test_a_vae_scores_flipped_digits_with_its_elbo_and_their_complexity(data_dir, tmp_path):
  config = ood_config("vae", data_dir, ood_data="test", ood_preprocess="flip_vertical",
                      num_samples=4, chunk=2)
  results = loop.train_and_evaluate(config, str(tmp_path))
  names = ood_report.Evaluator.metric_names(config.evals.ood, vae.Task)
  scores = ("neg_elbo", "complexity_elbo", "nll", "complexity_nll")
  assert names == tuple(f"{m}_{s}" for s in scores for m in ("auroc", "aupr_in", "aupr_out",
                                                             "fpr95"))
  assert all(0.0 <= results[f"ood/{name}"] <= 1.0 for name in names)
  with open(tmp_path / "reports" / "ood_ood_scores.csv") as f:
    rows = list(csv.DictReader(f))
  complexity = float(rows[0]["neg_elbo"]) / np.log(2) - float(rows[0]["complexity_elbo"])
  assert 8 * 8 < complexity < 8 * 8 * 8 + 1000  # PNG bits of an 8x8 digit, headers included
  assert float(rows[0]["nll"]) <= float(rows[0]["neg_elbo"]) + 5.0  # the bound is looser


def test_ood_report_rejects_bad_fields_in_one_line():
  config = ml_collections.ConfigDict(dict(type="ood_report", data="test"))
  with pytest.raises(errors.ConfigError, match=r"evals.ood.ood_data=None is not allowed"):
    ood_report.Evaluator.validate("ood", config, classification.Task)
  config.ood_data = "test"
  config.ood_preprocess = "flip_sideways"
  with pytest.raises(errors.ConfigError, match="unknown preprocessing op 'flip_sideways'"):
    ood_report.Evaluator.validate("ood", config, classification.Task)
  config.ood_preprocess, config.num_samples = "flip_horizontal", 30
  with pytest.raises(errors.ConfigError, match=r"evals.ood.num_samples=30 is not allowed"):
    ood_report.Evaluator.validate("ood", config, vae.Task)
