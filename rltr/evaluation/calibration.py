"""Matched compute: set a method's knob (a fixed budget, or a score threshold) so that its mean compute on
training examples equals a target — e.g. what a router spends when it chooses its own budget — then
compare on held-out examples. This module is the search only: a bisection over a callable that measures the
metric (:mod:`rltr.evaluation.matched` passes one that runs :func:`rltr.evaluation.run.run_method` on training
examples, the same path as every other row).

Both knobs are monotone (a larger budget, or a lower threshold, keeps at least as many tokens), so a
bisection finds them: over (0, 1] for a budget, over the sorted scores the method gave the training
tokens for a threshold.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from rltr.reducers import ScoreReducer

METRICS = ("compute_fraction", "kept_ratio")  # what "the same mean compute" is measured by


@dataclass
class Calibration:
    knob: str  # "budget" or "threshold"
    value: float  # the budget, or the threshold
    achieved: float  # the metric's mean on the calibration examples at ``value``
    target: float
    metric: str


def bisect_budget(measure: Callable[[float], float], target: float, metric: str = "compute_fraction", steps: int = 14) -> Calibration:
    """The fixed budget whose ``measure(budget)`` (a mean ``metric``, increasing in the budget) comes closest to
    ``target``: bisection over (0, 1]."""
    check_metric(metric)
    lo, hi = 1e-3, 1.0
    best = (float("inf"), hi, 0.0)
    for _ in range(steps):
        mid = (lo + hi) / 2
        got = measure(mid)
        best = min(best, (abs(got - target), mid, got))
        lo, hi = (mid, hi) if got < target else (lo, mid)
    return Calibration("budget", best[1], best[2], target, metric)


def bisect_threshold(reducer: ScoreReducer, measure: Callable[[], float], target: float, metric: str = "compute_fraction") -> Calibration:
    """The score threshold of ``reducer`` whose ``measure()`` (a mean ``metric`` of the reducer as it is set now,
    budget None) comes closest to ``target``: bisection over the sorted scores ``reducer`` gives the unprotected
    context tokens while measured once at threshold -inf. Leaves ``reducer`` at the threshold found."""
    check_metric(metric)
    if not (isinstance(reducer, ScoreReducer) and reducer.thresholdable):
        raise ValueError(f"{reducer.name} has no threshold mode")
    reducer.with_threshold(float("-inf"))  # keep everything once, recording every score
    reducer.record = []
    try:
        measure()
        scores = torch.cat(reducer.record).float().unique()  # sorted ascending
    finally:
        reducer.record = None
    scores = scores[torch.isfinite(scores)]
    lo, hi = 0, len(scores) - 1  # threshold = scores[i]: a larger i keeps fewer tokens
    best = (float("inf"), float(scores[0]), 0.0)
    while lo <= hi:
        mid = (lo + hi) // 2
        reducer.with_threshold(float(scores[mid]))
        got = measure()
        best = min(best, (abs(got - target), float(scores[mid]), got))
        lo, hi = (mid + 1, hi) if got > target else (lo, mid - 1)
    reducer.with_threshold(best[1])
    return Calibration("threshold", best[1], best[2], target, metric)


def check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ValueError(f"matched metric must be one of {list(METRICS)}, got {metric!r}")
