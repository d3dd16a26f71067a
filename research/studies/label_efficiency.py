"""How each family copes with few labels: test accuracy against the number of labels per
class N, for discriminative classifiers, the generative (Bayes) classifier and the
semi-supervised VAE, on the same labelled subsets.

Per dataset, N (``config.labels``; 0: every training label) and draw d (``config.draws``:
the subset's ``data.labelled_seed`` and the run's seed):

  supervised   ``config.supervised`` (logreg, mlp, cnn): trained on the N labelled images
               of each class alone (``data.labelled_only``)
  generative   ``config.generative`` (cvae: argmax_y log p(x | y) + log p(y),
               research/tasks/generative_classifier.py): the same labelled images alone
  semi         ``config.semi_supervised`` (m2): the same labelled images and every other
               training image without its label; ``config.latent_semi_supervised``
               (m1m2): the same, on the codes of an M1 run (``vae:kingma_m1``, the
               draw's seed) trained on every training image without labels, one per
               dataset and draw, which the table does not list

A run on a subset trains ``subset_steps`` steps in batches of at most its labelled images
(its config's own length on all labels); validation and test keep every label and the test
split is read once per run, at its end. Outputs in the study directory:

  label_efficiency.csv / .md   per dataset, config and N: mean test accuracy and its 95%
                               interval over the draws
  label_efficiency_D.png       accuracy against N (log axis; "all" at the full count)
  crossover.md                 per dataset and (generative, discriminative) pair: the
                               smallest N from which the discriminative model is ahead at
                               every larger N (Ng & Jordan 2002 predict one), or none
"""
import math
import os

import ml_collections
import numpy as np

from research.studies import base

ACCURACY = "test/accuracy"
UNREAD_EVALS = ("nll", "images", "latents")  # the VAE configs' evaluations a run skips here
ALL = 0  # N meaning every training label
M1 = "m1"  # the runs' label and columns of the VAE that M1+M2 encodes its inputs with
M1_CONFIG, M1_PRESET = "vae", "kingma_m1"
TRAIN_PER_CLASS = {"mnist": 5400, "fashion_mnist": 5400, "digits": 129}  # train[:90%] / 10


class Study:
  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config

  def families(self) -> dict[str, str]:
    c = self.config
    return {**{name: "supervised" for name in c.supervised},
            **{name: "generative" for name in c.generative},
            **{name: "semi" for name in c.semi_supervised + self.latent_families()}}

  def latent_families(self) -> tuple[str, ...]:
    return tuple(self.config.get("latent_semi_supervised", ()))

  def m1_run(self, dataset: str, draw: int) -> base.Run:
    """The unsupervised VAE of a dataset and draw whose codes M1+M2 classifies."""
    c = self.config
    config = base.study_config(M1_CONFIG, f"dataset={dataset},preset={M1_PRESET}", draw,
                               c.data_dir, c.total_steps)
    config.gate = ""
    base.drop_evals(config, UNREAD_EVALS)
    return base.Run(f"{dataset}_{M1}_draw{draw}", config,
                    {"dataset": dataset, "config": M1, "kind": "pretraining", "labels": ALL,
                     "draw": draw})

  def run_config(self, name: str, kind: str, dataset: str, labels: int, draw: int,
                 directory: str) -> ml_collections.ConfigDict:
    c = self.config
    arg = f"dataset={dataset},labels={labels}" if kind == "semi" else dataset
    config = base.study_config(name, arg, draw, c.data_dir, c.total_steps)
    config.gate = ""
    base.drop_evals(config, UNREAD_EVALS)  # the study reads the test accuracy alone
    if kind == "semi":
      config.data.labelled_seed = draw
      if name in self.latent_families():
        config.init_from.workdir = base.run_workdir(directory, self.m1_run(dataset, draw))
      return config
    if labels != ALL:
      config.data.labelled_per_class = labels
      config.data.labelled_seed = draw
      config.data.labelled_only = True
      config.batch_size = min(config.batch_size, 10 * labels)
      if c.total_steps <= 0:
        config.total_steps = c.subset_steps
        for field in ("log_every_steps", "eval_every_steps", "checkpoint_every_steps"):
          config[field] = min(config[field], c.subset_steps)
    return config

  def runs(self, directory: str) -> list[base.Run]:
    """Draw by draw, each draw's M1 (when M1+M2 is studied) before the runs that read it."""
    runs = []
    for dataset in self.config.datasets:
      for draw in self.config.draws:
        if self.latent_families():
          runs.append(self.m1_run(dataset, draw))
        runs += [base.Run(f"{dataset}_{name}_n{labels or 'all'}_draw{draw}",
                          self.run_config(name, kind, dataset, labels, draw, directory),
                          {"dataset": dataset, "config": name, "kind": kind,
                           "labels": labels, "draw": draw})
                 for labels in self.config.labels for name, kind in self.families().items()]
    return runs

  def analyze(self, results: list[base.RunResult], directory: str) -> dict[str, float]:
    rows = []
    for dataset in self.config.datasets:
      for name, kind in self.families().items():
        for labels in self.config.labels:
          mine = [r.results[ACCURACY] for r in results if r.run.columns["dataset"] == dataset
                  and r.run.columns["config"] == name and r.run.columns["labels"] == labels]
          mean, half = base.mean_and_interval(mine)
          rows.append({"dataset": dataset, "config": name, "kind": kind,
                       "labels_per_class": labels or "all", "draws": len(mine),
                       "test_accuracy": mean, "test_accuracy_ci95": half})
      plot(rows, dataset, os.path.join(directory, f"label_efficiency_{dataset}.png"))
    base.write_table(rows, os.path.join(directory, "label_efficiency"))
    lines = crossovers(rows, self.config)
    with open(os.path.join(directory, "crossover.md"), "w") as f:
      f.write("\n".join(lines) + "\n")
    return {f"{r['dataset']}_{r['config']}_n{r['labels_per_class']}_accuracy": r["test_accuracy"]
            for r in rows}


def labels_axis(labels, dataset: str) -> float:
  """Where N sits on the plot's axis: ALL at the dataset's labels per class."""
  return TRAIN_PER_CLASS.get(dataset, 1000) if labels == "all" else labels


def crossovers(rows: list[dict], config: ml_collections.ConfigDict) -> list[str]:
  """Per dataset and (generative, discriminative) pair, where the discriminative curve
  overtakes the generative one for good."""
  lines = ["| dataset | generative | discriminative | crossover (labels per class) |",
           "| --- | --- | --- | --- |"]
  for dataset in config.datasets:
    curve = lambda name: [r for r in rows if r["dataset"] == dataset  # noqa: E731
                          and r["config"] == name]
    for generative in config.generative:
      for discriminative in config.supervised:
        pairs = list(zip(curve(generative), curve(discriminative)))
        ahead = [d["test_accuracy"] > g["test_accuracy"] for g, d in pairs]
        where = next((i for i in range(len(ahead)) if all(ahead[i:])), None)
        if where is None:
          text = "none: the discriminative model is behind at the largest N"
        elif where == 0:
          text = "none: the discriminative model is ahead at every N"
        else:
          text = f"between {pairs[where - 1][0]['labels_per_class']} and " \
                 f"{pairs[where][0]['labels_per_class']}"
        lines.append(f"| {dataset} | {generative} | {discriminative} | {text} |")
  return lines


def plot(rows: list[dict], dataset: str, path: str) -> None:
  from research.evaluation.images import pyplot
  plt = pyplot()
  fig, ax = plt.subplots(figsize=(6.5, 4.5))
  styles = {"supervised": "-", "generative": "--", "semi": ":"}
  for name in dict.fromkeys(r["config"] for r in rows if r["dataset"] == dataset):
    mine = [r for r in rows if r["dataset"] == dataset and r["config"] == name]
    mine.sort(key=lambda r: labels_axis(r["labels_per_class"], dataset))
    x = [labels_axis(r["labels_per_class"], dataset) for r in mine]
    y = [r["test_accuracy"] for r in mine]
    errors = [0.0 if math.isnan(r["test_accuracy_ci95"]) else r["test_accuracy_ci95"]
              for r in mine]
    ax.errorbar(x, y, yerr=errors, fmt="o" + styles[mine[0]["kind"]], capsize=3,
                label=f"{name} ({mine[0]['kind']})")
  ax.set(xscale="log", xlabel="labels per class (rightmost: all)", ylabel="test accuracy",
         title=f"label efficiency on {dataset} (95% intervals over label draws)")
  ax.legend(fontsize=8)
  ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
