"""Bad configs and inputs: each is one line on stderr, exit status 2, no traceback, and
nothing is trained."""
import os

import pytest

from research.train import modes
from research import errors
from research.train import loop, validation
from tests.conftest import (assert_one_line_failure, closed_port_url, error_lines, load_config,
                            run_launcher, stderr_summary)

def saved_checkpoints(workdir) -> list[str]:
  directory = workdir / "checkpoints"
  return os.listdir(directory) if directory.exists() else []


EIGHT_DEVICES = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}

# (arguments after --config=..., fragments the error line must contain, extra env)
CASES = {
    "unknown config": (["--config=vea"], ["unknown config 'vea'", "available: ", "cnn_strong, ", "logreg"]),
    "config argument": (["--config=vae:mnistt"], ["unknown config argument 'mnistt'"]),
    "misspelled field": (["--config.batch_sise=3"], ["no field 'batch_sise'", "batch_size"]),
    "misspelled nested field": (["--config.model.hiden=3"], ["no field 'hiden'", "hidden"]),
    "int field given text": (["--config.batch_size=abc"], ["--config.batch_size=abc"]),
    "int field given a float": (["--config.total_steps=1.5"], ["--config.total_steps=1.5"]),
    "zero batch size": (["--config.batch_size=0"], ["batch_size=0 is not allowed", "positive integer"]),
    "negative eval batch": (["--config.eval_batch_size=-8"], ["eval_batch_size=-8", "positive integer"]),
    "zero learning rate": (["--config.optimizer.learning_rate=0"],
                           ["optimizer.learning_rate=0.0 is not allowed", "positive"]),
    "negative learning rate": (["--config.optimizer.learning_rate=-0.1"],
                               ["optimizer.learning_rate=-0.1"]),
    "unknown optimizer": (["--config.optimizer.name=adamm"],
                          ["optimizer.name='adamm'", "'sgd', 'adam', 'adamw'"]),
    "unknown schedule": (["--config.optimizer.schedule=cosin"], ["optimizer.schedule='cosin'", "cosine"]),
    "beta2 of one": (["--config.optimizer.b2=1.0"], ["optimizer.b2=1.0", "in [0, 1)"]),
    "zero total steps": (["--config.total_steps=0"], ["total_steps=0", "-1 (use num_epochs)"]),
    "zero epochs": (["--config.num_epochs=0"], ["num_epochs=0.0", "positive"]),
    "no checkpoints kept": (["--config.keep_checkpoints=0"], ["keep_checkpoints=0"]),
    "batch not divisible by devices": (["--config.batch_size=12"],
                                       ["batch_size=12", "multiple of the 8 device(s)"], EIGHT_DEVICES),
    "unknown model": (["--config.model.name=vea"], ["unknown model 'vea'"]),
    "unknown task": (["--config.task.name=gan"], ["unknown task 'gan'"]),
    "a model without the config's fields": (["--config=cnn:digits", "--config.model.name=mlp"],
                                            ["model.name='mlp' cannot be built", "conv_features"]),
    "unknown preprocessing op": (["--config.data.preprocess=scale(0, 1)|binarise"],
                                 ["data.preprocess=", "unknown preprocessing op 'binarise'"]),
    "gate on an unknown metric": (["--config.gate=test/accuracy>=0.9"],
                                  ["gate='test/accuracy>=0.9'", "neg_elbo"]),
    "malformed gate": (["--config.gate=accuracy>0.9"], ["gate must look like"]),
    "unwritable workdir": (["--workdir=/proc/no_such_dir"], ["--workdir='/proc/no_such_dir' cannot be written"]),
    "infinite epochs": (["--config.num_epochs=inf"], ["num_epochs=inf is not", "finite positive"]),
    "NaN epochs": (["--config.num_epochs=nan"], ["num_epochs=nan is not", "finite positive"]),
    "negative seed": (["--config.seed=-1"], ["seed=-1 is not", "an integer in [0, 2**31)"]),
    "a classifier without its labels": (["--config=cnn:digits", "--config.data.features=image"],
                                        ["data.features=('image',) is not allowed", "with label"]),
    "gate threshold 1e": (["--config.gate=test/neg_elbo<=1e"],
                          ["gate='test/neg_elbo<=1e' is not allowed", "'1e' must be a number"]),
    "gate threshold ...": (["--config.gate=test/neg_elbo<=..."], ["'...' must be a number"]),
    "gate threshold .": (["--config.gate=test/neg_elbo<=."], ["'.' must be a number"]),
    "preprocessing op with too many arguments": (
        ["--config.data.preprocess=scale(0,1,2,3)"],
        ["data.preprocess='scale(0,1,2,3)'", "does not fit scale(low: float = 0.0, "
         "high: float = 1.0, key: str = 'image')", "too many positional arguments"]),
    "preprocessing key that is not a feature": (
        ["--config.data.preprocess=scale(0,1,key='pixels')"],
        ["key='pixels' is not a feature of the data", "data.features ('image', 'label')"]),
    "eval batch beyond memory": (["--config.eval_batch_size=200000000"],  # checked once loaded
                                 ["eval_batch_size=200000000 is not allowed", "fits in memory",
                                  "e.g. eval_batch_size="]),
    "unknown XLA flag": (["--config.xla_flags=--xla_no_such_flag=1"],
                         ["xla_flags='--xla_no_such_flag=1' is not allowed",
                          "XLA does not know --xla_no_such_flag=1"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line(case, data_dir, tmp_path):
  args, fragments, *env = CASES[case]
  if not args[0].startswith("--config="):
    args = ["--config=vae:digits", *args]
  if not any(a.startswith("--workdir") for a in args):
    args = [*args, f"--workdir={tmp_path / 'run'}"]
  proc = run_launcher(*args, f"--config.data.data_dir={data_dir}", env=env[0] if env else None)
  assert_one_line_failure(proc, 2, *fragments)
  assert not (tmp_path / "run").exists()  # nothing written, not even the folder


# Errors found once the data and model are loaded, checked in this process: the launcher
# prints any UserError as its one-line message with exit status 2 (the cases above and
# test_missing_dataset_stops_before_training show that path end to end).
# (config name, overrides, fragments the message must contain)
LATE_CASES = {
    "unknown rnn cell": ("rnn", {"model.cell": "rnnn"}, ["model.cell='rnnn' is not allowed",
                                                        "'lstm', 'gru'"]),
    "unknown activation": ("vae", {"model.activation": "relux"}, ["unknown activation 'relux'"]),
    "image shape unlike the data": ("vae", {"model.image_shape": (28, 28, 1)},
                                    ["model.image_shape=(28, 28, 1)", "(8, 8, 1)"]),
    "split that does not exist": ("vae", {"data.val_split": "validation"},
                                  ["data.val_split='validation' is not a split of 'digits'",
                                   "train, test"]),
    "unknown dataset": ("vae", {"data.name": "no_such_data"}, ["unknown dataset 'no_such_data'"]),
    "NLL gate without the NLL": ("vae", {"gate": "test/nll <= 88", "evals.nll.num_samples": 0},
                                 ["gate='test/nll <= 88'", "a metric an evaluation reports"]),
}


@pytest.mark.parametrize("case", sorted(LATE_CASES))
def test_late_bad_input_is_one_line_user_error(case, data_dir, tmp_path):
  name, overrides, fragments = LATE_CASES[case]
  config = load_config(name, data_dir=data_dir, **overrides)
  workdir = str(tmp_path / "run")
  with pytest.raises(errors.UserError) as error:
    validation.validate(config, workdir)
    loop.train_and_evaluate(config, workdir)
  message = str(error.value)
  assert "\n" not in message
  for fragment in fragments:
    assert fragment in message, message
  assert not saved_checkpoints(tmp_path / "run")


def test_missing_dataset_stops_before_training(tmp_path):
  proc = run_launcher("--config=cnn", f"--config.data.data_dir={tmp_path}",
                      "--config.data.download=False", f"--workdir={tmp_path / 'run'}")
  assert proc.returncode == 2 and "Traceback" not in proc.stderr
  lines = error_lines(proc)
  assert len(lines) == 1
  for fragment in ["dataset 'mnist' is not prepared", str(tmp_path), "TFDS_DATA_DIR", "digits"]:
    assert fragment in lines[0]
  assert not saved_checkpoints(tmp_path / "run")


def test_download_without_a_connection_fails_fast_and_clean(tmp_path):
  """The default (download on) on a machine that cannot connect: one line in seconds, no
  retries, nothing written. The connection goes to a loopback port nothing listens on (an
  HTTPS proxy), so the test never touches the network."""
  proc = run_launcher("--config=cnn", f"--config.data.data_dir={tmp_path / 'data'}",
                      f"--workdir={tmp_path / 'run'}", env={"https_proxy": closed_port_url()})
  assert proc.returncode == 2 and "Traceback" not in proc.stderr, stderr_summary(proc.stderr)
  lines = error_lines(proc)
  assert len(lines) == 1 and "cannot download dataset 'mnist'" in lines[0], proc.stderr
  assert "127.0.0.1" in lines[0] and "digits" in lines[0]
  assert "urllib3" not in proc.stderr and "Retrying" not in proc.stderr
  assert not (tmp_path / "data").exists() or not list((tmp_path / "data").iterdir())
  assert not (tmp_path / "run" / "config.json").exists()


def test_eval_mode_checks_the_checkpoint_and_its_inputs(data_dir, tmp_path):
  workdir = tmp_path / "run"
  config = load_config("vae", data_dir=data_dir, total_steps=10)
  with pytest.raises(errors.UserError, match="no checkpoint in"):
    modes.evaluate_checkpoint(config, str(workdir))
  loop.train_and_evaluate(config, str(workdir))
  proc = run_launcher("--config=vae:digits", "--mode=eval", "--config.total_steps=10",
                      f"--workdir={workdir}", f"--config.data.data_dir={data_dir}")
  assert proc.returncode == 0, stderr_summary(proc.stderr)
  assert "test/neg_elbo=" in proc.stdout


def test_images_unlike_the_trained_ones_are_refused(mock_tfds, tmp_path):
  config = load_config("vae", arg=None, total_steps=2, batch_size=16, eval_batch_size=32,
                       **{"evals.nll.num_samples": 100})
  loop.train_and_evaluate(config, str(tmp_path))  # MNIST-shaped mock images, 28x28x1 uint8
  config.data.name = "cifar10"  # 32x32x3
  with pytest.raises(errors.ConfigError, match=r"the data's image is \(32, 32, 3\) uint8, but the "
                     r"model in .* was trained on \(28, 28, 1\) uint8"):
    modes.evaluate_checkpoint(config, str(tmp_path))
