"""Rows at matched compute: every heuristic at the mean compute a router spends by its own choice, as a
fixed budget and (score methods) in threshold mode, each calibrated on training examples
(:mod:`rltr.calibration`) and then measured on the same held-out examples as the router."""

from __future__ import annotations

import dataclasses

from rltr.calibration import calibrate_budget, calibrate_threshold
from rltr.reducers import ScoreReducer, get_reducer

NOT_MATCHED = ("identity", "oracle", "router")  # the reference points, not competitors
CALIBRATION_EXAMPLES = 128


def matched_rows(backbone, task, results: list, methods: list[str], metric: str, **kwargs) -> list:
    """EvalResults of every heuristic in ``methods`` matched (on ``metric``) to each router's own choice in
    ``results``; ``kwargs`` as :func:`rltr.evaluation.run_method`'s (the held-out evaluation settings)."""
    from rltr.evaluation import method_label, run_method

    routers = [r for r in results if r.method.startswith("router") and r.budget is None]
    heuristics = [m for m in methods if m.partition(":")[0] not in NOT_MATCHED and "@" not in m and get_reducer(m).takes_budget]
    calib = {**kwargs, "n_examples": min(CALIBRATION_EXAMPLES, kwargs.get("n_examples", CALIBRATION_EXAMPLES))}
    calib.pop("progress", None)
    calib["generate"] = False
    rows = []
    for router in routers:
        target = getattr(router, metric)
        for spec in heuristics:
            label = method_label(spec)
            reducer = get_reducer(spec)
            fixed = calibrate_budget(backbone, task, reducer, target, metric, **calib)
            row = run_method(backbone, task, reducer, fixed.value, **kwargs)
            rows.append(dataclasses.replace(row, method=label, matched_to=router.method))
            if isinstance(reducer, ScoreReducer) and reducer.thresholdable:
                calibrate_threshold(backbone, task, reducer, target, metric, **calib)
                row = run_method(backbone, task, reducer, None, **kwargs)
                rows.append(dataclasses.replace(row, method=f"{label}@thr", matched_to=router.method))
    return rows
