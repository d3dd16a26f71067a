"""Evaluators: plug-ins chosen by name in ``config.evals`` (see base.py)."""
