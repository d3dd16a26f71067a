"""Studies: programs of many runs and an analysis over their results (see base.py)."""
