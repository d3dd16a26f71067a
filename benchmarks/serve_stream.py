"""Posts a dataset's images to a running model server, one per request, then prints its drift.

    python benchmarks/serve_stream.py --model=cnn --dataset=fashion_mnist --count=600 \\
        [--url=http://127.0.0.1:8501] [--split=test] [--rotate=0] [--noise=0] [--data_dir=DIR]

The images come from TFDS (``--data_dir`` or TFDS_DATA_DIR), optionally rotated by
``--rotate`` degrees or with Gaussian pixel noise of standard deviation ``--noise``. At the
end it prints the server's drift state for the model (GET /v1/models/MODEL/drift?wait=true):
whether the last check flagged drift, which tests failed and their p-values.
"""
import argparse
import json
import sys

import numpy as np


def shifted(images: np.ndarray, rotate: float = 0.0, noise: float = 0.0,
            seed: int = 0) -> np.ndarray:
  """uint8 images (N, H, W, C) rotated by ``rotate`` degrees (bilinear, zeros outside) and
  with Gaussian noise of standard deviation ``noise`` grey levels, rounded and clipped."""
  out = images.astype(np.float32)
  if rotate:
    from scipy import ndimage
    out = ndimage.rotate(out, rotate, axes=(1, 2), reshape=False, order=1)
  if noise:
    out = out + np.random.default_rng(seed).normal(0, noise, out.shape)
  return np.clip(np.round(out), 0, 255).astype(np.uint8)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--model", required=True)
  parser.add_argument("--dataset", required=True)
  parser.add_argument("--split", default="test")
  parser.add_argument("--count", type=int, default=600)
  parser.add_argument("--url", default="http://127.0.0.1:8501")
  parser.add_argument("--rotate", type=float, default=0.0)
  parser.add_argument("--noise", type=float, default=0.0)
  parser.add_argument("--data_dir", default=None)
  args = parser.parse_args()
  import httpx
  import tensorflow_datasets as tfds
  try:
    images = tfds.as_numpy(tfds.load(args.dataset, split=f"{args.split}[:{args.count}]",
                                     batch_size=-1, data_dir=args.data_dir))["image"]
  except Exception as e:  # noqa: BLE001 (not prepared, no connection to download it)
    sys.exit(f"error: cannot read {args.dataset!r} from TFDS: {str(e).splitlines()[0]}")
  images = shifted(images, args.rotate, args.noise)
  with httpx.Client(base_url=args.url, trust_env=False, timeout=60) as http:
    for i, image in enumerate(images):
      answer = http.post(f"/v1/models/{args.model}:predict", json={"instances": [image.tolist()]})
      if answer.status_code != 200:
        sys.exit(f"error: request {i}: {answer.status_code} {answer.text}")
    state = http.get(f"/v1/models/{args.model}/drift", params={"wait": "true"}).json()
  last = state["last_check"] or {}
  print(json.dumps({"examples": state["examples"], "checks": state["checks"],
                    "alarms": state["alarms"], "drift": state["drift"],
                    "failing": last.get("failing", []),
                    "p_values": {k: v["p_value"] for k, v in last.get("tests", {}).items()}},
                   indent=1))


if __name__ == "__main__":
  main()
