"""Errors that are the user's to fix: the launcher prints them as one line, no traceback."""


class UserError(Exception):
  """A problem with the config, the data or the environment, stated as its fix."""


class ConfigError(UserError, ValueError):
  """A config value that cannot work."""


class NonFiniteError(UserError):
  """Training produced a non-finite loss, gradient or parameter."""


class Preempted(UserError):
  """Training stopped on a signal after writing a checkpoint; rerunning resumes."""

  def __init__(self, signal_name: str, step: int, directory: str):
    super().__init__(f"stopped by {signal_name} after step {step}; checkpoint saved in "
                     f"{directory}; rerun the same command to resume")
    self.step = step


def require(ok: bool, field: str, value, allowed: str) -> None:
  """Raises the one-line ConfigError of a config field whose value is not allowed."""
  if not ok:
    raise ConfigError(f"{field}={value!r} is not allowed; it must be {allowed}")
