"""Evaluation of a classifier's predictions over a whole split: per-class precision and
recall, the confusion matrix, and calibration (expected calibration error and a
reliability diagram). Calibration reads ``probs`` as probabilities; for hinge losses (an
SVM) they are softmaxed margins, which nothing fits to be probabilities: their ECE is still
reported (studies tabulate it beside the other models') but measures those margins, and
their reliability diagram says so (``HINGE_NOTE``)."""
import os

import numpy as np

from research.evaluation.images import pyplot

# scikit-learn (~1-2 s to import) is imported inside the functions that use it, so a run
# only pays for it when it evaluates.


def calibration_bins(probs: np.ndarray, labels: np.ndarray, num_bins: int = 15):
  """Per confidence bin (equal width on [0, 1]): count, mean confidence, accuracy."""
  confidence, correct = probs.max(-1), (probs.argmax(-1) == labels).astype(np.float64)
  index = np.minimum((confidence * num_bins).astype(int), num_bins - 1)
  count = np.bincount(index, minlength=num_bins)
  safe = np.maximum(count, 1)
  mean_confidence = np.bincount(index, confidence, num_bins) / safe
  accuracy = np.bincount(index, correct, num_bins) / safe
  return count, mean_confidence, accuracy


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, num_bins: int = 15) -> float:
  """sum_b n_b / N * |accuracy_b - confidence_b| over equal-width confidence bins."""
  count, confidence, accuracy = calibration_bins(probs, labels, num_bins)
  return float(np.sum(count / count.sum() * np.abs(accuracy - confidence)))


HINGE_NOTE = "confidence: softmaxed hinge margins, not calibrated probabilities"


def plot_reliability(probs, labels, path: str | None, num_bins: int = 15, title: str = "",
                     note: str = ""):
  """The reliability diagram: per equal-width confidence bin, the accuracy (bars) against
  the diagonal of perfect calibration, and below it how many examples fall in each bin
  (bars, each with its count). ``title`` (e.g. run, split and step) and ``note`` (e.g.
  ``HINGE_NOTE``) head the figure above the ECE. Saved to ``path`` unless None; returns
  the (closed) matplotlib Figure."""
  count, confidence, accuracy = calibration_bins(probs, labels, num_bins)
  edges = np.linspace(0, 1, num_bins + 1)
  plt = pyplot()
  fig, (ax, ax_count) = plt.subplots(2, 1, figsize=(5, 6.2), sharex=True, layout="constrained",
                                     gridspec_kw={"height_ratios": (3, 1.3)})
  ax.bar(edges[:-1], np.where(count > 0, accuracy, 0), width=1 / num_bins, align="edge",
         edgecolor="black", label="accuracy in the bin")
  ax.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
  ax.set(ylabel="accuracy", xlim=(0, 1), ylim=(0, 1))
  ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False, fontsize=8)
  ece = expected_calibration_error(probs, labels, num_bins)
  fig.suptitle("\n".join(filter(None, [title, note, f"ECE {ece:.4f} ({num_bins} bins, "
                                                      f"{int(count.sum())} examples)"])),
               fontsize=10)
  bars = ax_count.bar(edges[:-1], count, width=1 / num_bins, align="edge", color="gray",
                      edgecolor="black")
  ax_count.bar_label(bars, labels=[str(c) if c else "" for c in count], fontsize=7,
                     rotation=90, padding=2)
  ax_count.set(xlabel="confidence (the largest probability)", ylabel="examples",
               ylim=(0, max(1, count.max()) * 1.45))
  if path is not None:
    fig.savefig(path)
  plt.close(fig)
  return fig


def plot_confusion(labels, predictions, num_classes: int, path: str | None, title: str = ""):
  """The confusion matrix (rows the true labels, columns the predicted ones), titled
  ``title``; saved to ``path`` unless None; returns the (closed) matplotlib Figure."""
  from sklearn import metrics as sk_metrics
  plt = pyplot()
  matrix = sk_metrics.confusion_matrix(labels, predictions, labels=np.arange(num_classes))
  size = max(4.5, num_classes * 0.4)
  fig, ax = plt.subplots(figsize=(size, size))
  sk_metrics.ConfusionMatrixDisplay(matrix).plot(ax=ax, colorbar=False,
                                                 include_values=num_classes <= 20)
  ax.set(xlabel="predicted label", ylabel="true label")
  ax.set_title("\n".join(filter(None, [title, f"confusion matrix, {len(labels)} examples"])),
               fontsize=10)
  fig.tight_layout()
  if path is not None:
    fig.savefig(path)
  plt.close(fig)
  return fig


def report(probs: np.ndarray, labels: np.ndarray, directory: str | None, prefix: str,
           title: str = "", note: str = "") -> dict:
  """Scalars over the split; unless ``directory`` is None, also writes there
  ``<prefix>_confusion.png``, ``<prefix>_reliability.png`` (both headed by ``title``, e.g.
  the run, split and step; the reliability diagram also by ``note``, e.g. HINGE_NOTE) and
  per-class precision and recall in ``<prefix>_per_class.csv``."""
  from sklearn import metrics as sk_metrics
  num_classes = probs.shape[-1]
  predictions = probs.argmax(-1)
  precision, recall, f1, support = sk_metrics.precision_recall_fscore_support(
      labels, predictions, labels=np.arange(num_classes), zero_division=0)
  if directory is not None:
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, f"{prefix}_per_class.csv"), "w") as f:
      f.write("class,precision,recall,f1,support\n")
      for c in range(num_classes):
        f.write(f"{c},{precision[c]:.6f},{recall[c]:.6f},{f1[c]:.6f},{support[c]}\n")
    plot_confusion(labels, predictions, num_classes,
                   os.path.join(directory, f"{prefix}_confusion.png"), title=title)
    plot_reliability(probs, labels, os.path.join(directory, f"{prefix}_reliability.png"),
                     title=title, note=note)
  return {
      "ece": expected_calibration_error(probs, labels),
      "precision_macro": float(precision.mean()),
      "recall_macro": float(recall.mean()),
      "f1_macro": float(f1.mean()),
  }


def multilabel_report(probs: np.ndarray, labels: np.ndarray, directory: str | None, prefix: str,
                      threshold: float = 0.5) -> dict:
  """Scalars of a multi-label classifier over the split, labels predicted where
  ``probs > threshold``: micro and macro precision, recall and F1 (scikit-learn), and
  the exact-match ratio. Unless ``directory`` is None, also writes per-label precision,
  recall, F1 and support to ``<prefix>_per_label.csv``."""
  from sklearn import metrics as sk_metrics
  predictions = (probs > threshold).astype(np.int32)
  scores = {}
  for average in ("micro", "macro"):
    precision, recall, f1, _ = sk_metrics.precision_recall_fscore_support(
        labels, predictions, average=average, zero_division=0)
    scores.update({f"precision_{average}": float(precision), f"recall_{average}": float(recall),
                   f"f1_{average}": float(f1)})
  scores["exact_match"] = float(sk_metrics.accuracy_score(labels, predictions))
  if directory is not None:
    os.makedirs(directory, exist_ok=True)
    precision, recall, f1, support = sk_metrics.precision_recall_fscore_support(
        labels, predictions, average=None, zero_division=0)
    with open(os.path.join(directory, f"{prefix}_per_label.csv"), "w") as f:
      f.write("label,precision,recall,f1,support\n")
      for k in range(labels.shape[-1]):
        f.write(f"{k},{precision[k]:.6f},{recall[k]:.6f},{f1[k]:.6f},{support[k]}\n")
  return scores
