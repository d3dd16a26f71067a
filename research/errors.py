"""Errors that are the user's to fix: the launcher prints them as one line, no traceback."""
import os
import shutil


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


class StorageError(UserError):
  """A write to the workdir failed (full disk, read-only or removed folder); what was written
  before it is intact, and rerunning once the disk has room resumes."""


class WorkdirInUse(UserError):
  """Another live process holds the workdir's lock."""


class Interrupted(UserError):
  """A signal arrived outside the training loop (start-up, restore, compilation, the final
  evaluation); the checkpoints written so far are kept, and rerunning resumes."""

  def __init__(self, signal_name: str, phase: str):
    super().__init__(f"stopped by {signal_name} during {phase}; the checkpoints written so far "
                     f"are kept; rerun the same command to resume")


def free_bytes(path: str) -> int | None:
  """The free bytes on the disk holding ``path`` (or its nearest existing folder); None when
  even that cannot be read."""
  path = os.path.abspath(path)
  while not os.path.isdir(path) and os.path.dirname(path) != path:
    path = os.path.dirname(path)
  try:
    return shutil.disk_usage(path).free
  except OSError:
    return None


def format_bytes(size: float) -> str:
  if size < 1024:
    return f"{size:.0f} bytes"
  for unit in ("KB", "MB", "GB", "TB"):
    size /= 1024
    if size < 1024 or unit == "TB":
      return f"{size:.1f} {unit}"


def free_space(path: str) -> str:
  """'1.2 GB free' on the disk holding ``path``, or 'free space unknown'."""
  free = free_bytes(path)
  return "free space unknown" if free is None else f"{format_bytes(free)} free"


def storage_error(action: str, path: str, error: BaseException) -> StorageError:
  """The one-line StorageError of a failed write: what failed, where, why and the disk's
  free space."""
  reason = " ".join(str(error).split())
  if len(reason) > 300:
    reason = reason[:300] + "..."
  return StorageError(f"{action} {path} failed ({type(error).__name__}: {reason}); "
                      f"{free_space(path)} there; free space or fix the folder, then rerun "
                      f"the same command to resume")
