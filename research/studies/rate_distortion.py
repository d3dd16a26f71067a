"""The rate-distortion view of a VAE (Alemi et al. 2018, "Fixing a broken ELBO"): a sweep
of the KL weight beta, each run's rate R = E[KL(q(z|x) || p(z))] against its distortion
D = E[-log p(x|z)] on the test split, both in nats.

Every point lies above the line R + D = -ELBO of the best run; beta = 1 minimises R + D,
beta < 1 buys lower distortion with more rate, beta > 1 the reverse. Per dataset and beta
(``config.betas``) and seed the study trains ``config.model_config`` (a VAE config; its
``task.beta`` set, no warm-up) and writes in the study directory:

  rate_distortion.csv / .md   per dataset and beta: rate, distortion, -ELBO (mean and 95%
                              interval over seeds) and the active units
  rate_distortion_D.png       distortion against rate, one point per beta (labelled), with
                              the iso-lines R + D = constant through the points
"""
import os

import ml_collections
import numpy as np

from research.studies import base

RATE, DISTORTION, NEG_ELBO = "test/kl", "test/recon_nll", "test/neg_elbo"
ACTIVE_UNITS = "test/active_units"
UNREAD_EVALS = ("nll", "images")  # the VAE configs' evaluations a run skips here


class Study:
  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config

  def run_config(self, dataset: str, beta: float, seed: int) -> ml_collections.ConfigDict:
    c = self.config
    config = base.study_config(c.model_config, dataset, seed, c.data_dir, c.total_steps)
    config.task.beta = float(beta)
    config.task.kl_warmup_steps = 0
    config.gate = ""
    base.drop_evals(config, UNREAD_EVALS)
    if c.num_epochs > 0 and c.total_steps <= 0:
      config.num_epochs = float(c.num_epochs)
    return config

  def runs(self, directory: str) -> list[base.Run]:
    return [base.Run(f"{dataset}_beta{beta:g}_seed{seed}", self.run_config(dataset, beta, seed),
                     {"dataset": dataset, "beta": beta, "seed": seed})
            for dataset in self.config.datasets for seed in self.config.seeds
            for beta in self.config.betas]

  def analyze(self, results: list[base.RunResult], directory: str) -> dict[str, float]:
    rows = []
    for dataset in self.config.datasets:
      for beta in self.config.betas:
        mine = [r.results for r in results
                if r.run.columns["dataset"] == dataset and r.run.columns["beta"] == beta]
        row = {"dataset": dataset, "beta": beta, "seeds": len(mine)}
        for key, column in ((RATE, "rate"), (DISTORTION, "distortion"), (NEG_ELBO, "neg_elbo")):
          row[column], row[f"{column}_ci95"] = base.mean_and_interval([m[key] for m in mine])
        row["active_units"] = float(np.mean([m.get(ACTIVE_UNITS, np.nan) for m in mine]))
        rows.append(row)
      plot([r for r in rows if r["dataset"] == dataset],
           os.path.join(directory, f"rate_distortion_{dataset}.png"), dataset)
    base.write_table(rows, os.path.join(directory, "rate_distortion"))
    return {f"{r['dataset']}_beta{r['beta']:g}_neg_elbo": r["neg_elbo"] for r in rows}


def plot(rows: list[dict], path: str, dataset: str) -> None:
  from research.evaluation.images import pyplot
  plt = pyplot()
  fig, ax = plt.subplots(figsize=(6, 4.5))
  rates = np.array([r["rate"] for r in rows])
  distortions = np.array([r["distortion"] for r in rows])
  span = np.linspace(0.0, max(rates.max(), 1.0) * 1.1, 50)
  for total in sorted(set(np.round(rates + distortions, 1))):
    ax.plot(span, total - span, ":", color="grey", lw=0.8)
  ax.errorbar(rates, distortions, xerr=[np.nan_to_num(r["rate_ci95"]) for r in rows],
              yerr=[np.nan_to_num(r["distortion_ci95"]) for r in rows], fmt="o-", capsize=3)
  for r in rows:
    ax.annotate(f"beta={r['beta']:g}", (r["rate"], r["distortion"]), fontsize=8,
                xytext=(4, 4), textcoords="offset points")
  ax.set(xlabel="rate: KL(q(z|x) || p(z)) (nats)", ylabel="distortion: -log p(x|z) (nats)",
         title=f"rate-distortion on {dataset} (dotted: R + D = -ELBO constant)",
         xlim=(0, span[-1]), ylim=(min(distortions.min() * 0.95, distortions.min() - 1),
                                    distortions.max() * 1.05 + 1))
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
