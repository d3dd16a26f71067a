"""Disentanglement metrics of a representation against ground-truth factors.

The definitions and defaults are disentanglement_lib's (Locatello et al. 2019,
google-research/disentanglement_lib, ``evaluation/metrics``), in numpy, scikit-learn and
scipy. Codes are ``(N, num_codes)`` floats (e.g. posterior means), factors ``(N,
num_factors)`` discrete class indices.

    mig(codes, factors)                                 Chen et al. 2018
    sap(codes, factors, test_codes, test_factors)       Kumar et al. 2018
    dci(codes, factors, test_codes, test_factors)       Eastwood & Williams 2018
    factor_vae_score(sample_fixed, representation, ...) Kim & Mnih 2018
    beta_vae_score(sample_fixed, representation, ...)   Higgins et al. 2017

The last two draw their own batches: ``sample_fixed(factor, batch_size, rng)`` returns
``batch_size`` observations whose factor ``factor`` is one value drawn at random, the other
factors random (``factor=None``: none fixed), and ``representation(observations)`` their
codes.
"""
import numpy as np
import scipy.stats
from sklearn import ensemble, linear_model, metrics, svm

NUM_BINS = 20  # MIG's histogram bins per code dimension


def discretize(codes: np.ndarray, num_bins: int = NUM_BINS) -> np.ndarray:
  """Each code dimension as bin indices of a histogram of ``num_bins`` equal-width bins."""
  codes = np.asarray(codes)
  out = np.zeros(codes.shape, np.int64)
  for j in range(codes.shape[1]):
    edges = np.histogram(codes[:, j], num_bins)[1][:-1]
    out[:, j] = np.digitize(codes[:, j], edges)
  return out


def mutual_information(discrete_codes: np.ndarray, factors: np.ndarray) -> np.ndarray:
  """``(num_codes, num_factors)`` mutual information (nats) of discrete codes and factors."""
  return np.array([[metrics.mutual_info_score(factors[:, k], discrete_codes[:, j])
                    for k in range(factors.shape[1])] for j in range(discrete_codes.shape[1])])


def entropies(factors: np.ndarray) -> np.ndarray:
  """Each factor's entropy (nats)."""
  return np.array([metrics.mutual_info_score(f, f) for f in np.asarray(factors).T])


def mig_per_factor(codes: np.ndarray, factors: np.ndarray,
                   num_bins: int = NUM_BINS) -> np.ndarray:
  """Per factor: the gap in mutual information between its two most informative code
  dimensions, over its entropy."""
  factors = np.asarray(factors)
  info = mutual_information(discretize(codes, num_bins), factors)
  top = np.sort(info, axis=0)[::-1]
  second = top[1] if len(top) > 1 else np.zeros_like(top[0])
  return (top[0] - second) / entropies(factors)


def mig(codes: np.ndarray, factors: np.ndarray, num_bins: int = NUM_BINS) -> float:
  """The mutual information gap, mean over the factors that vary."""
  varies = entropies(factors) > 0
  return float(np.mean(mig_per_factor(codes, np.asarray(factors)[:, varies], num_bins)))


def sap_matrix(codes, factors, test_codes, test_factors) -> np.ndarray:
  """``(num_codes, num_factors)`` test accuracy of a linear SVM (C=0.01, balanced class
  weights) predicting each factor from each code dimension alone."""
  codes, test_codes = np.asarray(codes), np.asarray(test_codes)
  scores = np.zeros((codes.shape[1], factors.shape[1]))
  for j in range(codes.shape[1]):
    for k in range(factors.shape[1]):
      if len(np.unique(factors[:, k])) < 2:  # nothing to predict
        continue
      classifier = svm.LinearSVC(C=0.01, class_weight="balanced")
      classifier.fit(codes[:, j:j + 1], factors[:, k])
      scores[j, k] = np.mean(classifier.predict(test_codes[:, j:j + 1]) == test_factors[:, k])
  return scores


def sap(codes, factors, test_codes, test_factors) -> float:
  """The separated attribute predictability: per factor, the gap between the two best code
  dimensions' accuracy (``sap_matrix``), mean over the factors."""
  scores = np.sort(sap_matrix(codes, np.asarray(factors), test_codes, np.asarray(test_factors)),
                   axis=0)
  second = scores[-2] if len(scores) > 1 else np.zeros_like(scores[-1])
  return float(np.mean(scores[-1] - second))


def dci_importance(codes, factors, test_codes, test_factors,
                   seed: int = 0) -> tuple[np.ndarray, float, float]:
  """``(importance (num_codes, num_factors), train accuracy, test accuracy)``: a gradient
  boosted trees classifier (scikit-learn's defaults) per factor; its feature importances are
  that factor's column, the accuracies are means over the factors."""
  factors, test_factors = np.asarray(factors), np.asarray(test_factors)
  importance = np.zeros((np.shape(codes)[1], factors.shape[1]))
  train_accuracy, test_accuracy = [], []
  for k in range(factors.shape[1]):
    model = ensemble.GradientBoostingClassifier(random_state=seed)
    model.fit(codes, factors[:, k])
    importance[:, k] = np.abs(model.feature_importances_)
    train_accuracy.append(np.mean(model.predict(codes) == factors[:, k]))
    test_accuracy.append(np.mean(model.predict(test_codes) == test_factors[:, k]))
  return importance, float(np.mean(train_accuracy)), float(np.mean(test_accuracy))


def _weighted_one_minus_entropy(importance: np.ndarray) -> float:
  """Sum over rows of (1 - entropy of the row's distribution, base = its length), each row
  weighted by its share of the total importance."""
  if importance.sum() == 0:
    importance = np.ones_like(importance)
  if importance.shape[1] < 2:
    return 1.0
  per_row = 1.0 - scipy.stats.entropy(importance.T + 1e-11, base=importance.shape[1])
  return float(np.sum(per_row * importance.sum(axis=1) / importance.sum()))


def dci_scores(importance: np.ndarray) -> tuple[float, float]:
  """``(disentanglement, completeness)`` of an importance matrix (num_codes, num_factors):
  how much each code dimension serves one factor, and each factor lies in one dimension."""
  return _weighted_one_minus_entropy(importance), _weighted_one_minus_entropy(importance.T)


def dci(codes, factors, test_codes, test_factors, seed: int = 0) -> dict[str, float]:
  """Disentanglement, completeness and informativeness (test accuracy; also the train
  accuracy) of Eastwood & Williams' framework with gradient boosted trees."""
  importance, train_accuracy, test_accuracy = dci_importance(
      codes, factors, test_codes, test_factors, seed)
  disentanglement, completeness = dci_scores(importance)
  return {"disentanglement": disentanglement, "completeness": completeness,
          "informativeness": test_accuracy, "informativeness_train": train_accuracy}


def factor_vae_score(sample_fixed, representation, num_factors: int, rng: np.random.Generator,
                     batch_size: int = 64, num_train: int = 10000, num_eval: int = 5000,
                     num_variance: int = 10000, prune_below: float = 0.05) -> dict[str, float]:
  """Kim & Mnih's score: fix one factor over a batch, normalise the codes by their global
  standard deviation, vote for the dimension of least variance; a majority-vote classifier
  from dimensions to factors, fitted on ``num_train`` votes, its accuracy on ``num_eval``
  more. Dimensions whose global variance (over ``num_variance`` random observations) is
  below ``prune_below`` are collapsed and left out (the paper's pruning; disentanglement_lib
  prunes nothing: ``prune_below=0``); with none left the score is 0."""
  global_variance = np.var(representation(sample_fixed(None, num_variance, rng)), axis=0, ddof=1)
  active = global_variance >= prune_below if prune_below > 0 else np.ones_like(global_variance,
                                                                               bool)
  if not active.any():
    return {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0}

  def votes(num: int) -> np.ndarray:
    counts = np.zeros((num_factors, int(active.sum())), np.int64)
    for _ in range(num):
      factor = int(rng.integers(num_factors))
      codes = representation(sample_fixed(factor, batch_size, rng))
      local = np.var(codes, axis=0, ddof=1)
      counts[factor, np.argmin(local[active] / global_variance[active])] += 1
    return counts

  train_votes = votes(num_train)
  classifier = np.argmax(train_votes, axis=0)  # each dimension's majority factor
  dims = np.arange(len(classifier))
  eval_votes = votes(num_eval)
  return {"train_accuracy": float(train_votes[classifier, dims].sum() / num_train),
          "eval_accuracy": float(eval_votes[classifier, dims].sum() / num_eval),
          "num_active_dims": int(active.sum())}


def beta_vae_score(sample_fixed, representation, num_factors: int, rng: np.random.Generator,
                   batch_size: int = 64, num_train: int = 10000, num_eval: int = 5000,
                   seed: int = 0) -> dict[str, float]:
  """Higgins et al.'s score: a point is the mean absolute difference of the codes of
  ``batch_size`` pairs of observations sharing one factor's value, labelled by that factor;
  a logistic regression (scikit-learn's defaults) fitted on ``num_train`` points, its
  accuracy on ``num_eval`` more. Unlike disentanglement_lib, where each pair draws its own
  value of the shared factor, the pairs of one point share one value (``sample_fixed``)."""
  def points(num: int) -> tuple[np.ndarray, np.ndarray]:
    features, labels = [], []
    for _ in range(num):
      factor = int(rng.integers(num_factors))
      codes = representation(sample_fixed(factor, 2 * batch_size, rng))
      features.append(np.mean(np.abs(codes[:batch_size] - codes[batch_size:]), axis=0))
      labels.append(factor)
    return np.array(features), np.array(labels)

  train_x, train_y = points(num_train)
  eval_x, eval_y = points(num_eval)
  model = linear_model.LogisticRegression(random_state=seed)
  model.fit(train_x, train_y)
  return {"train_accuracy": float(np.mean(model.predict(train_x) == train_y)),
          "eval_accuracy": float(np.mean(model.predict(eval_x) == eval_y))}
