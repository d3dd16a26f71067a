"""One-class baselines outside the JAX core: scikit-learn fits on host arrays.

  ocsvm_scores   a one-class SVM (Schoelkopf et al. 2001; RBF kernel) on PCA features of
                 the normal training examples (Ruff et al. 2018's shallow baseline, here
                 with PCA first, as the raw 784 pixels make the kernel slow and noisy)

Convention as in ood.py: higher score = more anomalous.
"""
import numpy as np


def ocsvm_scores(train: np.ndarray, test: np.ndarray, components: int = 50, nu: float = 0.1,
                 gamma: str | float = "scale") -> np.ndarray:
  """Anomaly scores of ``test`` (rows of features, e.g. flattened pixels in [0, 1]) under
  a PCA (``components``, fitted on ``train``) and OneClassSVM(nu, gamma) fitted on the
  PCA features of ``train``: minus the SVM's decision function."""
  from sklearn.decomposition import PCA
  from sklearn.pipeline import make_pipeline
  from sklearn.svm import OneClassSVM
  train = train.reshape(len(train), -1).astype(np.float64)
  test = test.reshape(len(test), -1).astype(np.float64)
  components = min(components, *train.shape)
  model = make_pipeline(PCA(components, random_state=0), OneClassSVM(nu=nu, gamma=gamma))
  model.fit(train)
  return -model.decision_function(test)
