"""Tracing and compilation caching for any jitted loop."""
import os

import jax


def parse_profile_steps(spec: str) -> tuple[int, int] | tuple[()] | None:
  """``"START:END"`` as ``(START, END)``, ``""`` as ``()``, anything else as None."""
  if not spec:
    return ()
  start, sep, end = spec.partition(":")
  if not (sep and start.strip().isdigit() and end.strip().isdigit()):
    return None
  start, end = int(start), int(end)
  return (start, end) if start < end else None


class Profiler:
  """A jax.profiler trace of the steps ``spec`` (``START:END``) in ``workdir/profile``
  (TensorBoard's profile plugin or Perfetto read it)."""

  def __init__(self, spec: str, workdir: str):
    self.steps = parse_profile_steps(spec) or None
    self.directory = os.path.join(workdir, "profile")
    self.active = False

  def __call__(self, step: int, state) -> None:
    """Called after the call that reached ``step``."""
    if self.steps is None:
      return
    start, end = self.steps
    if not self.active and start <= step < end:
      jax.block_until_ready(state)
      jax.profiler.start_trace(self.directory)
      self.active = True
    elif self.active and step >= end:
      self.stop(state)

  def stop(self, state) -> None:
    if self.active:
      jax.block_until_ready(state)
      jax.profiler.stop_trace()
      self.active, self.steps = False, None


def use_compilation_cache(directory: str) -> None:
  """Compiled steps persist in ``directory`` and later runs load them instead of compiling."""
  if directory:
    jax.config.update("jax_compilation_cache_dir", os.path.abspath(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
