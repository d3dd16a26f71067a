"""Serving a finished run: its export (export.py) and the runtime that loads it (runtime.py)."""
