"""OOD detection (research/evaluation/ood.py, research/evaluators/ood_report.py): each score
and metric against an independent oracle, then the evaluator end to end on the digits."""
import csv
import json
import os
from unittest import mock

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
from research.studies import base
from research.tasks import classification, vae


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
  mean, half = base.mean_and_interval(values, 0.9)
  low, high = scipy.stats.t.interval(0.9, 3, loc=np.mean(values), scale=scipy.stats.sem(values))
  assert mean == pytest.approx(np.mean(values)) and half == pytest.approx((high - low) / 2)
  mean, half = base.mean_and_interval([0.5])
  assert mean == 0.5 and np.isnan(half)


SETS = ("vflip", "inverted")
# The runs' evaluations no test reads: image grids, latent plots and classification reports
# (each compiles and plots; the evaluators' own tests cover them).
UNREAD_EVALS = ("images", "latents", "report")


@pytest.fixture(scope="module")
def study(data_dir, tmp_path_factory):
  """The OOD study on digits, small: logreg, a Bernoulli VAE with its background model, an
  autoencoder and Deep SVDD, two seeds, every evaluator field the study sets."""
  import importlib

  from research.studies import ood as ood_study
  run_config = ood_study.Study.run_config

  def without_unread_evals(self, *args):
    config = run_config(self, *args)
    base.drop_evals(config, UNREAD_EVALS)
    return config

  config = importlib.import_module("configs.studies.ood").get_config("digits")
  config.pairs.digits = {name: config.pairs.digits[name] for name in SETS}
  config.classifier, config.vaes, config.seeds = "logreg", ("vae_bernoulli",), (0, 1)
  config.data_dir, config.total_steps, config.num_samples, config.chunk = data_dir, 20, 4, 2
  config.regret_steps, config.regret_examples = 10, 150  # one evaluation batch of 200
  directory = str(tmp_path_factory.mktemp("ood_study"))
  with mock.patch.object(ood_study.Study, "run_config", without_unread_evals):
    summary = base.run_study(config, directory)
  runs = {(row["model"], int(row["seed"])): os.path.join(directory, row["workdir"])
          for row in csv.DictReader(open(os.path.join(directory, "runs.csv")))}
  return directory, summary, runs


def scores_csv(workdir: str) -> dict:
  return ood_report.read_scores(os.path.join(workdir, "reports", "ood_ood_scores.csv"))


def test_a_classifier_tells_inverted_digits_from_the_digits(study):
  _, _, runs = study
  results = json.load(open(os.path.join(runs[("classifier", 0)], "results.json")))
  config = json.load(open(os.path.join(runs[("classifier", 0)], "config.json")))
  names = ood_report.Evaluator.metric_names(ml_collections.ConfigDict(config["evals"]["ood"]),
                                            classification.Task)
  assert len(names) == 2 * (16 + 4) + 4 and "ood/inverted/auroc_mahalanobis" in results
  assert all(0.0 <= results[f"ood/{name}"] <= 1.0 for name in names)
  assert max(results[f"ood/inverted/auroc_{s}"] for s in ood_report.CLASSIFIER_SCORES) > 0.9
  sets = scores_csv(runs[("classifier", 0)])
  assert list(sets) == ["in", *sorted(SETS), "reference"]  # ConfigDict sorts its keys
  assert list(sets["in"]) == [*ood_report.CLASSIFIER_SCORES, "ocsvm_pixels"]
  assert len(sets["in"]["msp"]) == len(sets["vflip"]["msp"]) > 100  # the same test split
  # The threshold accepting 95% of the validation split, applied to the test and OOD sets.
  for score in ood_report.CLASSIFIER_SCORES:
    reference = sets["reference"][score]
    # The smallest reference score at or below which 95% of them lie: one lower is not.
    threshold = min(t for t in reference if np.mean(reference <= t) >= 0.95)
    assert ood.acceptance_threshold(reference, 0.95) == threshold
    assert results[f"ood/flagged_at_accept_{score}"] == pytest.approx(
        np.mean(sets["in"][score] > threshold))
    assert results[f"ood/inverted/recall_at_accept_{score}"] == pytest.approx(
        np.mean(sets["inverted"][score] > threshold))
  assert results["ood/inverted/recall_at_accept_mahalanobis"] > 0.5


def test_a_vae_scores_flipped_digits_with_its_elbo_complexity_and_typicality(study):
  _, _, runs = study
  results = json.load(open(os.path.join(runs[("vae_bernoulli", 0)], "results.json")))
  scores = ("neg_elbo", "complexity_elbo", "nll", "complexity_nll", "regret")
  for name in SETS:
    for score in scores:
      for metric in ("auroc", "aupr_in", "aupr_out", "fpr95"):
        assert 0.0 <= results[f"ood/{name}/{metric}_{score}"] <= 1.0
    for score in ("neg_elbo", "nll"):
      assert 0.0 <= results[f"ood/{name}/typicality_auroc_{score}"] <= 1.0
      assert 0.0 <= results[f"ood/{name}/typicality_tpr_{score}"] <= 1.0
  # Inverted binarized digits are mostly ink: a typical batch of them is far from typical.
  assert results["ood/inverted/typicality_tpr_neg_elbo"] == 1.0
  assert results["ood/typicality_fpr_neg_elbo"] < 0.5
  sets = scores_csv(runs[("vae_bernoulli", 0)])
  assert list(sets) == ["in", *sorted(SETS), "reference"]
  complexity = sets["in"]["neg_elbo"] / np.log(2) - sets["in"]["complexity_elbo"]
  # PNG bits of a binarized 8x8 digit, headers included; the same image, the same length.
  assert np.all((8 * 8 < complexity) & (complexity < 8 * 8 * 8 + 1000))
  inverted = sets["inverted"]["neg_elbo"] / np.log(2) - sets["inverted"]["complexity_elbo"]
  assert np.median(inverted) != np.median(complexity)
  assert np.all(sets["in"]["nll"] <= sets["in"]["neg_elbo"] + 5.0)  # the bound is looser
  # The regret scores each set's first evaluation batch only; the reference set not at all.
  assert len(sets["in"]["regret"]) == len(sets["vflip"]["regret"]) == 200
  assert len(sets["in"]["neg_elbo"]) > 200 and "regret" not in sets["reference"]


def test_the_ocsvm_scores_are_sklearns_and_the_one_class_runs_score_with_their_model(study,
                                                                                   data_dir):
  import tensorflow_datasets as tfds

  from research.evaluation import one_class as one_class_lib
  from research.train import restore
  _, _, runs = study
  load = lambda split: tfds.as_numpy(tfds.load(  # noqa: E731
      "digits", split=split, batch_size=-1, data_dir=data_dir))["image"] / 255.0
  config = json.load(open(os.path.join(runs[("classifier", 0)], "config.json")))
  train, test = load(config["data"]["train_split"]), load("test")
  # The OC-SVM on pixels: scikit-learn fitted on the same training images (all of them:
  # fewer than ocsvm_examples), scoring the test split.
  sets = scores_csv(runs[("classifier", 0)])
  np.testing.assert_allclose(sets["in"]["ocsvm_pixels"],
                             one_class_lib.ocsvm_scores(train, test), rtol=1e-5, atol=1e-6)
  assert np.mean(sets["inverted"]["ocsvm_pixels"]) > np.mean(sets["in"]["ocsvm_pixels"])
  # The VAE's OC-SVM on its posterior means (of dynamically binarized digits: only their
  # ranking is checked).
  latent = scores_csv(runs[("vae_bernoulli", 0)])
  assert len(latent["in"]["ocsvm_latent"]) == len(test) and np.all(
      np.isfinite(latent["inverted"]["ocsvm_latent"]))
  assert np.mean(latent["inverted"]["ocsvm_latent"]) > np.mean(latent["in"]["ocsvm_latent"])
  # The one-class runs' anomaly score is their model's, on the whole in-distribution split.
  for family in ("autoencoder", "deep_svdd"):
    run = restore.restore(runs[(family, 0)])
    assert run.config.data.train_labels == tuple(range(10))
    np.testing.assert_allclose(run.predict("score", {"image": test[:50] * 255.0}),
                               scores_csv(runs[(family, 0)])["in"]["anomaly"][:50], rtol=1e-5)


def test_the_likelihood_regret_is_what_a_posterior_fitted_to_each_image_gains(study, data_dir):
  import tensorflow_datasets as tfds

  from research.train import restore
  _, _, runs = study
  run = restore.restore(runs[("vae_bernoulli", 0)])
  images = tfds.as_numpy(tfds.load("digits", split="test[:64]", batch_size=-1,
                                   data_dir=data_dir))["image"]
  regret = lambda steps, **kw: run.predict("regret", {"image": images}, steps=steps,  # noqa: E731
                                           learning_rate=0.05, fit_samples=1, num_samples=8, **kw)
  np.testing.assert_array_equal(regret(0), 0.0)  # unfitted: the same ELBO estimate twice
  short, long = regret(5), regret(60)
  assert short.shape == (64,) and np.mean(long) > np.mean(short) > 0
  assert np.mean(long > 0) > 0.9  # almost every image's ELBO rises when fitted alone
  # Each image is fitted alone: changing the other images of its batch leaves its regret.
  others = np.concatenate([images[:8], images[8:, ::-1]])
  alone = run.predict("regret", {"image": others}, steps=60, learning_rate=0.05,
                      fit_samples=1, num_samples=8)
  np.testing.assert_allclose(alone[:8], long[:8], rtol=1e-4, atol=1e-3)
  assert not np.allclose(alone[8:], long[8:], atol=1e-3)


def test_the_study_table_is_the_mean_of_each_seeds_metrics_with_likelihood_ratios(study):
  directory, summary, runs = study
  assert summary["runs"] == 10 and summary["reused"] == 0
  rows = list(csv.DictReader(open(os.path.join(directory, "ood.csv"))))
  scores = {r["score"] for r in rows}
  assert {"classifier:msp", "classifier:mahalanobis", "vae_bernoulli:nll",
          "vae_bernoulli:regret", "vae_bernoulli:lr_elbo", "vae_bernoulli:lr_nll",
          "vae_bernoulli:ocsvm_latent", "autoencoder:anomaly", "deep_svdd:anomaly",
          "ocsvm:pixels"} <= scores
  assert not any("background" in s for s in scores)  # a background model is no detector
  # The oracle: scikit-learn on the two runs' per-example scores, seed by seed.
  checks = (("vflip", "vae_bernoulli:lr_nll", ("vae_bernoulli", "nll")),
            ("inverted", "classifier:energy", ("classifier", "energy")))
  for name, score, (family, column) in checks:
    aurocs = []
    for seed in (0, 1):
      sets = scores_csv(runs[(family, seed)])
      values = {k: v[column] for k, v in sets.items()}
      if score.endswith("lr_nll"):
        background = scores_csv(runs[(family + "_background", seed)])
        values = {k: v - background[k][column] for k, v in values.items()}
      aurocs.append(sk_metrics.roc_auc_score(
          np.r_[np.zeros(len(values["in"])), np.ones(len(values[name]))],
          np.r_[values["in"], values[name]]))
    row = next(r for r in rows if r["ood"] == name and r["score"] == score)
    assert float(row["auroc"]) == pytest.approx(np.mean(aurocs))
    low, high = scipy.stats.t.interval(0.95, 1, loc=np.mean(aurocs), scale=scipy.stats.sem(aurocs))
    assert float(row["auroc_ci95"]) == pytest.approx((high - low) / 2)
    assert row["seeds"] == "2"
    if family == "classifier":  # the recall at the threshold accepting 95% of val, per seed
      recall = [np.mean(scores_csv(runs[(family, seed)])[name][column] > ood.acceptance_threshold(
          scores_csv(runs[(family, seed)])["reference"][column], 0.95)) for seed in (0, 1)]
      assert float(row["recall_at_accept95"]) == pytest.approx(np.mean(recall))
  best = list(csv.DictReader(open(os.path.join(directory, "best.csv"))))
  assert {(r["ood"], r["family"]) for r in best} == {(n, f) for n in SETS
                                                     for f in ("classifier", "vae_bernoulli",
                                                               "autoencoder", "deep_svdd",
                                                               "ocsvm")}
  for name in SETS:
    for kind in ("roc", "hist"):
      assert os.path.getsize(os.path.join(directory, f"{kind}_digits_vs_{name}.png")) > 10_000


def test_random_pixels_replaces_the_given_fraction_with_uniform_levels():
  images = np.full((200, 8, 8), 0.5, np.float32)
  rng = jax.random.PRNGKey(0)
  same = preprocess.parse("random_pixels(0.0)")({"image": images}, rng)["image"]
  np.testing.assert_array_equal(same, images)
  out = np.asarray(preprocess.parse("random_pixels(0.3, 2)")({"image": images}, rng)["image"])
  changed = out != 0.5
  assert set(np.unique(out)) == {0.0, 0.5, 1.0}
  assert changed.mean() == pytest.approx(0.3, abs=0.02)
  assert out[changed].mean() == pytest.approx(0.5, abs=0.03)  # 0 and 1 equally often
  grey = np.asarray(preprocess.parse("random_pixels(1.0)")({"image": images}, rng)["image"])
  np.testing.assert_allclose(grey * 255, np.rint(grey * 255), atol=1e-4)  # grey levels k / 255
  assert len(np.unique(grey)) > 200 and grey.mean() == pytest.approx(0.5, abs=0.02)


def test_ood_report_rejects_bad_fields_in_one_line():
  config = ml_collections.ConfigDict(dict(type="ood_report", data="test"))
  with pytest.raises(errors.ConfigError, match=r"evals.ood.ood_sets=None is not allowed"):
    ood_report.Evaluator.validate("ood", config, classification.Task)
  config.ood_sets = dict(flipped=dict(data="tset"))
  with pytest.raises(errors.ConfigError, match=r"evals.ood.ood_sets.flipped.data='tset'"):
    ood_report.Evaluator.validate("ood", config, classification.Task)
  config.ood_sets.flipped = dict(data="test", preprocess="flip_sideways")
  with pytest.raises(errors.ConfigError, match="unknown preprocessing op 'flip_sideways'"):
    ood_report.Evaluator.validate("ood", config, classification.Task)
  config.ood_sets.flipped = dict(data="test", preprocess="flip_horizontal")
  config.num_samples = 25
  with pytest.raises(errors.ConfigError, match=r"evals.ood.num_samples=25 is not allowed"):
    ood_report.Evaluator.validate("ood", config, vae.Task)
