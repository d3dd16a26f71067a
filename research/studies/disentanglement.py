"""The disentanglement study, Locatello et al. (2019)'s protocol in small: beta-VAE,
beta-TCVAE, FactorVAE and DIP-VAE (configs/dsprites_vae.py) on dsprites_like over a small grid
of each model's main hyperparameter (``config.models``: ``{model: {field, values}}``), every
setting trained for the same budget of steps with all of ``config.seeds`` at once, as vmapped
replicas (one run per model and setting; research/train/replicas.py), and scored on the
ground-truth factors by the ``disentanglement`` evaluator (MIG, SAP, DCI and, with votes, the
FactorVAE and BetaVAE scores). In the study directory:

  disentanglement.csv / .md    per model and setting: each metric's mean and 95% interval
                               over the seeds, and the test -ELBO
  disentanglement_METRIC.png   METRIC's box plot per model and setting (a box: its seeds)
  traversals_MODEL_best.png, traversals_MODEL_median.png
                               the latent traversals of the model's best and median run (over
                               its settings and seeds) by ``config.rank_by``
"""
import glob
import os
import shutil

import ml_collections

from research.studies import base
from research.train import replicas

METRICS = ("mig", "sap", "dci_disentanglement", "dci_completeness", "dci_informativeness",
           "factor_vae_score", "beta_vae_score")  # the disentanglement evaluator's scalars
NEG_ELBO = "neg_elbo"
UNREAD_EVALS = ("val", "latents")  # the dsprites_vae evaluations a run skips here
MODEL_CONFIG = "dsprites_vae"


def test_key(index: int, name: str) -> str:
  """Replica ``index``'s final test scalar ``name`` in a run's results."""
  return f"{replicas.prefix(index)}/test/{name}"


class Study:
  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config

  def settings(self) -> list[tuple[str, str, float]]:
    """``(model, field, value)`` of every point of the grid, in the config's order."""
    return [(model, spec.field, float(value)) for model, spec in self.config.models.items()
            for value in spec["values"]]

  def run_config(self, model: str, field: str, value: float) -> ml_collections.ConfigDict:
    c = self.config
    config = base.study_config(MODEL_CONFIG, f"objective={model},dataset={c.dataset}",
                               c.seeds[0], c.data_dir, c.total_steps)
    config.task[field] = value
    config.replicas.seeds = tuple(c.seeds)
    config.gate = ""
    base.drop_evals(config, UNREAD_EVALS)
    config.update(c.run_overrides)  # nested fields, e.g. {"model": {"hidden": 16}}
    config.update(c.models[model].get("overrides", {}))
    return config

  def runs(self, directory: str) -> list[base.Run]:
    return [base.Run(f"{model}_{field}{value:g}", self.run_config(model, field, value),
                     {"model": model, "field": field, "value": value})
            for model, field, value in self.settings()]

  def analyze(self, results: list[base.RunResult], directory: str) -> dict[str, float]:
    seeds = range(len(self.config.seeds))
    metrics = [m for m in METRICS + (NEG_ELBO,) if test_key(0, m) in results[0].results]
    scores = [{m: [r.results[test_key(i, m)] for i in seeds] for m in metrics} for r in results]
    rows = [table_row(r.run.columns, s, metrics) for r, s in zip(results, scores)]
    base.write_table(rows, os.path.join(directory, "disentanglement"))
    labels = [f"{r.run.columns['model']}\n{r.run.columns['field']}={r.run.columns['value']:g}"
              for r in results]
    for metric in metrics:
      box_plot(labels, [s[metric] for s in scores], metric,
               os.path.join(directory, f"disentanglement_{metric}.png"))
    rank_by = self.config.rank_by
    for model in self.config.models:
      ranked = ranked_runs([(r, s[rank_by]) for r, s in zip(results, scores)
                            if r.run.columns["model"] == model])
      for name, (result, index) in (("best", ranked[-1]), ("median", ranked[len(ranked) // 2])):
        copy_traversals(result.workdir, index, os.path.join(directory,
                                                            f"traversals_{model}_{name}.png"))
    return {f"{r['model']}_{r['field']}{r['value']:g}_{rank_by}": r[rank_by] for r in rows}


def table_row(columns: dict, scores: dict[str, list[float]], metrics: list[str]) -> dict:
  """A setting's row: its columns, and each metric's mean and 95% interval over seeds."""
  row = {**columns, "seeds": len(next(iter(scores.values())))}
  for metric in metrics:
    row[metric], row[f"{metric}_ci95"] = base.mean_and_interval(scores[metric])
  return row


def ranked_runs(scored: list[tuple[base.RunResult, list[float]]]) -> list[tuple]:
  """``(result, replica index)`` of every seed of ``scored`` runs, worst first."""
  seeds = [(value, result, index) for result, values in scored
           for index, value in enumerate(values)]
  return [(result, index) for _, result, index in sorted(seeds, key=lambda s: s[0])]


def copy_traversals(workdir: str, index: int, path: str) -> None:
  """Replica ``index``'s latest traversal grid (research/evaluators/images.py) to ``path``."""
  found = sorted(glob.glob(os.path.join(workdir, "images",
                                        f"{replicas.prefix(index)}_traversals_*.png")))
  if found:
    shutil.copyfile(found[-1], path)


def box_plot(labels: list[str], values: list[list[float]], metric: str, path: str) -> None:
  from research.evaluation.images import pyplot
  plt = pyplot()
  fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(labels)), 4.0))
  ax.boxplot(values)
  ax.set_xticks(range(1, len(labels) + 1), labels, fontsize=7)
  ax.set(ylabel=metric, title=f"{metric} per model and setting (a box: its seeds)")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
