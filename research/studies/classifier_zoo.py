"""Every classifier config on one dataset: test accuracy, expected calibration error and
wall time, over seeds (mean and 95% interval).

Writes ``zoo.csv`` / ``zoo.md`` (one row per config) and ``zoo.png`` (accuracy against
wall time) in the study directory.
"""
import os

import ml_collections
import numpy as np

from research.studies import base


class Study:
  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config

  def run_config(self, name: str, seed: int) -> ml_collections.ConfigDict:
    return base.study_config(name, self.config.dataset, seed, self.config.data_dir,
                             self.config.total_steps)

  def runs(self, directory: str) -> list[base.Run]:
    return [base.Run(f"{name}_seed{seed}", self.run_config(name, seed),
                     {"config": name, "seed": seed})
            for name in self.config.configs for seed in self.config.seeds]

  def analyze(self, results: list[base.RunResult], directory: str) -> dict[str, float]:
    rows = []
    for name in self.config.configs:
      mine = [r for r in results if r.run.columns["config"] == name]
      row = {"config": name, "seeds": len(mine)}
      for key, column in (("test/accuracy", "test_accuracy"), ("test/ece", "test_ece")):
        mean, half = base.mean_and_interval([r.results[key] for r in mine])
        row[column], row[f"{column}_ci95"] = mean, half
      row["wall_s"] = float(np.mean([r.wall_s for r in mine]))
      rows.append(row)
    base.write_table(rows, os.path.join(directory, "zoo"))
    plot(rows, os.path.join(directory, "zoo.png"), self.config.dataset)
    best = max(rows, key=lambda r: r["test_accuracy"])
    return {"best_test_accuracy": best["test_accuracy"]}


def plot(rows: list[dict], path: str, dataset: str) -> None:
  from research.evaluation.images import pyplot
  plt = pyplot()
  fig, ax = plt.subplots(figsize=(6, 4))
  for row in rows:
    ax.errorbar(row["wall_s"], row["test_accuracy"],
                yerr=None if np.isnan(row["test_accuracy_ci95"]) else row["test_accuracy_ci95"],
                fmt="o", capsize=3)
    ax.annotate(row["config"], (row["wall_s"], row["test_accuracy"]), fontsize=8,
                xytext=(4, 4), textcoords="offset points")
  ax.set(xscale="log", xlabel="wall time per run (s)", ylabel="test accuracy",
         title=f"classifier zoo on {dataset}")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
