"""Rows at matched compute: every heuristic at the mean compute a router spends by its own choice, as a
fixed budget and (score methods) in threshold mode, each calibrated on training examples
(:mod:`rltr.evaluation.calibration`) and then measured on the same held-out examples as the router."""

from __future__ import annotations

import dataclasses

from rltr.evaluation.calibration import Calibration, bisect_budget, bisect_threshold, check_metric
from rltr.evaluation.run import run_method
from rltr.reducers import Reducer, ScoreReducer, get_reducer, spec_label

CALIBRATION_EXAMPLES = 128


def _train_mean(backbone, task, reducer: Reducer, budget: float | None, metric: str, kw: dict) -> float:
    return getattr(run_method(backbone, task, reducer, budget, split="train", **kw), metric)


def calibrate_budget(
    backbone, task, reducer: Reducer, target: float, metric: str = "compute_fraction", steps: int = 14, **kw
) -> Calibration:
    """The fixed budget whose mean ``metric`` on training examples comes closest to ``target`` (bisection)."""
    check_metric(metric)
    return bisect_budget(lambda budget: _train_mean(backbone, task, reducer, budget, metric, kw), target, metric, steps)


def calibrate_threshold(backbone, task, reducer: ScoreReducer, target: float, metric: str = "compute_fraction", **kw) -> Calibration:
    """The score threshold whose mean ``metric`` on training examples comes closest to ``target``."""
    if not (isinstance(reducer, ScoreReducer) and reducer.thresholdable):
        raise ValueError(f"{reducer.name} has no threshold mode")
    return bisect_threshold(reducer, lambda: _train_mean(backbone, task, reducer, None, metric, kw), target, metric)


def matched_rows(backbone, task, results: list, methods: list[str], metric: str, **kwargs) -> list:
    """EvalResults of every heuristic in ``methods`` matched (on ``metric``) to each router's own choice in
    ``results``; ``kwargs`` as :func:`rltr.evaluation.run_method`'s (the held-out evaluation settings)."""
    routers = [r for r in results if r.method.startswith("router") and r.budget is None]
    heuristics = [m for m in methods if "@" not in m and not (r := get_reducer(m)).reference and r.takes_budget]
    calib = {**kwargs, "n_examples": min(CALIBRATION_EXAMPLES, kwargs.get("n_examples", CALIBRATION_EXAMPLES))}
    calib.pop("progress", None)
    calib["generate"] = False
    rows = []
    for router in routers:
        target = getattr(router, metric)
        for spec in heuristics:
            label = spec_label(spec)
            reducer = get_reducer(spec)
            fixed = calibrate_budget(backbone, task, reducer, target, metric, **calib)
            row = run_method(backbone, task, reducer, fixed.value, **kwargs)
            rows.append(dataclasses.replace(row, method=label, matched_to=router.method))
            if isinstance(reducer, ScoreReducer) and reducer.thresholdable:
                calibrate_threshold(backbone, task, reducer, target, metric, **calib)
                row = run_method(backbone, task, reducer, None, **kwargs)
                rows.append(dataclasses.replace(row, method=f"{label}@thr", matched_to=router.method))
    return rows
