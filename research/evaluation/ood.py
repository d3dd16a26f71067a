"""Out-of-distribution (OOD) detection: per-example scores, and how well they separate
in-distribution from OOD data.

Convention everywhere: **higher score = more anomalous / more out-of-distribution**; a
score a paper defines as a confidence (MSP, the negative Mahalanobis distance) is negated.

  msp_score                  -max softmax probability (Hendrycks & Gimpel 2017)
  energy_score               E(x) = -T logsumexp(f(x) / T) (Liu et al. 2020)
  mahalanobis_score          min_c squared Mahalanobis distance to class means under a
                             tied covariance fitted on training features (Lee et al. 2018)
  complexity_corrected_score S(x) = NLL_bits(x) - L(x), L the PNG length (Serra et al. 2020)
  typicality_test            |mean NLL of a batch - the training entropy| (Nalisnick et al.
                             2019), a score per batch of M examples
  ood_metrics                AUROC, AUPR-in, AUPR-out and FPR at 95% TPR (scikit-learn)
  acceptance_threshold       the threshold that accepts a fraction of held-out
                             in-distribution examples (no OOD data needed to choose it)
"""
import dataclasses
import io
import math

import jax
import jax.numpy as jnp
import numpy as np

# scikit-learn, scipy and PIL are imported inside the functions that use them (see
# classification.py): a run only pays for them when it evaluates.

TPR_LEVEL = 0.95  # FPR95: the fraction of OOD examples detected at the threshold


def msp_score(logits: jax.Array) -> jax.Array:
  """-max_k softmax(logits)_k per example, in [-1, -1/K] (Hendrycks & Gimpel 2017, "A
  baseline for detecting misclassified and out-of-distribution examples")."""
  return -jnp.max(jax.nn.softmax(logits, axis=-1), axis=-1)


def energy_score(logits: jax.Array, temperature: float = 1.0) -> jax.Array:
  """The free energy E(x) = -T logsumexp(f(x) / T) per example (Liu et al. 2020,
  "Energy-based out-of-distribution detection"): in-distribution data has lower energy."""
  return -temperature * jax.nn.logsumexp(logits / temperature, axis=-1)


@dataclasses.dataclass(frozen=True)
class GaussianFit:
  """Class-conditional Gaussians with a tied covariance, in float64."""
  classes: np.ndarray  # (C,) the classes seen in training
  means: np.ndarray  # (C, D)
  covariance: np.ndarray  # (D, D), shared by every class
  precision: np.ndarray  # (D, D), the covariance's Moore-Penrose pseudo-inverse


def fit_gaussian(features: np.ndarray, labels: np.ndarray, num_classes: int) -> GaussianFit:
  """Class means and the tied covariance (1/N) sum_c sum_{i in c} (x_i - mu_c)(x_i - mu_c)^T
  of TRAINING features (Lee et al. 2018, "A simple unified framework for detecting
  out-of-distribution samples and adversarial attacks"). Classes below ``num_classes``
  without a training example are left out. The precision is a pseudo-inverse (not a ridge):
  penultimate features are often rank-deficient (dead ReLUs, more dimensions than
  examples), and the pseudo-inverse measures distance within the features' span."""
  features = np.asarray(features, np.float64).reshape(len(features), -1)
  labels = np.asarray(labels)
  classes = np.array([c for c in range(num_classes) if np.any(labels == c)])
  means = np.stack([features[labels == c].mean(0) for c in classes])
  centred = features - means[np.searchsorted(classes, labels)]
  covariance = centred.T @ centred / len(features)
  return GaussianFit(classes, means, covariance, np.linalg.pinv(covariance, hermitian=True))


def mahalanobis_score(fitted: GaussianFit, features: np.ndarray) -> np.ndarray:
  """min_c (x - mu_c)^T Sigma^+ (x - mu_c) per example: the squared Mahalanobis distance to
  the closest class mean (Lee et al. 2018, without their input perturbation and
  layer ensemble)."""
  features = np.asarray(features, np.float64).reshape(len(features), -1)
  distances = [np.einsum("nd,de,ne->n", features - mean, fitted.precision, features - mean)
               for mean in fitted.means]
  return np.min(np.stack(distances, axis=1), axis=1)


def input_complexity_bits(images: np.ndarray) -> np.ndarray:
  """L(x): each uint8 image's length in bits once compressed losslessly as PNG (PIL, at
  compression level 9), the complexity estimate of Serra et al. 2020 ("Input complexity
  and out-of-distribution detection with likelihood-based generative models"). ``images``:
  (N, H, W) or (N, H, W, C) with C in 1, 3, 4."""
  from PIL import Image
  images = np.asarray(images)
  if images.dtype != np.uint8:
    raise ValueError(f"input_complexity_bits takes uint8 images, not {images.dtype}")
  if images.ndim == 4 and images.shape[-1] == 1:
    images = images[..., 0]
  bits = np.empty(len(images), np.float64)
  for i, image in enumerate(images):
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=9)
    bits[i] = 8.0 * buffer.tell()
  return bits


def nats_to_bits(nats):
  return np.asarray(nats, np.float64) / math.log(2.0)


def complexity_corrected_score(nll_bits: np.ndarray, complexity_bits: np.ndarray) -> np.ndarray:
  """S(x) = NLL_bits(x) - L(x) (Serra et al. 2020): the likelihood ratio against a universal
  compressor, both in bits per image (dividing both by the image's dimension gives the
  paper's bits per dimension and the same ranking). Higher = more OOD."""
  return np.asarray(nll_bits, np.float64) - np.asarray(complexity_bits, np.float64)


def batch_means(nll: np.ndarray, batch_size: int) -> np.ndarray:
  """The mean of each consecutive batch of ``batch_size`` values (a partial last one dropped)."""
  nll = np.asarray(nll, np.float64)
  num = len(nll) // batch_size
  return nll[:num * batch_size].reshape(num, batch_size).mean(1)


@dataclasses.dataclass(frozen=True)
class Typicality:
  scores: np.ndarray  # per batch of M: |mean NLL of the batch - entropy|
  threshold: float  # epsilon: the bootstrapped quantile of the validation batches' scores
  ood: np.ndarray  # per batch: scores > threshold


def typicality_test(nll: np.ndarray, train_nll: np.ndarray, val_nll: np.ndarray,
                    batch_size: int, quantile: float = 0.99, num_bootstrap: int = 1000,
                    seed: int = 0) -> Typicality:
  """Nalisnick et al. 2019's typicality test ("Detecting out-of-distribution inputs to deep
  generative models using typicality"), on batches of M = ``batch_size`` examples.

  The entropy is estimated by the mean NLL of the training examples (``train_nll``); a
  batch of M test examples (consecutive rows of ``nll``, in nats or bits as the others) scores
  |mean NLL of the batch - entropy|. The threshold epsilon is the ``quantile`` of that
  score over ``num_bootstrap`` batches of M drawn with replacement from held-out
  in-distribution NLLs (``val_nll``, not the training ones); a batch above it is OOD."""
  entropy = float(np.mean(np.asarray(train_nll, np.float64)))
  val_nll = np.asarray(val_nll, np.float64)
  draws = np.random.default_rng(seed).choice(len(val_nll), (num_bootstrap, batch_size))
  threshold = float(np.quantile(np.abs(val_nll[draws].mean(1) - entropy), quantile))
  scores = np.abs(batch_means(nll, batch_size) - entropy)
  return Typicality(scores, threshold, scores > threshold)


def fpr_at_tpr(in_scores: np.ndarray, out_scores: np.ndarray, tpr: float = TPR_LEVEL) -> float:
  """The FPR at ``tpr`` TPR, OOD the positive class: at the highest threshold t whose rule
  "OOD if score >= t" detects at least ``tpr`` of the OOD examples, the fraction of
  in-distribution examples with score >= t (the first ROC point with TPR >= ``tpr``).
  This is the common "FPR95" (Hendrycks & Gimpel 2017; Liang et al. 2018) with OOD as the
  positive class, as the Outlier Exposure code's ``out_as_pos`` (which takes the ROC point
  whose TPR is closest to 95%, not the first at or above it); with in-distribution as the
  positive class (ODIN's FPR at 95% TPR) the roles swap and the number can differ."""
  from sklearn.metrics import roc_curve
  y, scores = _labelled(in_scores, out_scores)
  fpr, tprs, _ = roc_curve(y, scores, drop_intermediate=False)
  return float(fpr[np.searchsorted(tprs, tpr, side="left")])


def _labelled(in_scores, out_scores) -> tuple[np.ndarray, np.ndarray]:
  """(labels, scores): in-distribution 0, OOD 1."""
  in_scores, out_scores = np.asarray(in_scores, np.float64), np.asarray(out_scores, np.float64)
  y = np.concatenate([np.zeros(len(in_scores)), np.ones(len(out_scores))])
  return y, np.concatenate([in_scores, out_scores])


def ood_metrics(in_scores: np.ndarray, out_scores: np.ndarray) -> dict[str, float]:
  """How well a score (higher = more OOD) separates OOD from in-distribution examples:

    auroc         ROC AUC, OOD positive (0.5: chance; 1: every OOD example scores higher)
    aupr_in       average precision with in-distribution positive, the scores negated
    aupr_out      average precision with OOD positive
    fpr_at_95_tpr ``fpr_at_tpr`` at 95%: lower is better

  All nan when a score is not finite (e.g. a diverged model's).
  """
  from sklearn.metrics import average_precision_score, roc_auc_score
  y, scores = _labelled(in_scores, out_scores)
  if not np.all(np.isfinite(scores)):
    return dict.fromkeys(("auroc", "aupr_in", "aupr_out", "fpr_at_95_tpr"), float("nan"))
  return {"auroc": float(roc_auc_score(y, scores)),
          "aupr_in": float(average_precision_score(1 - y, -scores)),
          "aupr_out": float(average_precision_score(y, scores)),
          "fpr_at_95_tpr": fpr_at_tpr(in_scores, out_scores)}


def acceptance_threshold(reference_scores: np.ndarray, accept: float) -> float:
  """The smallest threshold t among the scores of held-out in-distribution examples for
  which the rule "OOD if score > t" accepts at least ``accept`` of them: chosen without
  any OOD example, as a deployed detector's must be (e.g. accept 95% of in-scope
  validation queries, then report the OOD recall at t)."""
  scores = np.sort(np.asarray(reference_scores, np.float64))
  return float(scores[math.ceil(accept * len(scores)) - 1])
