"""Load test of the model server (research/serving/server.py) with a real HTTP client on loopback.

    TFDS_DATA_DIR=DIR python benchmarks/load_test.py --export_dir=workdirs/cnn/export \\
        [--concurrency=1,8,32] [--requests=3000] [--seconds=30] [--modes=batched,unbatched]
        [--monitor_dir=workdirs/vae/export]

Starts ``launch.py --mode=serve`` in a subprocess for each mode (``batched``: server-side
batching; ``unbatched``: one model call per request, ``--serve.batching=false``), then, for
each concurrency C, C client tasks (one ``httpx.AsyncClient``) post one test image per
request back to back, ``--requests`` in all or for ``--seconds``, whichever ends first,
after ``--warmup`` requests. Reports requests/s, the p50/p99 latency seen by the client,
and the mean model batch (from the server's /metrics), as JSON lines and a Markdown table.
The client and the server share the machine's cores.
"""
import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
  with socket.socket() as probe:
    probe.bind(("127.0.0.1", 0))
    return probe.getsockname()[1]


def test_images(export_dir: str, count: int, data_dir: str | None) -> list[bytes]:
  """Request bodies: one test image each of the export's dataset (TFDS)."""
  import tensorflow_datasets as tfds
  with open(os.path.join(export_dir, "export.json")) as f:
    meta = json.load(f)
  try:
    data = tfds.as_numpy(tfds.load(meta["dataset"], split=f"test[:{count}]", batch_size=-1,
                                   data_dir=data_dir, download=False))
  except Exception as e:  # noqa: BLE001 (not prepared: say where it was looked for)
    sys.exit(f"error: the load test needs {meta['dataset']!r} prepared in a TFDS data dir "
             f"(TFDS_DATA_DIR or --data_dir): {str(e).splitlines()[0]}")
  return [json.dumps({"instances": [image.tolist()]}).encode() for image in data["image"]]


def start_server(args, batching: bool, port: int, extra=()) -> subprocess.Popen:
  """``launch.py --mode=serve`` for ``args.export_dir`` on ``port``, once it answers /healthz."""
  command = [sys.executable, os.path.join(ROOT, "launch.py"), "--mode=serve",
             f"--export_dir={args.export_dir}", f"--port={port}",
             f"--serve.batching={str(batching).lower()}",
             f"--serve.max_batch_size={args.max_batch_size}"]
  if args.monitor_dir:
    command.append(f"--monitor_dir={args.monitor_dir}")
  if args.no_monitor:
    command.append("--serve.monitor=false")
  command.extend(extra)
  proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
  import httpx
  deadline = time.monotonic() + 300
  while time.monotonic() < deadline:
    if proc.poll() is not None:
      sys.exit(f"error: the server exited: {proc.stderr.read()[-2000:]}")
    try:
      if httpx.get(f"http://127.0.0.1:{port}/healthz", trust_env=False).status_code == 200:
        return proc
    except httpx.TransportError:
      time.sleep(0.5)
  proc.kill()
  sys.exit("error: the server did not start within 300 s")


def batch_stats(base: str, model: str) -> tuple[float, float]:
  """(calls, rows) of the model's default function so far, from /metrics."""
  import httpx
  from prometheus_client import parser
  calls = rows = 0.0
  for family in parser.text_string_to_metric_families(
      httpx.get(f"{base}/metrics", trust_env=False).text):
    for s in family.samples:
      if s.labels.get("model") == model and s.labels.get("function") in ("probs", "elbo"):
        if s.name == "serving_batch_size_count":
          calls = s.value
        elif s.name == "serving_batch_size_sum":
          rows = s.value
  return calls, rows


async def load(url: str, bodies: list[bytes], concurrency: int, requests: int,
               seconds: float) -> tuple[list[float], float, int]:
  """Latencies (s) of ``requests`` posts by ``concurrency`` tasks, the wall time, errors.
  Each task has a client (one keep-alive connection) of its own: one shared pool's
  bookkeeping would cost the client more than the server at high concurrency."""
  import httpx
  latencies, errors, sent = [], 0, 0
  deadline = time.perf_counter() + seconds

  async def worker():
    nonlocal errors, sent
    async with httpx.AsyncClient(trust_env=False, timeout=60,
                                 headers={"content-type": "application/json"}) as client:
      while sent < requests and time.perf_counter() < deadline:
        body = bodies[sent % len(bodies)]
        sent += 1
        start = time.perf_counter()
        answer = await client.post(url, content=body)
        latencies.append(time.perf_counter() - start)
        errors += answer.status_code != 200
  start = time.perf_counter()
  await asyncio.gather(*(worker() for _ in range(concurrency)))
  return latencies, time.perf_counter() - start, errors


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--export_dir", required=True)
  parser.add_argument("--monitor_dir", default=None)
  parser.add_argument("--no_monitor", action="store_true", help="--serve.monitor=false")
  parser.add_argument("--concurrency", default="1,8,32")
  parser.add_argument("--modes", default="batched,unbatched")
  parser.add_argument("--requests", type=int, default=3000)
  parser.add_argument("--seconds", type=float, default=30.0)
  parser.add_argument("--warmup", type=int, default=200)
  parser.add_argument("--max_batch_size", type=int, default=64)
  parser.add_argument("--data_dir", default=None)
  args = parser.parse_args()
  with open(os.path.join(args.export_dir, "export.json")) as f:
    model = __import__("re").sub(r"[^\w.-]+", "_", json.load(f)["config"])
  bodies = test_images(args.export_dir, 1000, args.data_dir)
  rows = []
  for mode in args.modes.split(","):
    port = free_port()
    proc = start_server(args, mode == "batched", port)
    base, url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port}/v1/models/{model}:predict"
    try:
      for concurrency in (int(c) for c in args.concurrency.split(",")):
        asyncio.run(load(url, bodies, concurrency, args.warmup, args.seconds))
        calls0, rows0 = batch_stats(base, model)
        latencies, wall, errors = asyncio.run(load(url, bodies, concurrency, args.requests,
                                                   args.seconds))
        calls1, rows1 = batch_stats(base, model)
        ms = np.asarray(latencies) * 1000
        row = {"mode": mode, "concurrency": concurrency, "requests": len(latencies),
               "errors": errors, "requests_per_s": round(len(latencies) / wall, 1),
               "p50_ms": round(float(np.percentile(ms, 50)), 2),
               "p99_ms": round(float(np.percentile(ms, 99)), 2),
               "mean_batch": round((rows1 - rows0) / max(calls1 - calls0, 1), 2)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    finally:
      proc.terminate()
      proc.wait(timeout=60)
  print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"monitor: {'off' if args.no_monitor else 'VAE ' + args.monitor_dir if args.monitor_dir else 'on'}")
  print("| mode | concurrency | requests | requests/s | p50 ms | p99 ms | mean batch |")
  print("| --- | --- | --- | --- | --- | --- | --- |")
  for r in rows:
    print(f"| {r['mode']} | {r['concurrency']} | {r['requests']} | {r['requests_per_s']} | "
          f"{r['p50_ms']} | {r['p99_ms']} | {r['mean_batch']} |")
  by = {(r["mode"], r["concurrency"]): r["requests_per_s"] for r in rows}
  for c in sorted({r["concurrency"] for r in rows}):
    if ("batched", c) in by and ("unbatched", c) in by:
      print(f"concurrency {c}: batching {by['batched', c] / by['unbatched', c]:.2f}x the "
            f"requests/s of one call per request")


if __name__ == "__main__":
  main()
