"""A sweep: every method at every budget on every task through :func:`rltr.evaluation.run.run_method`, plus
matched-compute rows (:mod:`rltr.evaluation.matched`) where asked."""

from __future__ import annotations

from rltr.backbones import Backbone
from rltr.core.decisions import check_budget
from rltr.evaluation.matched import matched_rows
from rltr.evaluation.run import EvalResult, check_task_fits, run_method
from rltr.reducers import get_reducer
from rltr.tasks import Task


def evaluate(
    backbone: Backbone,
    tasks: list[Task],
    methods: list[str],
    budgets: list[float],
    progress: bool = True,
    matched: str | None = None,
    **kwargs,
) -> list[EvalResult]:
    """Every method at every budget on every task (identity once, at full budget; budget None only for
    methods that choose their own keep count: the oracle and routers). ``matched`` (a metric of
    :data:`rltr.evaluation.calibration.METRICS`): also every heuristic at each router's own-choice mean of it, as
    a fixed budget and in threshold mode, calibrated on training examples (:func:`rltr.evaluation.matched.matched_rows`)."""
    budgets = [check_budget(b) for b in budgets]
    reducers = [get_reducer(m) for m in methods]  # fail on a bad name before any work
    for task in tasks:
        check_task_fits(backbone, task)
    results = []
    for task in tasks:
        for reducer in reducers:
            own = [b for b in budgets if b is not None or reducer.chooses_own_budget] if reducer.takes_budget else [None]
            for budget in [None] if reducer.full_model else own:
                results.append(run_method(backbone, task, reducer, budget, progress=progress, **kwargs))
        if matched is not None:
            results += matched_rows(backbone, task, [r for r in results if r.task == task.name], methods, matched, **kwargs)
    return results
