"""One-class baselines outside the JAX core: scikit-learn fits on host arrays.

  fit_ocsvm      a one-class SVM (Schoelkopf et al. 2001; RBF kernel) on PCA features of
                 normal training examples (Ruff et al. 2018's shallow baseline, here with
                 PCA first, as the raw 784 pixels make the kernel slow and noisy); also on
                 other features, e.g. a VAE's posterior means
  ocsvm_score    its anomaly score of new examples
  ocsvm_scores   both at once

Convention as in ood.py: higher score = more anomalous.
"""
import numpy as np


def rows(features: np.ndarray) -> np.ndarray:
  return np.asarray(features, np.float64).reshape(len(features), -1)


def fit_ocsvm(train: np.ndarray, components: int = 50, nu: float = 0.1,
              gamma: str | float = "scale"):
  """A PCA (``components``, at most the features' rank) and OneClassSVM(nu, gamma) pipeline
  fitted on ``train`` (rows of features, e.g. flattened pixels in [0, 1])."""
  from sklearn.decomposition import PCA
  from sklearn.pipeline import make_pipeline
  from sklearn.svm import OneClassSVM
  train = rows(train)
  model = make_pipeline(PCA(min(components, *train.shape), random_state=0),
                        OneClassSVM(nu=nu, gamma=gamma))
  return model.fit(train)


def ocsvm_score(model, features: np.ndarray) -> np.ndarray:
  """Minus the fitted SVM's decision function: positive outside its support."""
  return -model.decision_function(rows(features))


def ocsvm_scores(train: np.ndarray, test: np.ndarray, components: int = 50, nu: float = 0.1,
                 gamma: str | float = "scale") -> np.ndarray:
  """Anomaly scores of ``test`` under ``fit_ocsvm(train, ...)``."""
  return ocsvm_score(fit_ocsvm(train, components, nu, gamma), test)
