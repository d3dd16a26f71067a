"""Background shift (a duck on a sofa): classifiers trained where the background gives the
class away with probability rho, tested where it does not (Biased MNIST, Bahng et al. 2020;
the data: research/data/background_shift.py).

Per source (``config.sources``), background kind (``config.kinds``), rho (``config.rhos``),
model and seed, one run on ``background_shift/SOURCE_KIND_rhoR``:

  discriminative  ``config.classifiers`` (cnn, resnet): their configs for the source
  generative      ``config.generative`` (cvae): the class-conditional VAE as a Bayes
                  classifier, argmax_y log p(x | y) + log p(y)
                  (research/tasks/generative_classifier.py), its decoder modelling the RGB
                  image with ``config.likelihood`` (discretized logistic: 8-bit colour
                  levels) on pixels scaled to [0, 1]

Each trains on the biased ``train`` split; the only data it sees besides is the biased
``val`` split (its periodic evaluation; no model or checkpoint is chosen on test: every run
reports its last step). The final evaluations (research/evaluators/group_accuracy.py) give
the accuracy on ``val`` (biased) and on the unbiased ``test`` split, the latter also split
into bias-aligned (background == label) and bias-conflicting examples. Outputs in the study
directory:

  background_shift.csv / .md  per source, kind, rho and model: mean accuracies over seeds
                              with 95% intervals (val, test, aligned, conflicting), the
                              group sizes, the published Biased MNIST anchors where they
                              apply (``ANCHORS``)
  margin.md                   per source, kind and rho: each generative model's unbiased
                              test accuracy minus each discriminative model's, in points
  background_shift.png        unbiased test accuracy per rho and model, one panel per
                              source and kind
"""
import math
import os

import ml_collections
import numpy as np

from research.studies import base

UNREAD_EVALS = ("test", "report", "classify", "nll", "images", "latents")
BIAS_FEATURE = "background"  # background == label: the bias-aligned examples
COLUMNS = {"val_groups/accuracy": "val_accuracy", "test/accuracy": "test_accuracy",
           "test/aligned_accuracy": "aligned_accuracy",
           "test/conflicting_accuracy": "conflicting_accuracy"}
# Published unbiased test accuracies on Biased MNIST (colour backgrounds, MNIST digits),
# Bahng et al. 2020: (source, kind, rho) -> {method: accuracy}. Empty: none could be
# verified as text (the paper's table and the clovaai/rebias README's Table 1 are images).
ANCHORS: dict[tuple[str, str, float], dict[str, float]] = {}


def cell_name(source: str, kind: str, rho: float) -> str:
  """``SOURCE_KIND_rhoR``, e.g. mnist_colors_rho99 (rho 0.99): a background_shift config."""
  return f"{source}_{kind}_rho{str(rho)[2:]}"


def dataset_name(source: str, kind: str, rho: float) -> str:
  """The TFDS name of a background-shift config, e.g. background_shift/mnist_colors_rho99."""
  return f"background_shift/{cell_name(source, kind, rho)}"


class Study:
  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config

  def models(self) -> dict[str, str]:
    return {**{name: "discriminative" for name in self.config.classifiers},
            **{name: "generative" for name in self.config.generative}}

  def run_config(self, name: str, family: str, source: str, background: str, rho: float,
                 seed: int) -> ml_collections.ConfigDict:
    c = self.config
    config = base.study_config(name, base.config_arg(source), seed, c.data_dir,
                               c.total_steps, c.num_epochs)
    config.gate = ""
    config.data.name = dataset_name(source, background, rho)
    config.data.train_split, config.data.val_split, config.data.test_split = (
        "train", "val", "test")
    config.data.features = ("image", "label", BIAS_FEATURE)
    if family == "generative":  # RGB levels, not binarized grey ones
      config.data.preprocess = "scale(0, 1)"
      config.task.likelihood = c.likelihood
      if c.class_samples > 0:
        config.task.class_samples = c.class_samples
    base.drop_evals(config, UNREAD_EVALS)
    config.evals.val_groups = ml_collections.ConfigDict(dict(
        type="group_accuracy", data="val", every_steps=0, prefix="val_groups",
        aligned_with=BIAS_FEATURE))
    config.evals.test = ml_collections.ConfigDict(dict(
        type="group_accuracy", data="test", every_steps=0, prefix="test",
        aligned_with=BIAS_FEATURE))
    return config

  def cells(self):
    c = self.config
    return [(source, background, rho) for source in c.sources for background in c.kinds
            for rho in c.rhos]

  def runs(self, directory: str) -> list[base.Run]:
    return [base.Run(f"{cell_name(source, background, rho)}_{name}_seed{seed}",
                     self.run_config(name, family, source, background, rho, seed),
                     {"source": source, "kind": background, "rho": rho, "config": name,
                      "family": family, "seed": seed})
            for source, background, rho in self.cells() for seed in self.config.seeds
            for name, family in self.models().items()]

  def analyze(self, results: list[base.RunResult], directory: str) -> dict[str, float]:
    rows = []
    for source, background, rho in self.cells():
      for name, family in self.models().items():
        mine = [r for r in results if (r.run.columns["source"], r.run.columns["kind"],
                                       r.run.columns["rho"], r.run.columns["config"])
                == (source, background, rho, name)]
        row = {"source": source, "kind": background, "rho": rho, "config": name,
               "family": family, "seeds": len(mine), **base.interval_columns(mine, COLUMNS),
               "aligned_examples": int(mine[0].results["test/aligned_examples"]),
               "conflicting_examples": int(mine[0].results["test/conflicting_examples"]),
               "wall_s": float(np.mean([r.wall_s for r in mine]))}
        for method, accuracy in ANCHORS.get((source, background, rho), {}).items():
          row[f"anchor_{method}"] = accuracy
        rows.append(row)
    base.write_table(rows, os.path.join(directory, "background_shift"))
    margins = margin_rows(rows)
    base.write_table(margins, os.path.join(directory, "margin"))
    plot(rows, os.path.join(directory, "background_shift.png"))
    cell = lambda r: cell_name(r["source"], r["kind"], r["rho"])  # noqa: E731
    summary = {f"{cell(r)}_{r['config']}_test_accuracy": r["test_accuracy"] for r in rows}
    summary.update({f"{cell(m)}_{m['generative']}_minus_{m['discriminative']}_points":
                    m["margin_points"] for m in margins})
    return summary


def margin_rows(rows: list[dict]) -> list[dict]:
  """Per source, kind and rho: each generative model's mean unbiased test accuracy minus each
  discriminative model's, in percentage points."""
  out = []
  for row in rows:
    if row["family"] != "generative":
      continue
    for other in rows:
      if other["family"] == "discriminative" and all(
          other[k] == row[k] for k in ("source", "kind", "rho")):
        out.append({"source": row["source"], "kind": row["kind"], "rho": row["rho"],
                    "generative": row["config"], "discriminative": other["config"],
                    "margin_points": 100.0 * (row["test_accuracy"] - other["test_accuracy"])})
  return out


def plot(rows: list[dict], path: str) -> None:
  from research.evaluation.images import pyplot
  plt = pyplot()
  panels = list(dict.fromkeys((r["source"], r["kind"]) for r in rows))
  fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
  configs = list(dict.fromkeys(r["config"] for r in rows))
  width = 0.8 / len(configs)
  for ax, (source, kind) in zip(axes[0], panels):
    rhos = sorted({r["rho"] for r in rows if (r["source"], r["kind"]) == (source, kind)})
    for i, name in enumerate(configs):
      mine = {r["rho"]: r for r in rows if (r["source"], r["kind"], r["config"])
              == (source, kind, name)}
      x = np.arange(len(rhos)) + (i - (len(configs) - 1) / 2) * width
      y = [mine[rho]["test_accuracy"] for rho in rhos]
      errors = [0.0 if math.isnan(mine[rho]["test_accuracy_ci95"])
                else mine[rho]["test_accuracy_ci95"] for rho in rhos]
      ax.bar(x, y, width, yerr=errors, capsize=3, label=f"{name} ({mine[rhos[0]]['family']})")
    ax.axhline(0.1, color="grey", lw=0.8, ls=":")  # chance
    ax.set(xticks=np.arange(len(rhos)), xticklabels=[f"rho {rho}" for rho in rhos],
           ylim=(0, 1), ylabel="unbiased test accuracy", title=f"{source} on {kind}")
    ax.legend(fontsize=8)
  fig.suptitle("background shift: trained biased, tested unbiased (95% intervals over seeds)")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
