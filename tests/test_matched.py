"""Matched compute: a heuristic's fixed budget or score threshold calibrated on training examples to a target
mean, and the matched rows evaluation writes next to a router's own choice."""

from __future__ import annotations

import json

import pytest

from rltr.backbones import load_backbone
from rltr.evaluation.matched import calibrate_budget, calibrate_threshold
from rltr.evaluation.reports import write_report
from rltr.evaluation.run import run_method
from rltr.evaluation.sweep import evaluate
from rltr.reducers import get_reducer
from rltr.tasks import get_task

KW = dict(n_examples=64, decision_layers=[0], query_aware=False, progress=False)


@pytest.fixture(scope="module")
def backbone():
    return load_backbone("default")


@pytest.mark.parametrize("target", [0.12, 0.3])
def test_threshold_calibration_keeps_the_target_fraction_on_held_out_data(backbone, target):
    """Calibrated on training examples, the threshold keeps the target fraction of tokens on test examples
    (within 1 point), with a number of tokens that varies per input (it is a threshold, not a budget)."""
    task = get_task("retrieval", n_pairs=[1, 8])
    reducer = get_reducer("norm:hidden")
    cal = calibrate_threshold(backbone, task, reducer, target, "kept_ratio", **KW)
    held_out = run_method(backbone, task, reducer, None, **KW)  # split "test"
    assert abs(cal.achieved - target) <= 0.01 and abs(held_out.kept_ratio - target) <= 0.01
    assert held_out.threshold == pytest.approx(cal.value)


def test_budget_calibration_matches_mean_compute(backbone):
    task = get_task("retrieval")
    fixed = calibrate_budget(backbone, task, get_reducer("attn_topk"), 0.2, "compute_fraction", **KW)
    held_out = run_method(backbone, task, get_reducer("attn_topk"), fixed.value, **KW)
    assert abs(held_out.compute_fraction - 0.2) <= 0.01


def test_matched_rows_sit_at_the_routers_compute_in_results_json(backbone, tmp_path):
    from tests.routers import random_router

    path = random_router(backbone, tmp_path, decision_layers=[0], query_aware=False, network="attention")
    task = get_task("instructed_retrieval", pairs_per_group=[1, 4])
    methods = [f"router:{path}", "norm:hidden", "attn_topk", "tome:r=2", "h2o"]
    results = evaluate(
        backbone, [task], methods, [None], matched="compute_fraction", n_examples=32, decision_layers=[0], query_aware=False, progress=False
    )
    write_report(results, tmp_path / "out", {"model": "default"})
    rows = json.loads((tmp_path / "out" / "results.json").read_text())["results"]
    own = next(r for r in rows if r["method"].startswith("router") and r["matched_to"] is None)
    matched = {r["method"]: r for r in rows if r["matched_to"] == own["method"]}
    # every budgeted heuristic as a fixed budget, the thresholdable ones also as a threshold; tome:r=N sets its own counts
    assert set(matched) == {"norm:hidden", "norm:hidden@thr", "attn_topk", "attn_topk@thr", "h2o"}
    for name in ("norm:hidden", "norm:hidden@thr", "attn_topk", "attn_topk@thr"):
        assert abs(matched[name]["compute_fraction"] - own["compute_fraction"]) <= 0.02, name
