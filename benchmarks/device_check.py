"""Helpers of benchmarks/device_bundle.sh (here) and benchmarks/device_check.sh (on a GPU
machine without TensorFlow, TFDS, clu or ml_collections, and without network).

    python benchmarks/device_check.py export --bundle=device_bundle --data_dir=DIR \\
        --configs cnn:digits ... --metadata_configs cnn resnet
    python benchmarks/device_check.py missing-wheels device_bundle/wheels
    python benchmarks/device_check.py install-data --bundle=device_bundle --data_dir=D \\
        [--cache_dir=C] --configs cnn vit:digits ...
    python benchmarks/device_check.py append --jsonl=rows.jsonl --results=benchmarks/RESULTS.md

``export`` writes the bundle's data: the prepared TFDS metadata (``dataset_info.json``,
``features.json``, label files: no record files) of every dataset the configs read, and the
whole splits of the configs under ``--configs`` as plain ``.npz`` (the small bundled
datasets the tests train on; those of ``--metadata_configs`` travel as metadata only).
``install-data`` puts the metadata into a TFDS data dir and fills the project's split cache
(research/data/cache.py, keyed by the new location) from the carried splits, or with random
data of the split's shapes, dtypes, size and classes where none was carried (enough for
throughput, which needs no real images). Only numpy, TFDS (without TensorFlow) and the
project are imported. ``record``, ``show`` and ``append`` turn throughput.py's JSON lines
into the rows of the GPU table of benchmarks/RESULTS.md.
"""
import argparse
import datetime
import importlib
import importlib.metadata
import json
import os
import re
import shutil
import sys
import tempfile
import zlib

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

MANIFEST = "manifest.json"
RECORD_FILE = re.compile(r"\.(tfrecord|array_record|riegeli)(-|$)")
GPU_TABLE = "### GPU device check"
GPU_HEADER = ("| date | command | examples/s median (min-max) | MFU | roofline (measured matmul) "
              "| compile | start-up / first step | data | machine; versions |")


def load_data_config(name: str, data_dir: str | None, cache_dir: str | None):
  """``configs/NAME.py``'s ``config.data`` for ``NAME[:ARG]``, reading from ``data_dir``."""
  module, _, arg = name.partition(":")
  config = importlib.import_module(f"configs.{module}").get_config(arg or None)
  data = config.data
  data.data_dir = data_dir
  if cache_dir is not None:
    data.cache_dir = cache_dir
  return data


def splits_of(data) -> list[str]:
  return list(dict.fromkeys(data[f"{s}_split"] for s in ("train", "val", "test")))


def entry_name(dataset: str, split: str, features) -> str:
  key = json.dumps([dataset, split, list(features)])
  return f"{dataset}-{zlib.crc32(key.encode()):08x}.npz"


def copy_metadata(builder, to_data_dir: str) -> str:
  """Copies the prepared folder of ``builder`` to ``to_data_dir``, record files left out."""
  source, relative = os.fspath(builder.data_path), builder.info.full_name  # NAME[/CONFIG]/VERSION
  target = os.path.join(to_data_dir, relative)
  os.makedirs(target, exist_ok=True)
  for name in os.listdir(source):
    if not RECORD_FILE.search(name) and os.path.isfile(os.path.join(source, name)):
      shutil.copy2(os.path.join(source, name), target)
  return relative


def export(args) -> None:
  """The bundle's data (see the module docstring); run where TFDS can read the splits."""
  import tensorflow_datasets as tfds
  from research.data import pipeline
  out = os.path.join(args.bundle, "data")
  shutil.rmtree(out, ignore_errors=True)
  os.makedirs(os.path.join(out, "splits"))
  bundled_dir = tempfile.mkdtemp(prefix="device_bundle_tfds_")  # bundled: prepared here
  for module in pipeline.BUNDLED_DATASET_MODULES:  # registers the bundled datasets' builders
    importlib.import_module(module)
  manifest, copied = [], set()
  for name in args.configs + args.metadata_configs:
    data = load_data_config(name, None, "")
    if getattr(tfds.builder_cls(data.name), "BUNDLED", False):
      data.data_dir = bundled_dir  # prepared offline, here, not in the user's data dir
    else:
      data.data_dir = args.data_dir
    builder = pipeline.get_builder(data.name, data.data_dir, False)
    if data.name not in copied:
      print(f"metadata: {data.name} ({copy_metadata(builder, os.path.join(out, 'tfds'))})")
      copied.add(data.name)
    if name not in args.configs:
      continue
    for split in splits_of(data):
      file = entry_name(data.name, split, data.features)
      if any(m["file"] == file for m in manifest):
        continue
      arrays = pipeline.load_split(data, split)
      np.savez(os.path.join(out, "splits", file), **arrays)
      manifest.append({"dataset": data.name, "split": split, "features": list(data.features),
                       "file": file})
      print(f"split: {data.name} {split} {list(data.features)}: "
            f"{pipeline.num_examples(arrays)} examples")
  with open(os.path.join(out, MANIFEST), "w") as f:
    json.dump(manifest, f, indent=1)
  shutil.rmtree(bundled_dir, ignore_errors=True)


def missing_wheels(args) -> None:
  """Prints ``name==version`` of each wheel in the folder whose distribution is not
  installed (on one line); installed ones are left as they are."""
  wanted = {}
  for file in sorted(os.listdir(args.folder)):
    if file.endswith(".whl"):
      name, version = file.split("-")[:2]
      wanted[name] = version
  missing = []
  for name, version in wanted.items():
    try:
      importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      missing.append(f"{name}=={version}")
  print(" ".join(missing))


def synthetic_split(info, dataset: str, split: str) -> dict[str, np.ndarray]:
  """Random arrays with ``info``'s example count, per-example shapes, dtypes and classes."""
  if info.num_examples is None:
    raise SystemExit(f"{dataset} {split}: the dataset's info gives no example count; "
                     f"carry this split in the bundle instead")
  rng = np.random.default_rng(zlib.crc32(f"{dataset}/{split}".encode()))
  arrays = {}
  for name, (shape, dtype) in info.features.items():
    if any(d is None for d in shape):
      raise SystemExit(f"{dataset} {split}: feature {name!r} has no fixed shape {shape}; "
                       f"carry this split in the bundle instead")
    size = (info.num_examples, *shape)
    if name in info.classes:
      arrays[name] = rng.integers(0, info.classes[name], size).astype(dtype)
    elif dtype.kind in "iu":
      high = min(np.iinfo(dtype).max, 255) + 1
      arrays[name] = rng.integers(0, high, size).astype(dtype)
    else:
      arrays[name] = rng.random(size).astype(dtype)
  return arrays


def install_data(args) -> None:
  """Metadata into ``--data_dir``, every split of ``--configs`` into the split cache."""
  from research.data import cache, pipeline
  source = os.path.join(args.bundle, "data")
  if not os.path.isfile(os.path.join(source, MANIFEST)):
    raise SystemExit(f"no {MANIFEST} in {source}: build the bundle with "
                     f"benchmarks/device_bundle.sh on a machine with the data")
  shutil.copytree(os.path.join(source, "tfds"), args.data_dir, dirs_exist_ok=True)
  with open(os.path.join(source, MANIFEST)) as f:
    carried = {(m["dataset"], m["split"], tuple(m["features"])): m["file"] for m in json.load(f)}
  done = set()
  for name in args.configs:
    data = load_data_config(name, args.data_dir, args.cache_dir)
    if not data.cache_dir:
      raise SystemExit(f"{name}: data.cache_dir is empty; give --cache_dir")
    builder = pipeline.get_builder(data.name, data.data_dir, False)
    for split in splits_of(data):
      key = (data.name, split, tuple(data.features))
      path = cache.entry_path(data.cache_dir, builder, split, data.features)
      if key in done or path is None:
        continue
      done.add(key)
      if key in carried:
        with np.load(os.path.join(source, "splits", carried[key])) as entry:
          arrays, origin = {k: entry[k] for k in entry.files}, "carried split"
      else:
        info = pipeline.split_info(builder, split, data.features)
        arrays, origin = synthetic_split(info, data.name, split), "SYNTHETIC (random) split"
      cache.save(path, arrays)
      loaded = pipeline.load_split(data, split)  # what a run reads: from the cache, no TF
      print(f"data: {data.name} {split}: {origin}, {pipeline.num_examples(loaded)} examples "
            f"of {', '.join(f'{k} {v.dtype}{list(v.shape[1:])}' for k, v in loaded.items())}",
            flush=True)


def gpu_row(r: dict) -> str:
  if "error" in r:
    return (f"| {r['date']} | `{r['command']}` | failed: {r['error']} | | | | | "
            f"{r.get('data', '')} | {r.get('machine', '')} |")
  mfu = (f"{r['mfu']:.1%} of {r['peak_tflops']:g} TFLOP/s ({r['mfu_basis']})"
         if r.get("mfu") is not None else f"n/a ({r.get('mfu_basis', 'no --peak_flops')})")
  roofline = f"{r['roofline_fraction']:.1%} of {r['matmul_gflops']:,.0f} GFLOP/s float32"
  if "bfloat16_matmul_gflops" in r:
    roofline += (f", {r['bfloat16_roofline_fraction']:.1%} of "
                 f"{r['bfloat16_matmul_gflops']:,.0f} bfloat16")
  return (f"| {r['date']} | `{r['command']}` | {r['examples_per_s_median']:,.0f} "
          f"({r['examples_per_s_min']:,.0f}-{r['examples_per_s_max']:,.0f}) | {mfu} "
          f"({r['step_mflops_per_example']:.1f} MFLOP/ex) | {roofline} | {r['compile_s']:.2f} s "
          f"| {r['startup_s']:.1f} s / {r['first_step_done_s']:.1f} s | {r['data']} | "
          f"{r['machine']}; {r['versions']} |")


def append(args) -> None:
  """Appends the rows of ``--jsonl`` to the GPU table of ``--results`` (made, after the
  speed log, if missing); prints them."""
  with open(args.jsonl) as f:
    rows = [gpu_row(json.loads(line)) for line in f if line.strip()]
  lines = open(args.results).read().splitlines()
  if GPU_TABLE not in lines:
    from benchmarks import throughput
    at = next((i for i, line in enumerate(lines) if line.startswith(throughput.SPEED_LOG_HEADER)),
              len(lines) - 1)
    while at + 1 < len(lines) and lines[at + 1].startswith("|"):
      at += 1
    lines[at + 1:at + 1] = [
        "", GPU_TABLE, "",
        "Rows appended by `benchmarks/device_check.sh`. MFU: examples/s x XLA's FLOPs per "
        "example of one", "train step, over the devices' peak dense FLOP/s "
        "(benchmarks/peak_flops.py: datasheet figures;", "float32 runs against TF32, the "
        "precision XLA's default float32 matmuls take on NVIDIA GPUs).", "",
        GPU_HEADER, "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
  end = lines.index(GPU_TABLE)
  while not lines[end].startswith(GPU_HEADER.split(" |")[0]):
    end += 1
  while end + 1 < len(lines) and lines[end + 1].startswith("|"):
    end += 1
  lines[end + 1:end + 1] = rows
  with open(args.results, "w") as f:
    f.write("\n".join(lines) + "\n")
  print("\n".join(rows))


def record(args) -> None:
  """One JSON line for ``--jsonl``: throughput.py's result (its last stdout line) with the
  command, data origin and date; a failure (``--status`` non-zero) as an error row."""
  row = {"date": str(datetime.date.today()), "command": args.command, "data": args.data}
  lines = [l for l in open(args.output).read().splitlines() if l.startswith("{")]
  if args.status == 0 and lines:
    row.update(json.loads(lines[-1]))
  else:
    why = "timed out" if args.status in (124, 137) else f"exit status {args.status}"
    row["error"] = f"{why} (log: {os.path.basename(args.output)})"
  with open(args.jsonl, "a") as f:
    f.write(json.dumps(row) + "\n")


def show(args) -> None:
  """One line on the last row of ``--jsonl``: examples/s and MFU, or the failure."""
  with open(args.jsonl) as f:
    r = [json.loads(line) for line in f if line.strip()][-1]
  if "error" in r:
    print(f"FAILED: {r['error']}")
  elif r.get("mfu") is None:
    print(f"{r['examples_per_s_median']:,.0f} examples/s, MFU n/a ({r.get('mfu_basis')})")
  else:
    print(f"{r['examples_per_s_median']:,.0f} examples/s, MFU {r['mfu']:.1%} of "
          f"{r['peak_tflops']:g} TFLOP/s ({r['mfu_basis']})")


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  commands = parser.add_subparsers(dest="command", required=True)
  p = commands.add_parser("export")
  p.add_argument("--bundle", required=True)
  p.add_argument("--data_dir", default=os.environ.get("TFDS_DATA_DIR"))
  p.add_argument("--configs", nargs="*", default=[])
  p.add_argument("--metadata_configs", nargs="*", default=[],
                 help="configs whose datasets travel as metadata only (synthetic splits)")
  p.set_defaults(run=export)
  p = commands.add_parser("missing-wheels")
  p.add_argument("folder")
  p.set_defaults(run=missing_wheels)
  p = commands.add_parser("install-data")
  p.add_argument("--bundle", required=True)
  p.add_argument("--data_dir", required=True)
  p.add_argument("--cache_dir", default=None, help="default: each config's data.cache_dir")
  p.add_argument("--configs", nargs="+", required=True)
  p.set_defaults(run=install_data)
  p = commands.add_parser("record")
  for flag in ("--output", "--jsonl", "--command", "--data"):
    p.add_argument(flag, required=True)
  p.add_argument("--status", type=int, required=True)
  p.set_defaults(run=record)
  p = commands.add_parser("append")
  p.add_argument("--jsonl", required=True)
  p.add_argument("--results", required=True)
  p.set_defaults(run=append)
  p = commands.add_parser("show")
  p.add_argument("--jsonl", required=True)
  p.set_defaults(run=show)
  args = parser.parse_args(argv)
  args.run(args)


if __name__ == "__main__":
  main()
