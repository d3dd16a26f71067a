"""Flax Linen modules, one file per family; ``config.model.name`` picks the file's ``Model``."""
