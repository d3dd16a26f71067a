"""Stopping cleanly on SIGTERM/SIGINT: the loop finishes its step, checkpoints and exits.

Cloud schedulers preempt with SIGTERM (and a grace period); Ctrl-C sends SIGINT.
The first signal asks the loop to stop at the next step boundary; a second one
exits at once.
"""
import os
import signal
import threading

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class SignalWatcher:
  """A context in which the first SIGTERM/SIGINT is recorded and a second one exits."""

  def __init__(self):
    self.signal_name: str | None = None
    self._previous = {}

  def _handle(self, signum, frame):
    if self.signal_name is not None:
      os._exit(128 + signum)
    self.signal_name = signal.Signals(signum).name
    logging.warning("%s received: stopping after this step (send it again to exit at once).",
                    self.signal_name)

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      self._previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
    return self

  def __exit__(self, *exc):
    for s, handler in self._previous.items():
      signal.signal(s, handler)
    return False

  def stop_requested(self, can_sync: bool) -> bool:
    """Whether to stop now. With several processes all must agree, which takes a sync:
    they only compare notes where ``can_sync`` (the loop passes its logging steps)."""
    requested = self.signal_name is not None
    if jax.process_count() == 1:
      return requested
    if not can_sync:
      return False
    return bool(np.any(multihost_utils.process_allgather(np.asarray(requested))))
