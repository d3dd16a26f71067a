"""Disentanglement metrics on synthetic codes whose answers are known (seconds)."""
import ml_collections
import numpy as np
import pytest

from research.evaluation import disentanglement
from research.evaluators import disentanglement as evaluator
from research.train import loop
from tests.conftest import load_config

NUM_VALUES = 4  # classes of each synthetic factor
NUM_FACTORS = 3


def draw_factors(num: int, seed: int) -> np.ndarray:
  return np.random.default_rng(seed).integers(0, NUM_VALUES, (num, NUM_FACTORS))


@pytest.fixture(scope="module")
def data():
  """Train and test factors, and codes: equal to the factors, their columns permuted,
  random (independent of the factors), and one code holding the sum of factors 0 and 1."""
  train, test = draw_factors(1500, 0), draw_factors(500, 1)
  noise = np.random.default_rng(2)

  def entangled(f):
    return np.c_[f[:, 0] + f[:, 1], f[:, 2], noise.normal(size=len(f))]

  return {"factors": (train, test),
          "equal": (train + 0.0, test + 0.0),
          "permuted": (train[:, [2, 0, 1]] + 0.0, test[:, [2, 0, 1]] + 0.0),
          "random": (noise.normal(size=(1500, 4)), noise.normal(size=(500, 4))),
          "entangled": (entangled(train), entangled(test))}


@pytest.fixture(scope="module")
def dci_of(data):
  """DCI of each kind of code, on 600 training rows (gradient boosting is the slow part)."""
  train, test = data["factors"]
  return {kind: disentanglement.dci(data[kind][0][:600], train[:600], data[kind][1], test)
          for kind in ("equal", "permuted", "random", "entangled")}


def test_mig_is_one_for_codes_equal_to_the_factors_and_unchanged_by_a_permutation(data):
  factors = data["factors"][0]
  assert disentanglement.mig(data["equal"][0], factors) > 0.99
  assert disentanglement.mig(data["permuted"][0], factors) == pytest.approx(
      disentanglement.mig(data["equal"][0], factors), abs=1e-12)


def test_mig_is_near_zero_for_random_codes(data):
  assert disentanglement.mig(data["random"][0], data["factors"][0]) < 0.02


def test_mig_drops_for_the_factors_that_share_one_code(data):
  per_factor = disentanglement.mig_per_factor(data["entangled"][0], data["factors"][0])
  # I(f0 + f1; f0) = H(f0 + f1) - H(f1): about a third of H(f0) for 4 uniform values
  assert per_factor[:2] == pytest.approx([0.33, 0.33], abs=0.05)
  assert per_factor[2] > 0.97


def test_discretize_uses_twenty_equal_width_bins():
  codes = np.linspace(0.0, 1.0, 101)[:, None]
  bins = disentanglement.discretize(codes)
  assert bins.min() == 1 and bins.max() == 20
  assert np.all(np.diff(bins[:, 0]) >= 0)


def test_sap_finds_each_factors_own_code_and_is_near_zero_for_random_codes(data):
  train, test = data["factors"]
  scores = disentanglement.sap_matrix(data["equal"][0], train, data["equal"][1], test)
  assert np.all(np.argmax(scores, axis=0) == np.arange(NUM_FACTORS))
  # a 1-D linear SVM separates the outer classes of 4 only: ~0.75 accuracy against ~0.25 of
  # the other codes, so the gap is ~0.5, not 1 (disentanglement_lib's SAP on discrete factors)
  assert disentanglement.sap(data["equal"][0], train, data["equal"][1], test) > 0.4
  assert disentanglement.sap(data["random"][0], train, data["random"][1], test) < 0.05


def test_sap_is_near_one_for_binary_factors_coded_exactly():
  factors = np.random.default_rng(3).integers(0, 2, (800, 2))
  codes = factors + 0.0
  scores = disentanglement.sap_matrix(codes[:600], factors[:600], codes[600:], factors[600:])
  assert np.diag(scores) == pytest.approx([1.0, 1.0])


def test_dci_is_one_for_codes_equal_to_the_factors_and_unchanged_by_a_permutation(dci_of):
  equal = dci_of["equal"]
  assert equal["disentanglement"] > 0.99 and equal["completeness"] > 0.99
  assert equal["informativeness"] == 1.0
  for key in ("disentanglement", "completeness", "informativeness"):
    assert dci_of["permuted"][key] == pytest.approx(equal[key], abs=1e-6)


def test_dci_is_near_zero_for_random_codes(dci_of):
  assert dci_of["random"]["disentanglement"] < 0.1
  assert dci_of["random"]["informativeness"] < 0.4  # chance is 1/4


def test_dci_is_lower_for_a_code_that_carries_two_factors(dci_of):
  for key in ("disentanglement", "completeness"):
    assert dci_of["entangled"][key] < dci_of["equal"][key] - 0.2


def test_dci_scores_of_known_importance_matrices():
  assert disentanglement.dci_scores(np.eye(3)) == pytest.approx((1.0, 1.0))
  # one code serving two factors equally: that code scores 1 - log_3(2), the rest 1
  shared = np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
  disentangled, complete = disentanglement.dci_scores(shared)
  assert disentangled == pytest.approx(2 / 3 * (1 - np.log(2) / np.log(3)) + 1 / 3)
  assert complete == pytest.approx(1.0)


def sampler():
  """``sample_fixed`` over the synthetic grid: observations are the factor rows."""
  def sample_fixed(factor, batch_size, rng):
    rows = rng.integers(0, NUM_VALUES, (batch_size, NUM_FACTORS)).astype(np.float64)
    if factor is not None:
      rows[:, factor] = rng.integers(0, NUM_VALUES)
    return rows
  return sample_fixed


def random_representation(seed: int):
  noise = np.random.default_rng(seed)
  return lambda observations: noise.normal(size=(len(observations), 4))


SMALL = dict(batch_size=32, num_train=300, num_eval=200)


def test_factor_vae_score_is_one_for_the_factors_and_near_chance_for_random_codes():
  identity = disentanglement.factor_vae_score(
      sampler(), lambda x: x, NUM_FACTORS, np.random.default_rng(0), num_variance=1000, **SMALL)
  assert identity["eval_accuracy"] == 1.0 and identity["num_active_dims"] == NUM_FACTORS
  random = disentanglement.factor_vae_score(
      sampler(), random_representation(1), NUM_FACTORS, np.random.default_rng(0),
      num_variance=1000, **SMALL)
  assert random["eval_accuracy"] < 1 / NUM_FACTORS + 0.15


def test_factor_vae_score_prunes_collapsed_dimensions():
  def with_collapsed(x):
    return np.c_[x, np.full(len(x), 3.0), 0.01 * x[:, :1]]
  score = disentanglement.factor_vae_score(
      sampler(), with_collapsed, NUM_FACTORS, np.random.default_rng(0), num_variance=1000,
      **SMALL)
  assert score["num_active_dims"] == NUM_FACTORS and score["eval_accuracy"] == 1.0
  collapsed = disentanglement.factor_vae_score(
      sampler(), lambda x: 0.01 * x, NUM_FACTORS, np.random.default_rng(0), num_variance=1000,
      **SMALL)
  assert collapsed == {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0}


def test_beta_vae_score_is_one_for_the_factors_and_near_chance_for_random_codes():
  identity = disentanglement.beta_vae_score(
      sampler(), lambda x: x, NUM_FACTORS, np.random.default_rng(0), **SMALL)
  assert identity["eval_accuracy"] > 0.98
  random = disentanglement.beta_vae_score(
      sampler(), random_representation(1), NUM_FACTORS, np.random.default_rng(0), **SMALL)
  assert random["eval_accuracy"] < 1 / NUM_FACTORS + 0.15


def test_the_evaluator_reports_every_score_for_a_vae_on_dsprites_like(data_dir, tmp_path):
  config = load_config("vae", data_dir=data_dir, **{
      "model.latent_dim": 4, "model.hidden": (32,), "total_steps": 4, "eval_every_steps": 4,
      "checkpoint_every_steps": 4, "log_every_steps": 2})
  config.data.name = "dsprites_like/small"
  config.data.train_split, config.data.val_split = "train[:80%]", "train[80%:90%]"
  config.data.test_split = "train[90%:]"
  config.evals = ml_collections.ConfigDict({"disentanglement": dict(
      type="disentanglement", data="test", every_steps=0, prefix="test", num_train=300,
      num_test=200, batch_size=16, num_votes_train=20, num_votes_eval=10, num_variance=200)})
  results = loop.train_and_evaluate(config, str(tmp_path / "run"))
  for name in ("mig", "sap", "dci_disentanglement", "dci_completeness", "dci_informativeness",
               "factor_vae_score", "beta_vae_score"):
    assert 0.0 <= results[f"test/{name}"] <= 1.0, name
  assert evaluator.dsprites_like_grid("dsprites_like/small:1.0.0") == (4, 4)
  assert evaluator.dsprites_like_grid("dsprites_like") == (1, 1)
  assert evaluator.dsprites_like_grid("digits") is None
  importance = tmp_path / "run" / "reports" / "test_dci_importance.csv"
  assert importance.read_text().splitlines()[0] == "shape,scale,orientation,x,y"
