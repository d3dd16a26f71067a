"""How the host feeds jitted calls to the devices in the train and eval loops.

JAX dispatches asynchronously: a loop of jitted calls returns at once and queues work on
the devices. Two things keep that queue short:

- ``accumulate`` merges a call's metrics into the running total as one computation (eager
  ``Collection.merge`` is one per metric field);
- ``RunAhead`` keeps the host at most ``calls`` calls ahead of the devices. XLA:CPU needs
  this with several devices in one process (``--xla_force_host_platform_device_count``):
  its client launches each device's part of a call on a pool of as many threads as cores
  (or devices, if more), and a launch on a device with 32 computations queued blocks its
  thread until one ends. With the host far enough ahead, every pool thread is so blocked,
  or runs a call whose all-reduce waits for the part on another device that no thread is
  left to run: a deadlock, which XLA aborts after 40 s ("Termination timeout for all
  reduce"; benchmarks/RESULTS.md, "Host run-ahead"). This is a wait, not a sync: the
  devices stay as busy as before, with the next calls queued already.
"""
import collections

import jax

CALLS_AHEAD = 2


@jax.jit
def _merge(total, new):
  return total.merge(new)


def accumulate(total, new):
  """``total.merge(new)`` in one computation; ``new`` when there is no total yet."""
  return new if total is None else _merge(total, new)


class RunAhead:
  """Called with each call's outputs (arrays no later call donates); returns once the
  outputs of the call ``calls`` before it are computed."""

  def __init__(self, calls: int = CALLS_AHEAD):
    self.calls = calls
    self.pending = collections.deque()

  def __call__(self, outputs) -> None:
    self.pending.append(outputs)
    if len(self.pending) > self.calls:
      jax.block_until_ready(self.pending.popleft())
