"""One evaluation as a request: which model, tasks, methods, budgets and settings; run it, describe it, write
its report. ``rltr evaluate`` builds a request from its flags; ``rltr demo`` and ``rltr ablate`` build theirs
from a training config. Both go through :func:`evaluate_request`, hence through the one evaluation loop."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rltr.backbones import Backbone, load_backbone, resolve_model
from rltr.backbones.builtin import PACKAGED, read_meta
from rltr.evaluation.run import EvalResult, format_table
from rltr.evaluation.sweep import check_methods, decision_layers_for, evaluate
from rltr.tasks import load_task

_log = logging.getLogger(__name__)


@dataclass
class EvalRequest:
    model: str = "default"  # built-in name, local folder or hub name
    tasks: list[str] | None = None  # task names or jsonl:PATH; None: the model's own tasks (rltr_zoo.json)
    task_kwargs: dict = field(default_factory=dict)
    methods: list[str] = field(default_factory=lambda: ["identity", "random"])
    budgets: list[float | None] = field(default_factory=lambda: [0.5])
    decision_layers: list[int] | None = None  # None: a router's own, else [1]
    n_examples: int = 500
    batch_size: int = 64
    seed: int = 0
    query_aware: bool = True
    device: str = "cpu"
    score: str | None = None
    matched: str | None = None
    generate: bool = False


@dataclass
class EvalOutcome:
    results: list[EvalResult]
    backbone: Backbone
    decision_layers: list[int]


def model_tasks(model: str) -> list[str]:
    """The tasks a built-in or packaged model (or a folder with rltr_zoo.json) was trained on."""
    if model in PACKAGED:
        return list(PACKAGED[model].tasks)
    meta = read_meta(resolve_model(model))
    if "tasks" not in meta:
        raise ValueError(f"model {model!r} has no rltr_zoo.json naming its tasks; pass --task")
    return list(meta["tasks"])


def evaluate_request(req: EvalRequest, progress: bool = False) -> EvalOutcome:
    """Run ``req``: bad or repeated methods fail before the model loads; routers bring their decision layers."""
    if req.n_examples < 1:
        raise ValueError(f"n_examples must be >= 1, got {req.n_examples}")
    reducers = check_methods(req.methods)
    backbone = load_backbone(req.model, device=req.device)
    layers = decision_layers_for(reducers, req.decision_layers, backbone.n_layers)
    tasks = [load_task(t, backbone, **req.task_kwargs) for t in (req.tasks or model_tasks(req.model))]
    results = evaluate(
        backbone,
        tasks,
        req.methods,
        req.budgets,
        n_examples=req.n_examples,
        seed=req.seed,
        decision_layers=layers,
        batch_size=req.batch_size,
        query_aware=req.query_aware,
        progress=progress,
        score=req.score,
        generate=req.generate,
        matched=req.matched,
    )
    return EvalOutcome(results, backbone, layers)


def describe(req: EvalRequest, outcome: EvalOutcome) -> str:
    """The header line and the results table, as ``rltr evaluate`` prints them."""
    bb, mode = outcome.backbone, ("query-aware" if req.query_aware else "query-agnostic")
    head = (
        f"model {req.model} ({bb.family}, {bb.n_layers} layers), {mode}, decision layers {outcome.decision_layers}, "
        f"{examples_line(outcome.results, req.n_examples)}, seed {req.seed}"
    )
    return head + "\n" + format_table(outcome.results)


def examples_line(results: list[EvalResult], asked: int) -> str:
    """``N held-out examples per task``, saying so where a task had fewer than asked (a small JSONL file)."""
    counts = {r.task: r.n_examples for r in results}
    short = {t: n for t, n in counts.items() if n < asked}
    if not short:
        return f"{asked} held-out examples per task"
    for task, n in short.items():
        _log.warning(f"task {task!r} has only {n} held-out examples; evaluated {n}, not {asked}")
    return "held-out examples per task: " + ", ".join(
        f"{t} {n}" + (f" (of {asked} asked)" if t in short else "") for t, n in counts.items()
    )


def settings_of(req: EvalRequest, outcome: EvalOutcome, out: Path | None = None) -> dict:
    """The settings a report records (the request, with the decision layers actually used)."""
    return {**asdict(req), "decision_layers": outcome.decision_layers, "out": None if out is None else str(out)}
