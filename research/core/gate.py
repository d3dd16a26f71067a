"""The pass/fail gate a config may set on a final metric, e.g. ``test/accuracy>=0.99``."""
import re

from research import errors

EXAMPLES = "'test/accuracy>=0.99' or 'test/neg_elbo<=100'"


def parse(gate: str):
  """``"test/accuracy>=0.99"`` -> (metric, op, threshold); ``""`` -> None."""
  if not gate:
    return None
  match = re.fullmatch(r"\s*([\w/]+)\s*(>=|<=)\s*([-+\deE.]+)\s*", gate)
  if not match:
    raise errors.ConfigError(f"gate must look like {EXAMPLES}, not {gate!r}")
  try:
    return match[1], match[2], float(match[3])
  except ValueError:
    raise errors.ConfigError(f"gate={gate!r} is not allowed; its threshold {match[3]!r} must be "
                             f"a number, e.g. {EXAMPLES}") from None


def check(gate: str, results: dict) -> bool | None:
  parsed = parse(gate)
  if parsed is None:
    return None
  metric, op, threshold = parsed
  if metric not in results:
    raise errors.ConfigError(f"gate metric {metric!r} is not among the results {sorted(results)}")
  value = results[metric]
  return value >= threshold if op == ">=" else value <= threshold
