"""Drift monitor: a sliding window of recent traffic compared with an export's reference
statistics (``reference.json``, computed on the validation split by research/serving/export.py).

Each test reduces an example to one value and compares the window's values with the
reference's:

  confidence       the classifier's max probability as log-odds (``confidence``: monotone in
                   it, so the same test, but without the ties at 1.0 that float32
                   probabilities of a confident model have); two-sample Kolmogorov-Smirnov
                   test (``scipy.stats.ks_2samp``) against the reference sample
  confidence_tail  the same values: more below the reference's 1% quantile than it has
                   (Fisher's exact test, one-sided: ``TailTest``)
  predicted_class  the predicted classes' counts; chi-square test of homogeneity
                   (``scipy.stats.chi2_contingency``) against the reference fractions
  generative       a VAE's -ELBO of the same inputs (its own export, trained on the same
                   training data, ``generative=``); KS against that export's reference sample
  generative_tail  the same values: more above the reference's 99% quantile than it has
  COLUMN           tabular inputs, per raw column: numeric values in the reference's decile
                   bins (plus a missing bin), categories (plus missing and unseen); chi-square
                   test, with the population stability index as the size of the shift
  input:NAME       image-like inputs: the per-example mean value in the reference's decile
                   bins; chi-square test

Every ``stride`` new examples, once the window holds ``window`` examples, all tests run on
the window; drift is flagged when any p-value is below ``alpha / number of tests``
(Bonferroni), so a check on undrifted traffic raises a false alarm with probability at most
``alpha``. Checks on overlapping windows are not independent: the rate is per check.
"""
import collections
import dataclasses
import math

import numpy as np
from scipy import stats

from research.serving import runtime

WINDOW = 500
STRIDE = 50
ALPHA = 0.01
PSI_EPS = 1e-4  # fractions floored here in the PSI (an empty bin would make it infinite)
HISTORY = 100  # alarms kept for the drift endpoint
TAIL = 0.01  # the tail tests' reference quantile (confidence: low; VAE -ELBO: high)


@dataclasses.dataclass(frozen=True)
class Options:
  window: int = WINDOW
  stride: int = STRIDE
  alpha: float = ALPHA

  def __post_init__(self):
    if self.window < 2 or not 1 <= self.stride <= self.window or not 0 < self.alpha < 1:
      raise ValueError(f"drift options need window >= 2, 1 <= stride <= window and "
                       f"0 < alpha < 1; got {self}")


def confidence(probs, multilabel: bool = False) -> np.ndarray:
  """The max probability per example as log-odds, log p_max - log(1 - p_max), with 1 - p_max
  the sum of the other classes' probabilities (exact where p_max rounds to 1.0); for
  multi-label outputs the largest label probability's log-odds."""
  probs = np.asarray(probs, np.float64)
  top = probs.max(-1)
  rest = 1.0 - top if multilabel else np.sort(probs, -1)[..., :-1].sum(-1)
  tiny = np.finfo(np.float64).tiny
  return np.log(np.maximum(top, tiny)) - np.log(np.maximum(rest, tiny))


def psi(window_fractions: np.ndarray, reference_fractions: np.ndarray) -> float:
  """Population stability index sum((w - r) log(w / r)), fractions floored at PSI_EPS."""
  w = np.maximum(np.asarray(window_fractions, np.float64), PSI_EPS)
  r = np.maximum(np.asarray(reference_fractions, np.float64), PSI_EPS)
  return float(np.sum((w - r) * np.log(w / r)))


class KSTest:
  """Window values against a reference sample, two-sample KS."""
  kind = "ks"

  def __init__(self, reference_sample):
    self.reference = np.asarray(reference_sample, np.float64)
    if len(self.reference) < 2:
      raise ValueError("a KS test needs a reference sample of at least 2 values")

  def __call__(self, values: np.ndarray) -> dict:
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    result = stats.ks_2samp(values, self.reference)
    return {"statistic": float(result.statistic), "p_value": float(result.pvalue)}


class TailTest:
  """More window values beyond the reference's ``quantile`` (above it, or below for
  ``upper=False``) than the reference has: Fisher's exact test on the 2 x 2 table
  (``scipy.stats.fisher_exact``, one-sided). A small fraction of far-off examples (5% of
  the traffic from another dataset) barely moves the KS distance, whose floor is about
  0.08 for a window of 500; here each such example counts."""
  kind = "tail"

  def __init__(self, reference_sample, quantile: float, upper: bool = True):
    reference = np.asarray(reference_sample, np.float64)
    self.upper = upper
    self.cut = float(np.quantile(reference, quantile))
    self.reference_beyond = int(self.beyond(reference).sum())
    self.reference_count = len(reference)

  def beyond(self, values: np.ndarray) -> np.ndarray:
    return values > self.cut if self.upper else values < self.cut

  def __call__(self, values: np.ndarray) -> dict:
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    k = int(self.beyond(values).sum())
    table = [[k, len(values) - k],
             [self.reference_beyond, self.reference_count - self.reference_beyond]]
    _, p_value = stats.fisher_exact(table, alternative="greater")
    return {"statistic": k / max(len(values), 1), "p_value": float(p_value)}


class BinnedTest:
  """Window values binned (``binner``: values -> bin indices in [0, len(fractions))) against
  the reference's bin fractions over ``reference_count`` examples: chi-square test of
  homogeneity on the 2 x bins table (bins empty in both dropped), and the PSI."""
  kind = "chi2"

  def __init__(self, binner, reference_fractions, reference_count: int, labels=None):
    self.binner = binner
    self.fractions = np.asarray(reference_fractions, np.float64)
    self.count = int(reference_count)
    self.labels = labels

  def __call__(self, values) -> dict:
    bins = self.binner(values)
    counts = np.bincount(bins, minlength=len(self.fractions)).astype(np.float64)
    table = np.stack([counts, self.fractions * self.count])
    table = table[:, table.sum(0) > 0]
    if table.shape[1] < 2:  # everything in one bin on both sides: nothing differs
      return {"statistic": 0.0, "p_value": 1.0, "psi": 0.0}
    statistic, p_value, _, _ = stats.chi2_contingency(table, correction=False)
    return {"statistic": float(statistic), "p_value": float(p_value),
            "psi": psi(counts / max(counts.sum(), 1), self.fractions)}


def numeric_binner(edges, missing_bin: bool):
  """Values to the bins of ``edges`` (outside values to the first and last bin); NaN to a
  last bin when ``missing_bin``."""
  inner = np.asarray(edges, np.float64)[1:-1]

  def binner(values):
    values = np.asarray(values, np.float64)
    bins = np.searchsorted(inner, values, side="right")
    if missing_bin:
      bins = np.where(np.isnan(values), len(inner) + 1, bins)
    return bins
  return binner


def categorical_binner(categories):
  """Strings to their category's index; "" (missing) to len(categories), unseen ones after."""
  index = {c: i for i, c in enumerate(categories)}

  def binner(values):
    return np.array([len(categories) if v == "" else index.get(v, len(categories) + 1)
                     for v in values], np.int64)
  return binner


def column_test(summary: dict) -> BinnedTest:
  """The test of one tabular column from its reference summary (export.column_summaries)."""
  missing = summary["missing_fraction"]
  if summary["kind"] == "numeric":
    fractions = np.asarray(summary.get("bin_fractions", [1.0])) * (1 - missing)
    edges = summary.get("bin_edges", [-math.inf, math.inf])
    return BinnedTest(numeric_binner(edges, True), [*fractions, missing], summary["count_rows"])
  categories = sorted(summary["fractions"])
  fractions = [summary["fractions"][c] for c in categories] + [missing, 0.0]
  return BinnedTest(categorical_binner(categories), fractions, summary["count_rows"],
                    [*categories, "(missing)", "(unseen)"])


def reference_tests(reference: dict, generative: dict | None = None) -> dict:
  """The tests a reference (an export's reference.json) supports, by name; ``generative``:
  the reference of a VAE export scoring the same inputs."""
  tests = {}
  score = reference["score"]
  if score["name"] == "confidence":
    tests["confidence"] = KSTest(score["sample"])
    tests["confidence_tail"] = TailTest(score["sample"], TAIL, upper=False)
    if "predicted_fractions" in reference:
      fractions = reference["predicted_fractions"]
      tests["predicted_class"] = BinnedTest(
          lambda classes: np.asarray(classes, np.int64), fractions, reference["examples"])
  else:
    tests.update(generative_tests(score["sample"]))
  for column, summary in reference.get("columns", {}).items():
    summary = {**summary, "count_rows": reference["examples"]}
    tests[column] = column_test(summary)
  for name, summary in reference.get("inputs", {}).items():
    if summary.get("count"):
      tests[f"input:{name}"] = BinnedTest(numeric_binner(summary["bin_edges"], False),
                                          summary["bin_fractions"], summary["count"])
  if generative is not None:
    tests.update(generative_tests(generative["score"]["sample"]))
  return tests


def generative_tests(sample) -> dict:
  """A VAE's -ELBO: its distribution (KS) and its high tail (inputs the VAE finds unlikely)."""
  return {"generative": KSTest(sample), "generative_tail": TailTest(sample, 1 - TAIL)}


def traffic_values(tests: dict, probs=None, inputs: dict | None = None,
                   columns: dict | None = None, neg_elbo=None, multilabel: bool = False) -> dict:
  """One value per example for each of ``tests`` (``reference_tests``) from what a server
  has: the classifier's ``probs``, the encoded ``inputs``, the raw tabular ``columns`` and
  the generative monitor's ``neg_elbo``."""
  values = {}
  for name, test in tests.items():
    if name in ("confidence", "confidence_tail"):
      values[name] = confidence(probs, multilabel)
    elif name == "predicted_class":
      values[name] = np.asarray(probs).argmax(-1)
    elif name in ("generative", "generative_tail"):
      values[name] = np.asarray(neg_elbo, np.float64)
    elif name.startswith("input:"):
      v = np.asarray(inputs[name[len("input:"):]])
      values[name] = v.reshape(len(v), -1).astype(np.float64).mean(-1)
    elif test.labels is not None:  # a categorical column
      values[name] = runtime._strings(columns[name]).astype(str)
    else:
      values[name] = runtime._floats(columns[name])
  return values


@dataclasses.dataclass
class Check:
  """One check of the window: ``examples`` seen when it ran, each test's result."""
  examples: int
  results: dict
  threshold: float
  drift: bool

  def failing(self) -> list[str]:
    return [n for n, r in self.results.items() if r["p_value"] < self.threshold]

  def as_dict(self) -> dict:
    return {"examples": self.examples, "drift": self.drift, "threshold": self.threshold,
            "failing": self.failing(), "tests": self.results}


class DriftMonitor:
  """The window and the checks. ``observe({test: values})`` with one value per example for
  every test, in traffic order; returns the checks it ran."""

  def __init__(self, tests: dict, options: Options = Options()):
    if not tests:
      raise ValueError("a drift monitor needs at least one test")
    self.tests, self.options = dict(tests), options
    self.threshold = options.alpha / len(self.tests)  # Bonferroni over the tests
    self.examples, self.checks, self.alarms = 0, 0, 0
    self.last, self.history = None, collections.deque(maxlen=HISTORY)
    self.reset()

  def reset(self) -> None:
    """An empty window (e.g. after a deployment or an acknowledged alarm); counts are kept."""
    self.window = {n: collections.deque(maxlen=self.options.window) for n in self.tests}
    self.since_check = 0

  @property
  def filled(self) -> int:
    return len(next(iter(self.window.values())))

  def observe(self, values: dict) -> list[Check]:
    missing = set(self.tests) - set(values)
    if missing:
      raise ValueError(f"values missing for tests {sorted(missing)}")
    sizes = {len(values[n]) for n in self.tests}
    if len(sizes) != 1:
      raise ValueError(f"every test needs one value per example; got sizes {sorted(sizes)}")
    size, start, checks = sizes.pop(), 0, []
    while start < size:  # up to the next check boundary at a time
      room = self.options.stride - self.since_check if self.filled >= self.options.window \
          else self.options.window - self.filled
      take = min(max(room, 1), size - start)
      for name in self.tests:
        self.window[name].extend(values[name][start:start + take])
      start += take
      self.examples += take
      self.since_check += take
      if self.filled >= self.options.window and self.since_check >= self.options.stride:
        checks.append(self.check())
    return checks

  def check(self) -> Check:
    """All tests on the current window."""
    results = {n: test(np.asarray(self.window[n])) for n, test in self.tests.items()}
    drift = any(r["p_value"] < self.threshold for r in results.values())
    check = Check(self.examples, results, self.threshold, drift)
    self.checks += 1
    self.since_check = 0
    self.last = check
    if drift:
      self.alarms += 1
      self.history.append(check.as_dict())
    return check

  def state(self) -> dict:
    return {"window": self.options.window, "stride": self.options.stride,
            "alpha": self.options.alpha, "threshold": self.threshold,
            "tests": {n: t.kind for n, t in self.tests.items()}, "examples": self.examples,
            "window_filled": self.filled, "checks": self.checks, "alarms": self.alarms,
            "drift": bool(self.last and self.last.drift),
            "last_check": self.last.as_dict() if self.last else None,
            "recent_alarms": list(self.history)}
