"""Multi-controller start-up: one process per host (or per accelerator), joined by
``jax.distributed`` before anything touches a device.

After ``initialize`` every process sees all devices of the job (``jax.devices()``) and
its own (``jax.local_devices()``); the rest of the code is the same SPMD program on
every process: the mesh spans all devices, each process feeds its slice of every
global batch, and process 0 writes logs, images and reports.
"""
import dataclasses

import jax

# Collectives between CPU processes (tests, CPU clusters); ignored by GPU and TPU clients.
CPU_COLLECTIVES = "gloo"


@dataclasses.dataclass(frozen=True)
class Cluster:
  """How this process joins the job; all None with ``auto``: JAX detects the cluster
  (Cloud TPU pod slices, SLURM, Open MPI, Kubernetes) from the environment."""
  auto: bool = False
  coordinator_address: str | None = None  # host:port of process 0
  num_processes: int | None = None
  process_id: int | None = None

  @property
  def enabled(self) -> bool:
    return self.auto or self.coordinator_address is not None or self.num_processes is not None


def initialize(cluster: Cluster) -> None:
  """Joins the job described by ``cluster``; a single-process run does nothing."""
  if not cluster.enabled:
    return
  jax.config.update("jax_cpu_collectives_implementation", CPU_COLLECTIVES)
  jax.distributed.initialize(coordinator_address=cluster.coordinator_address,
                             num_processes=cluster.num_processes,
                             process_id=cluster.process_id)


def describe() -> str:
  """One line: devices of the job and of this process."""
  return (f"devices: {jax.device_count()} x {jax.devices()[0].device_kind} "
          f"({jax.process_count()} process(es); process {jax.process_index()} holds "
          f"{jax.local_device_count()}): {jax.devices()}")
