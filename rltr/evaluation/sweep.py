"""A sweep: every method at every budget on every task through :func:`rltr.evaluation.run.run_method`, plus
matched-compute rows (:mod:`rltr.evaluation.matched`) where asked."""

from __future__ import annotations

from tqdm.auto import tqdm

from rltr.backbones import Backbone
from rltr.core.decisions import check_budget
from rltr.evaluation.matched import matched_rows
from rltr.evaluation.run import EvalResult, check_task_fits, run_method
from rltr.peers import Peer, get_method
from rltr.reducers import Reducer
from rltr.tasks import Task


def check_methods(methods: list[str]) -> list[Reducer]:
    """The reducers of ``methods``, each once: a repeated method is a ValueError naming it (duplicate rows)."""
    repeated = sorted({m for m in methods if methods.count(m) > 1})
    if repeated:
        raise ValueError(f"method {repeated[0]!r} is listed more than once in {','.join(methods)!r}")
    return [get_method(m) for m in methods]


def decision_layers_for(reducers: list[Reducer], asked: list[int] | None, n_layers: int, default: tuple[int, ...] = (1,)) -> list[int]:
    """The layers to evaluate at: a router brings the layers it was trained at (reducers declaring
    ``decision_layers``); ``asked`` (``--decision-layers``) must agree with them; with neither, ``default``.
    Routers trained at different layers, or layers past the model's last, are a ValueError naming them."""
    own = {tuple(sorted(set(layers))): r for r in reducers if (layers := r.decision_layers) is not None}
    if len(own) > 1:
        (a, ra), (b, rb) = list(own.items())[:2]
        raise ValueError(f"{ra!r} was trained at decision layers {list(a)} and {rb!r} at {list(b)}: evaluate them separately")
    layers = list(asked) if asked is not None else list(next(iter(own), default))
    if own and asked is not None and tuple(sorted(set(asked))) != next(iter(own)):
        ((trained, router),) = own.items()
        raise ValueError(
            f"--decision-layers {list(asked)} conflicts with {router!r}, trained at decision layers "
            f"{list(trained)}; leave --decision-layers out to use the router's"
        )
    beyond = [i for i in layers if not 0 <= i < n_layers]
    if beyond:
        source = f"{next(iter(own.values()))!r}" if own and asked is None else "--decision-layers"
        raise ValueError(f"decision layer(s) {beyond} of {source} do not exist in a {n_layers}-layer model (0..{n_layers - 1})")
    return layers


def evaluate(
    backbone: Backbone,
    tasks: list[Task],
    methods: list[str],
    budgets: list[float | None],
    progress: bool = True,
    matched: str | None = None,
    **kwargs,
) -> list[EvalResult]:
    """Every method at every budget on every task (identity once, at full budget; budget None only for
    methods that choose their own keep count: the oracle and routers). ``matched`` (a metric of
    :data:`rltr.evaluation.calibration.METRICS`): also every heuristic at each router's own-choice mean of it, as
    a fixed budget and in threshold mode, calibrated on training examples (:func:`rltr.evaluation.matched.matched_rows`)."""
    budgets = [check_budget(b) for b in budgets]
    reducers = check_methods(methods)  # fail on a bad name before any work (peers too: kvpress:NAME)
    for task in tasks:
        check_task_fits(backbone, task)
    results: list[EvalResult] = []
    runs = [(task, reducer, budget) for task in tasks for reducer in reducers for budget in budgets_of(reducer, budgets)]
    bar = tqdm(total=len(runs), desc="evaluate (tasks x methods x budgets)", unit="run", disable=not progress)
    for i, (task, reducer, budget) in enumerate(runs):
        bar.set_postfix_str(f"{task.name} {reducer.title}@{budget}")
        if isinstance(reducer, Peer):  # a peer evaluates itself (kvpress:NAME: two-phase prefill, then the question)
            results.append(EvalResult(**reducer.evaluate_task(backbone, task, budget, progress=progress, **kwargs)))
        else:
            results.append(run_method(backbone, task, reducer, budget, progress=progress, **kwargs))
        bar.update()
        last_of_task = i + 1 == len(runs) or runs[i + 1][0] is not task
        if last_of_task and matched is not None:
            results += matched_rows(backbone, task, [r for r in results if r.task == task.name], methods, matched, **kwargs)
    bar.close()
    return results


def budgets_of(reducer: Reducer, budgets: list[float | None]) -> list[float | None]:
    """The budgets ``reducer`` runs at: the full model once; budget None only for methods that choose their own
    keep count; methods that take no budget once, with None."""
    if reducer.full_model or not reducer.takes_budget:
        return [None]
    return [b for b in budgets if b is not None or reducer.chooses_own_budget]
