"""Evaluation application: one loop for every method, sweeps, calibration, matched-compute rows, reports, plots, gaps."""
