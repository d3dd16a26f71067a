"""Corruption robustness (MNIST-C, Mu & Gilmer 2019): classifiers trained on clean images,
tested on the clean test split and on copies of it under each corruption of
``config.corruptions`` (the ``corrupt(NAME)`` op of research/data/corruptions.py, applied to
the raw test images before the run's own preprocessing, at MNIST-C's severities).

Per model (``config.classifiers``, ``config.contrast``: classifiers shown beside them, e.g.
an MLP; ``config.generative``: the CVAE's Bayes classifier) and seed, one run of its config
on ``config.dataset``; its final evaluations (research/evaluators/group_accuracy.py) give the
clean test error and the test error under each corruption. Summaries, per run and then
averaged over seeds (95% intervals):

  mce                  the mean corruption error as MNIST-C reports it: the plain test
                       error averaged over the corruptions, unnormalised
  mean_error_increase  mce minus the clean test error
  relative_mce         ImageNet-C's normalised form (Hendrycks & Dietterich 2019) with this
                       study's ``config.baseline`` in AlexNet's place: the mean over
                       corruptions of E_c / E_c(baseline), E_c(baseline) its mean over seeds
                       (1.0 for the baseline itself on average)

Outputs in the study directory: corruptions.csv / .md (one row per model and corruption, and
``clean``: error, interval, MNIST-C's published CNN error where ``ANCHORS`` has it),
summary.csv / .md (one row per model: clean error, mce, mean_error_increase, relative_mce)
and corruptions.png (error per corruption, one bar per model).
"""
import math
import os

import ml_collections
import numpy as np

from research.data import corruptions as corruptions_lib
from research.studies import base

UNREAD_EVALS = ("test", "report", "classify", "nll", "images", "latents")
CLEAN = "clean"  # the evaluation (and row) of the uncorrupted test split
# MNIST-C's test errors of its CNN per corruption (Mu & Gilmer 2019, Table/Figure of
# results), name -> error. Empty: none could be verified as text here; the column is left
# out rather than filled from memory.
ANCHORS: dict[str, float] = {}


def corruption_eval(name: str) -> ml_collections.ConfigDict:
  """The final test evaluation under corruption ``name`` (``clean``: none), scalars under
  ``NAME/``."""
  shift = "" if name == CLEAN else f"corrupt({name!r})"
  return ml_collections.ConfigDict(dict(type="group_accuracy", data="test", every_steps=0,
                                        prefix=name, shift=shift))


def run_summary(results: dict[str, float], corruptions, baseline_errors=None) -> dict:
  """One run's mce, mean_error_increase (research/data/corruptions.py) and, with
  ``baseline_errors`` (corruption -> the baseline's mean error), relative_mce."""
  errors = {c: results[f"{c}/error"] for c in corruptions}
  out = corruptions_lib.mean_corruption_error(errors, results[f"{CLEAN}/error"])
  out = {"mce": out["mean_corruption_error"], "mean_error_increase": out["mean_error_increase"]}
  if baseline_errors is not None:
    out["relative_mce"] = float(np.mean([errors[c] / max(baseline_errors[c], 1e-12)
                                         for c in corruptions]))
  return out


class Study:
  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config

  def models(self) -> dict[str, str]:
    c = self.config
    return {**{name: "classifier" for name in c.classifiers},
            **{name: "contrast" for name in c.contrast},
            **{name: "generative" for name in c.generative}}

  def run_config(self, name: str, seed: int) -> ml_collections.ConfigDict:
    c = self.config
    config = base.study_config(name, base.config_arg(c.dataset), seed, c.data_dir,
                               c.total_steps, c.num_epochs)
    config.gate = ""
    config.data.name = c.dataset
    if name in c.generative and c.class_samples > 0:
      config.task.class_samples = c.class_samples
    base.drop_evals(config, UNREAD_EVALS)
    for corruption in (CLEAN, *c.corruptions):
      config.evals[corruption] = corruption_eval(corruption)
    return config

  def runs(self, directory: str) -> list[base.Run]:
    return [base.Run(f"{name}_seed{seed}", self.run_config(name, seed),
                     {"config": name, "family": kind, "seed": seed})
            for seed in self.config.seeds for name, kind in self.models().items()]

  def analyze(self, results: list[base.RunResult], directory: str) -> dict[str, float]:
    c = self.config
    by_model = {name: [r for r in results if r.run.columns["config"] == name]
                for name in self.models()}
    baseline = by_model.get(c.baseline) or None
    baseline_errors = None if baseline is None else {
        corruption: float(np.mean([r.results[f"{corruption}/error"] for r in baseline]))
        for corruption in c.corruptions}
    rows, summaries = [], []
    for name, kind in self.models().items():
      mine = by_model[name]
      for corruption in (CLEAN, *c.corruptions):
        row = {"config": name, "family": kind, "corruption": corruption, "seeds": len(mine),
               **base.interval_columns(mine, {f"{corruption}/error": "test_error"})}
        if corruption in ANCHORS:
          row["anchor_mnist_c_cnn_error"] = ANCHORS[corruption]
        rows.append(row)
      per_run = [base.RunResult(r.run, r.workdir, run_summary(r.results, c.corruptions,
                                                              baseline_errors),
                                r.wall_s, r.reused) for r in mine]
      columns = {k: k for k in per_run[0].results}
      summaries.append({"config": name, "family": kind, "seeds": len(mine),
                        **base.interval_columns(mine, {f"{CLEAN}/error": "clean_error"}),
                        **base.interval_columns(per_run, columns),
                        "wall_s": float(np.mean([r.wall_s for r in mine]))})
    base.write_table(rows, os.path.join(directory, "corruptions"))
    base.write_table(summaries, os.path.join(directory, "summary"))
    plot(rows, os.path.join(directory, "corruptions.png"), c.dataset)
    return {f"{s['config']}_{key}": s[key] for s in summaries
            for key in ("clean_error", "mce", "relative_mce") if key in s}


def plot(rows: list[dict], path: str, dataset: str) -> None:
  from research.evaluation.images import pyplot
  plt = pyplot()
  corruptions = list(dict.fromkeys(r["corruption"] for r in rows))
  configs = list(dict.fromkeys(r["config"] for r in rows))
  width = 0.8 / len(configs)
  fig, ax = plt.subplots(figsize=(max(8, 0.7 * len(corruptions) * len(configs) ** 0.5), 4.5))
  for i, name in enumerate(configs):
    mine = {r["corruption"]: r for r in rows if r["config"] == name}
    x = np.arange(len(corruptions)) + (i - (len(configs) - 1) / 2) * width
    errors = [0.0 if math.isnan(mine[c]["test_error_ci95"]) else mine[c]["test_error_ci95"]
              for c in corruptions]
    ax.bar(x, [mine[c]["test_error"] for c in corruptions], width, yerr=errors, capsize=2,
           label=f"{name} ({mine[corruptions[0]]['family']})")
  ax.set(xticks=np.arange(len(corruptions)), ylabel="test error", ylim=(0, 1),
         title=f"corruptions of the {dataset} test split (95% intervals over seeds)")
  ax.set_xticklabels(corruptions, rotation=45, ha="right", fontsize=8)
  ax.legend(fontsize=8)
  ax.grid(axis="y", alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
