"""Orchestration: building a run from its config, the train loop, whole-config validation,
replicas, restoring a finished run, and the launcher's modes."""
