"""A JAX research codebase for discriminative and generative deep learning."""
from research.core import lazy_tf

lazy_tf.install()  # before anything imports clu: its metric writers without TensorFlow
