"""How much token choice matters on a built-in model: oracle vs random at fixed budgets.

A large gap at a decision layer means choosing the right tokens there decides accuracy, so that
reducers (and routers) can be told apart; a small one means every method ties.
"""

from __future__ import annotations

from rltr.backbones import load_backbone
from rltr.backbones.builtin import model_path, read_meta, write_meta
from rltr.evaluation.run import run_method
from rltr.reducers import get_reducer
from rltr.tasks import get_task

GAP_LAYERS = (0, 1)
GAP_BUDGET = 0.1


def measure_gaps(name: str, n_examples: int = 300, budget: float = GAP_BUDGET, layers=GAP_LAYERS) -> dict:
    """{task: {"L<i>@<budget>": {"oracle": acc, "random": acc}}} on held-out examples (query-aware)."""
    path = model_path(name)
    meta = read_meta(path)
    backbone = load_backbone(str(path))
    gaps: dict = {}
    for task_name in meta["tasks"]:
        task = get_task(task_name)
        for layer in layers:
            row = {}
            for method in ("oracle", "random"):
                r = run_method(backbone, task, get_reducer(method), budget, n_examples=n_examples, decision_layers=[layer])
                row[method] = round(r.accuracy, 3)
            gaps.setdefault(task_name, {})[f"L{layer}@{budget}"] = row
    return gaps


def record_gaps(name: str, n_examples: int = 300) -> dict:
    """Measure and store the gaps in the model's rltr_zoo.json (``gaps`` key); return them."""
    gaps = measure_gaps(name, n_examples)
    meta = read_meta(model_path(name))
    meta["gaps"] = gaps
    meta["gaps_note"] = f"exact match with {GAP_BUDGET:.0%} of tokens kept at one decision layer, {n_examples} test examples"
    write_meta(model_path(name), meta)
    return gaps
