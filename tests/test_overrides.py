"""What a user types on the command line, checked before anything runs: each bad override,
config file or model is one ConfigError line naming the field and what it takes
(research/cli/overrides.py, research/tasks/base.py). Launcher runs of the same class of
errors (exit 2, nothing written) are in test_bad_inputs.py."""
import flax.linen as nn
import pytest

from research import errors
from research.cli import overrides
from research.tasks import base as tasks_base
from tests.conftest import error_lines, load_config, run_launcher

# (overrides, fragments the one-line message must contain); on mlp:digits
CASES = {
    "unknown nested field, close spelling": (
        ["--config.model.hiden=3"], ["--config.model.hiden", "model has no field 'hiden'",
                                     "did you mean model.hidden?"]),
    "unknown field in another group": (
        ["--config.learning_rate=0.1"], ["no field 'learning_rate'",
                                         "did you mean optimizer.learning_rate?"]),
    "unknown field, no close name": (["--config.model.widht=3"], ["model has no field 'widht'",
                                                                   "--dry_run lists the fields"]),
    "integer given a float": (["--config.batch_size=64.5"],
                              ["batch_size takes an integer (now 128); got '64.5'"]),
    "integer given text": (["--config", "x", "--config.total_steps=ten"],
                           ["total_steps takes an integer"]),
    "number given text": (["--config.optimizer.learning_rate=abc"],
                          ["optimizer.learning_rate takes a number"]),
    "boolean given text": (["--config.data.download=maybe"], ["data.download takes True or False"]),
    "tuple of numbers given text": (["--config.model.hidden=(3,x)"],
                                    ["model.hidden takes a tuple of numbers (now (1024, 1024))"]),
    "tuple of strings given bare commas": (
        ["--config.data.features=image,label"],
        ["data.features takes a tuple of strings, written as a Python tuple"]),
    "a group set to a value": (["--config.model=3"], ["model is a group of fields", "hidden"]),
    "a value used as a group": (["--config.batch_size.x=3"],
                                ["batch_size is a value (128), not a group"]),
    "a value-less non-boolean": (["--config.batch_size", "--config.seed=1"],
                                 ["--config.batch_size needs a value"]),
}

GOOD = ["--config.model.hidden=256", "--config.model.hidden=(64, 32)", "--config.data.download",
        "--config.optimizer.learning_rate=1e-3", "--config.batch_size", "64",
        "--config.data.download=False", "--config.gate=", "--config.data.name=mnist",
        "--config.data.features=('image', 'label')"]


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_override_is_one_line(case):
  argv, fragments = CASES[case]
  with pytest.raises(errors.ConfigError) as error:
    overrides.check(argv, load_config("mlp"))
  message = str(error.value)
  assert "\n" not in message
  for fragment in fragments:
    assert fragment in message, message


def test_good_overrides_pass():
  overrides.check(GOOD, load_config("mlp"))


@pytest.mark.parametrize("source, fragment", [
    ("def get_config(arg=None):\n  raise RuntimeError('boom\\nmore')\n",
     "failed in get_config(digits): RuntimeError: boom more"),
    ("def get_config(arg=None)\n  return 1\n", "has a syntax error at line 1"),
    ("def get_config(arg=None):\n  return {'a': 1}\n", "returned a dict, not an ml_collections"),
    ("x = 1\n", "AttributeError"),
])
def test_a_broken_config_file_is_one_line(tmp_path, source, fragment):
  path = tmp_path / "my_config.py"
  path.write_text(source)
  with pytest.raises(errors.ConfigError) as error:
    overrides.load(str(path), "digits")
  assert "\n" not in str(error.value) and fragment in str(error.value), str(error.value)


class Model(nn.Module):
  """A classifier whose ``__call__`` lacks ``train`` (the contract: models/base.py)."""
  num_classes: int = 10
  hidden: tuple = ()
  activation: str = "relu"
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x):
    return nn.Dense(self.num_classes)(x.reshape(x.shape[0], -1))


def test_a_model_without_train_is_refused_at_validation():
  config = load_config("mlp")
  config.model.name = "tests.test_overrides"  # this module's Model
  with pytest.raises(errors.ConfigError, match=r"__call__ must take a `train: bool` argument"):
    tasks_base.build_model(config)


def test_launcher_reports_a_bad_override_before_loading_anything(tmp_path):
  proc = run_launcher("--config=mlp:digits", "--config.batch_size=64.5",
                      f"--workdir={tmp_path / 'run'}")
  assert proc.returncode == 2 and "Traceback" not in proc.stderr
  assert error_lines(proc) == ["error: --config.batch_size=64.5: batch_size takes an integer "
                               "(now 128); got '64.5'"]
  assert not (tmp_path / "run").exists()
