"""A JAX research codebase for discriminative and generative deep learning."""
