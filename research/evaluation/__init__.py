"""Evaluation beyond a batch's metrics: image grids, and (later) likelihoods, calibration."""
