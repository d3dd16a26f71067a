"""A run's training curves, ``WORKDIR/curves.png``, plotted from its metrics.jsonl at the end:
the loss (where the task logs one: the VAEs log their bound as neg_elbo instead) and the main
metric (accuracy for classifiers, neg_elbo for VAEs, ...), each on the training batches
(``train/X``) and on validation (``val/X``), against the step; with replicas one line of each
per replica."""
import collections
import math
import os

from absl import logging

from research.evaluation import images as images_lib
from research.train import workdir as workdir_lib

SPLITS = ("train", "val")
# The main metric: the first of these that both splits have, else the first metric they share.
MAIN_METRICS = ("accuracy", "neg_elbo", "f1_micro", "micro_f1", "exact_match", "nll",
                "bits_per_dim")
NOT_METRICS = ("loss", "learning_rate", "examples_per_sec", "grad_norm")


def series(records: list[dict]) -> dict[tuple[str, str, str], tuple[list, list]]:
  """``{(scope, split, metric): (steps, values)}`` of the train/val scalars in ``records``
  (scope: ``replica_I`` or ""), finite values only."""
  out = collections.defaultdict(lambda: ([], []))
  for record in records:
    for key, value in record.items():
      parts = key.split("/")
      scope = parts.pop(0) if parts[0].startswith("replica_") and len(parts) > 2 else ""
      if len(parts) == 2 and parts[0] in SPLITS and isinstance(value, (int, float)) \
          and math.isfinite(value):
        steps, values = out[(scope, parts[0], parts[1])]
        steps.append(record["step"])
        values.append(value)
  return dict(out)


def main_metric(curves: dict) -> str | None:
  """The metric beside the loss: see MAIN_METRICS; None when the splits share none."""
  names = {split: {m for (_, s, m) in curves if s == split} for split in SPLITS}
  shared = names["train"] & names["val"] or names["train"] or names["val"]
  candidates = sorted(shared - set(NOT_METRICS))
  preferred = [m for m in MAIN_METRICS if m in candidates]
  return (preferred or candidates or [None])[0]


def write_curves(workdir: str, records: list[dict]) -> str | None:
  """Plots ``records`` (metrics.jsonl's) to ``WORKDIR/curves.png``; returns its path, or None
  when they hold no train/val scalars (nothing to plot) or the file cannot be written."""
  curves = series(records)
  if not curves:
    logging.info("No training curves to plot in %s: metrics.jsonl has no train/val scalars.",
                 workdir)
    return None
  panels = [m for m in ("loss", main_metric(curves)) if m is not None
            and any(metric == m for (_, _, metric) in curves)]
  scopes = sorted({scope for (scope, _, metric) in curves if metric in panels},
                  key=lambda s: (len(s), s))  # replica_2 before replica_10
  plt = images_lib.pyplot()
  fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.0), squeeze=False)
  colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  for ax, metric in zip(axes[0], panels):
    for i, scope in enumerate(scopes):
      for j, (split, style) in enumerate((("train", dict(linestyle="-")),
                                          ("val", dict(linestyle="--", marker="o",
                                                       markersize=3)))):
        if (scope, split, metric) in curves:
          steps, values = curves[(scope, split, metric)]
          color = colors[(i if len(scopes) > 1 else j) % len(colors)]  # replicas: one each
          ax.plot(steps, values, color=color, label=" ".join(filter(None, [scope, split])),
                  **style)
    ax.set_xlabel("step")
    ax.set_title(metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
  fig.suptitle(images_lib.run_title(workdir, "training curves"))
  fig.tight_layout()
  path = os.path.join(workdir, workdir_lib.CURVES_FILE)
  try:
    fig.savefig(path, dpi=100)
  except OSError as e:  # a full or read-only disk: the run's results are already written
    logging.warning("Could not write the training curves to %s: %s", path, e)
    return None
  finally:
    plt.close(fig)
  return path
