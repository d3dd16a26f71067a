"""The Palmer penguins as a TFDS dataset, so that tabular data loads like any other.

344 penguins of three species (Adelie, Chinstrap, Gentoo) measured on three islands
near Palmer Station, 2007-2009; the table ships inside the ``palmerpenguins`` package:
no download. The data keeps its defects: 2 rows miss every measurement, 11 miss the
sex. Features, one per column:

  island, sex                   string, "" where missing (categorical)
  bill_length_mm, bill_depth_mm,
  flipper_length_mm, body_mass_g,
  year                          float32, NaN where missing (numeric)
  label                         ClassLabel: the species

A fixed stratified split (random_state 0) holds out 20% (69 rows) as test. Turning the
columns into one feature vector (imputation, clipping, one-hot, standardisation) is the
run's, fitted on its training split: research/data/tabular.py.
"""
import numpy as np
import tensorflow_datasets as tfds

SPECIES = ("Adelie", "Chinstrap", "Gentoo")
NUMERIC = ("bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "year")
CATEGORICAL = ("island", "sex")
TEST_FRACTION = 0.2


def load_table():
  """The bundled table: ``(numeric {column: float32 (N,)}, categorical {column: str (N,)},
  species ids (N,))``, NaN and "" where a value is missing."""
  import palmerpenguins
  frame = palmerpenguins.load_penguins()
  numeric = {c: frame[c].to_numpy(np.float64, na_value=np.nan).astype(np.float32)
             for c in NUMERIC}
  categorical = {c: np.array(["" if isinstance(v, float) or v is None else str(v)
                              for v in frame[c].astype(object)], dtype=object)
                 for c in CATEGORICAL}
  labels = np.array([SPECIES.index(s) for s in frame["species"]], np.int64)
  return numeric, categorical, labels


class Penguins(tfds.core.GeneratorBasedBuilder):
  """The Palmer penguins (bundled, offline): species from island, measurements, sex, year."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUNDLED = True  # prepared locally from an installed package; never downloaded

  def _info(self) -> tfds.core.DatasetInfo:
    features = {c: tfds.features.Text() for c in CATEGORICAL}
    features.update({c: tfds.features.Tensor(shape=(), dtype=np.float32) for c in NUMERIC})
    features["label"] = tfds.features.ClassLabel(names=SPECIES)
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict(features),
        homepage="https://allisonhorst.github.io/palmerpenguins/",
    )

  def _split_generators(self, dl_manager):
    from sklearn.model_selection import train_test_split

    table = load_table()
    indices = np.arange(len(table[2]))
    train, test = train_test_split(indices, test_size=TEST_FRACTION, stratify=table[2],
                                   random_state=0)
    return {"train": self._generate_examples(table, np.sort(train)),
            "test": self._generate_examples(table, np.sort(test))}

  def _generate_examples(self, table, indices):
    numeric, categorical, labels = table
    for i in indices:
      example = {c: categorical[c][i] for c in CATEGORICAL}
      example.update({c: numeric[c][i] for c in NUMERIC})
      example["label"] = int(labels[i])
      yield int(i), example
