"""Input pipeline over TFDS, preprocessing ops, and the datasets the project bundles."""
