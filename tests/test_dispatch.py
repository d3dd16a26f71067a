"""The host stays a bounded number of calls ahead of the devices (research/core/dispatch.py)."""
import os
import subprocess
import sys

import jax.numpy as jnp
from clu import metrics as clu_metrics

from research.core import dispatch
from tests.conftest import ROOT, stderr_summary

Metrics = clu_metrics.Collection.create(loss=clu_metrics.Average.from_output("loss"),
                                        norm=clu_metrics.Average.from_output("norm"))


def test_run_ahead_waits_for_the_call_two_before(monkeypatch):
  waited = []
  monkeypatch.setattr(dispatch.jax, "block_until_ready", waited.append)
  run_ahead = dispatch.RunAhead(calls=2)
  for call in range(5):
    run_ahead(call)
    assert waited == list(range(call - 1))  # after call i, calls up to i - 2 are done


def test_accumulate_equals_eager_merges():
  batches = [Metrics.single_from_model_output(loss=jnp.asarray(float(i)),
                                              norm=jnp.asarray(2.0 ** i)) for i in range(4)]
  total, eager = None, batches[0]
  for batch in batches:
    total = dispatch.accumulate(total, batch)
  for batch in batches[1:]:
    eager = eager.merge(batch)
  assert dispatch.accumulate(None, batches[0]) is batches[0]
  assert total.compute() == eager.compute() == {"loss": 1.5, "norm": 3.75}


# 300 train steps with an all-reduce between 2 CPU devices, fed as loop.train feeds them.
# Queued without a bound, XLA:CPU deadlocks on these within a few dozen steps and aborts
# after the collective timeout (10 s here; checked with RunAhead a no-op).
FAR_AHEAD = """
import jax, jax.numpy as jnp, numpy as np
from clu import metrics
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from research.core import dispatch

mesh = Mesh(jax.devices(), ("data",))
batch = jax.device_put(np.ones((256, 512), np.float32), NamedSharding(mesh, P("data")))
kernel = jax.device_put(np.full((512, 512), 1 / 512, np.float32), NamedSharding(mesh, P()))
Metrics = metrics.Collection.create(grad_sum=metrics.Average.from_output("grad_sum"))

@jax.jit
def train_step(kernel, batch):  # x^T (x w) sums over the sharded batch: an all-reduce
  grad = batch.T @ (batch @ kernel)
  return kernel - 0.0 * grad, Metrics.single_from_model_output(grad_sum=jnp.sum(grad))

total, run_ahead = None, dispatch.RunAhead()
for _ in range(300):
  kernel, metrics = train_step(kernel, batch)
  total = dispatch.accumulate(total, metrics)
  run_ahead(metrics)
print(jax.device_count(), float(total.compute()["grad_sum"]))
"""


def test_300_steps_with_all_reduces_on_two_cpu_devices_finish():
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3",
         "XLA_FLAGS": "--xla_force_host_platform_device_count=2 "
                      "--xla_cpu_collective_call_terminate_timeout_seconds=10"}
  proc = subprocess.run([sys.executable, "-c", FAR_AHEAD], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, stderr_summary(proc.stderr)
  assert proc.stdout.split() == ["2", str(512.0 * 512 * 256)]
