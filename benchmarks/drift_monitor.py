"""Drift monitors of a served classifier compared: detection delay and false-alarm rate.

    TFDS_DATA_DIR=DIR python benchmarks/drift_monitor.py --classifier=workdirs/cnn/export \\
        --vae=workdirs/vae/export [--repeats=20] [--window=500 --stride=50 --alpha=0.01] [--http]
        [--mix=0.1] [--rotate=15,45] [--noise=16,48]

The classifier (e.g. the MNIST ``cnn``) and a VAE trained on the same data are exports
(``launch.py --mode=export``). Every test image of the classifier's dataset and of each
shifted stream is scored once with the exported functions, exactly as the server does
(research/serving/server.py): the classifier's probabilities, the VAE's -ELBO, the
per-image mean pixel. The streams are then replayed through research/serving/drift.py's
monitor, one image per request:

  monitors   confidence KS alone, and with its low-tail test; the VAE's -ELBO KS alone, and
             with its high-tail test; the server's monitor (all of these, the predicted
             classes and the mean pixel, Bonferroni over the six)
  shifts     Fashion-MNIST test images, alone and as a fraction --mix of the digits; the
             digits rotated by --rotate degrees; the digits with Gaussian pixel noise of
             standard deviation --noise (grey levels, clipped)
  delay      a stream of ``window + stride`` in-distribution test images (random order),
             then shifted ones: requests after the switch until a check flags drift
             (median and range over --repeats orders; "miss" when --max_after passes first)
  false alarms  the whole in-distribution test stream (random order) per repeat: the
             fraction of checks that flag drift (overlapping windows, stride apart), and of
             disjoint windows (a monitor with stride = window), with 95% Clopper-Pearson
             intervals; the configured rate is --alpha per check

``--http`` replays one order of each shift through a real server on loopback and checks
that its drift endpoint flags at the same request as the replay.
"""
import argparse
import contextlib
import json
import os
import sys

import numpy as np
from scipy import stats

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for path in (ROOT, os.path.join(ROOT, "benchmarks")):
  if path not in sys.path:
    sys.path.insert(0, path)

import load_test  # noqa: E402
import serve_stream  # noqa: E402
from research.serving import drift, runtime, server  # noqa: E402

MONITORS = {"confidence KS": ("confidence",),
            "confidence KS + low tail": ("confidence", "confidence_tail"),
            "VAE -ELBO KS": ("generative",),
            "VAE -ELBO KS + high tail": ("generative", "generative_tail"),
            "server monitor": ("confidence", "confidence_tail", "predicted_class", "input:image",
                               "generative", "generative_tail")}


def load_images(dataset: str, data_dir: str | None) -> np.ndarray:
  import tensorflow_datasets as tfds
  try:
    return tfds.as_numpy(tfds.load(dataset, split="test", batch_size=-1, data_dir=data_dir,
                                   download=False))["image"]
  except Exception as e:  # noqa: BLE001
    sys.exit(f"error: this benchmark needs {dataset!r} prepared in a TFDS data dir "
             f"(TFDS_DATA_DIR or --data_dir): {str(e).splitlines()[0]}")


def shifted_streams(images: np.ndarray, args) -> dict:
  """The shifted test images by name: the other dataset, alone and as a fraction --mix of
  the stream; rotations; pixel noise."""
  rng = np.random.default_rng(0)
  other = load_images(args.shift_dataset, args.data_dir)
  streams = {"Fashion-MNIST": other}
  for fraction in args.mix:
    mixed = images.copy()
    chosen = rng.random(len(images)) < fraction
    mixed[chosen] = other[rng.choice(len(other), chosen.sum())]
    streams[f"{fraction:.0%} Fashion-MNIST mixed in"] = mixed
  for degrees in args.rotate:
    streams[f"rotated {degrees:g} deg"] = serve_stream.shifted(images, rotate=degrees)
  for sd in args.noise:
    streams[f"noise sd {sd:g}"] = serve_stream.shifted(images, noise=sd)
  return streams


def numbers(text: str) -> list[float]:
  return [float(x) for x in text.split(",") if x]


def scores(classifier, vae, images: np.ndarray, tests: dict, chunk: int = 500) -> dict:
  """One value per image for every test, from the exported functions."""
  probs = np.concatenate([classifier.call("probs", {"image": images[i:i + chunk]})
                          for i in range(0, len(images), chunk)])
  neg_elbo = -np.concatenate([vae.call("elbo", {"image": images[i:i + chunk]})
                              for i in range(0, len(images), chunk)])
  return drift.traffic_values(tests, probs=probs, inputs={"image": images}, neg_elbo=neg_elbo)


def take(values: dict, order) -> dict:
  return {k: v[order] for k, v in values.items()}


def first_alarm(tests: dict, options: drift.Options, stream: dict, after: int) -> int | None:
  """Examples after ``after`` at which a check first flags drift (None: never)."""
  monitor = drift.DriftMonitor(tests, options)
  for check in monitor.observe(stream):
    if check.drift and check.examples > after:
      return check.examples - after
  return None


def alarm_rate(tests: dict, options: drift.Options, streams: list[dict]) -> tuple[int, int]:
  alarms = checks = 0
  for stream in streams:
    results = drift.DriftMonitor(tests, options).observe(stream)
    alarms += sum(c.drift for c in results)
    checks += len(results)
  return alarms, checks


def interval(k: int, n: int) -> str:
  low, high = stats.binomtest(k, n).proportion_ci(0.95, method="exact")
  return f"{k / n:.4f} [{low:.4f}, {high:.4f}] ({k}/{n})"


@contextlib.contextmanager
def drift_server(args):
  """One server of ``args.classifier`` monitored by ``args.vae``; yields an httpx client."""
  import httpx
  port = load_test.free_port()
  server_args = argparse.Namespace(export_dir=args.classifier, monitor_dir=args.vae,
                                   no_monitor=False, max_batch_size=64)
  extra = [f"--serve.drift_window={args.window}", f"--serve.drift_stride={args.stride}",
           f"--serve.drift_alpha={args.alpha}"]
  proc = load_test.start_server(server_args, True, port, extra)
  try:
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", trust_env=False, timeout=60) as http:
      yield http
  finally:
    proc.terminate()
    proc.wait(timeout=60)


def replay_over_http(http, stream_images: np.ndarray, name: str) -> int | None:
  """Posts ``stream_images`` one per request into an emptied drift window; the examples
  of this stream at the server's first alarm (None: none)."""
  http.post(f"/v1/models/{name}/drift/reset")
  before = http.get(f"/v1/models/{name}/drift").json()["examples"]  # reset keeps the counts
  for image in stream_images:
    http.post(f"/v1/models/{name}:predict", json={"instances": [image.tolist()]})
  state = http.get(f"/v1/models/{name}/drift", params={"wait": "true"}).json()
  alarms = [a["examples"] - before for a in state["recent_alarms"] if a["examples"] > before]
  return min(alarms) if alarms else None


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--classifier", required=True)
  parser.add_argument("--vae", required=True)
  parser.add_argument("--shift_dataset", default="fashion_mnist")
  parser.add_argument("--mix", type=numbers, default=[0.1], help="fractions, comma-separated")
  parser.add_argument("--rotate", type=numbers, default=[15.0, 45.0], help="degrees")
  parser.add_argument("--noise", type=numbers, default=[16.0, 48.0], help="grey levels")
  parser.add_argument("--window", type=int, default=drift.WINDOW)
  parser.add_argument("--stride", type=int, default=drift.STRIDE)
  parser.add_argument("--alpha", type=float, default=drift.ALPHA)
  parser.add_argument("--repeats", type=int, default=20)
  parser.add_argument("--max_after", type=int, default=2000)
  parser.add_argument("--data_dir", default=None)
  parser.add_argument("--http", action="store_true")
  args = parser.parse_args()
  classifier, vae = runtime.load(args.classifier), runtime.load(args.vae)
  options = drift.Options(args.window, args.stride, args.alpha)
  all_tests = drift.reference_tests(classifier.reference, vae.reference)
  clean_images = load_images(classifier.meta["dataset"], args.data_dir)
  clean = scores(classifier, vae, clean_images, all_tests)
  shifted_images = shifted_streams(clean_images, args)
  shifted = {k: scores(classifier, vae, v, all_tests) for k, v in shifted_images.items()}
  rng = np.random.default_rng(1)
  before = args.window + args.stride
  orders = [(rng.permutation(len(clean_images))[:before],
             {k: rng.permutation(len(v["confidence"]))[:args.max_after] for k, v in shifted.items()})
            for _ in range(args.repeats)]
  print(f"classifier {args.classifier} (reference: {classifier.reference['split']} split, "
        f"{classifier.reference['examples']} examples); VAE {args.vae}; window {args.window}, "
        f"stride {args.stride}, alpha {args.alpha}; {args.repeats} orders\n")
  print("| monitor | shift | delay, requests: median (min-max) | detected within "
        f"{args.max_after} |")
  print("| --- | --- | --- | --- |")
  results = {}
  for monitor, names in MONITORS.items():
    tests = {n: all_tests[n] for n in names}
    for shift, values in shifted.items():
      delays = []
      for clean_order, shift_orders in orders:
        stream = {n: np.concatenate([clean[n][clean_order], values[n][shift_orders[shift]]])
                  for n in names}
        delays.append(first_alarm(tests, options, stream, before))
      found = [d for d in delays if d is not None]
      results[monitor, shift] = delays
      text = (f"{np.median(found):.0f} ({min(found)}-{max(found)})" if found else "-")
      print(f"| {monitor} | {shift} | {text} | {len(found)}/{len(delays)} |", flush=True)
  print("\n| monitor | false alarms per check (overlapping windows) | per disjoint window |")
  print("| --- | --- | --- |")
  clean_orders = [np.random.default_rng(100 + r).permutation(len(clean_images))
                  for r in range(args.repeats)]
  disjoint = drift.Options(args.window, args.window, args.alpha)
  for monitor, names in MONITORS.items():
    tests = {n: all_tests[n] for n in names}
    streams = [{n: clean[n][order] for n in names} for order in clean_orders]
    print(f"| {monitor} | {interval(*alarm_rate(tests, options, streams))} | "
          f"{interval(*alarm_rate(tests, disjoint, streams))} |", flush=True)
  if args.http:
    name = server.model_name(classifier)
    clean_order, shift_orders = orders[0]
    with drift_server(args) as http:
      for shift, images in shifted_images.items():
        stream = np.concatenate([clean_images[clean_order], images[shift_orders[shift]]])
        expected = results["server monitor", shift][0]
        got = replay_over_http(http, stream[:before + (expected or args.max_after)], name)
        print(f"over HTTP, {shift}: first alarm after {got and got - before} requests of the "
              f"shift; the replay: {expected}", flush=True)


if __name__ == "__main__":
  main()
