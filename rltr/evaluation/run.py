"""One evaluation loop for every method: the same held-out examples, the same code path, the same
compute model. Heuristics and routers differ only in the reducer passed in.

Launched as several processes (``accelerate launch -m rltr evaluate``), batches are dealt round-robin
and per-example results gathered back in order (:mod:`rltr.core.distributed`): the same numbers as one process.

The code path is the production one: each batch is one call of the plain HF model's ``forward`` under
``with reducer(model, ...)`` (:class:`rltr.inference.TokenReduction`), so the accuracy and the latency
in a results table come from the same calls a user makes. ``identity`` (the full model) is the
unpatched model's own forward: the baseline every speedup is measured against.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch
from tqdm.auto import tqdm

from rltr.backbones import Backbone
from rltr.core import distributed
from rltr.core.compute import ArchSpec
from rltr.evaluation.answer_scores import generated_scores, reference_logits
from rltr.reducers import Reducer, check_budget
from rltr.tasks import Task
from rltr.tasks.scoring import NEEDS_REFERENCE, score_function


@dataclass
class EvalResult:
    task: str
    method: str
    budget: float | None  # None: the method's own choice (identity keeps everything)
    accuracy: float
    compute_fraction: float  # mean over examples of reduced / full FLOPs (analytic model)
    kept_ratio: float  # mean fraction of original tokens alive after the last decision
    latency_ms: float  # measured wall-clock per example: the model's (patched) forward on a batch / batch size
    n_examples: int
    query_aware: bool = True
    score: str = "accuracy"  # what ``accuracy`` holds: the headline score (rltr.tasks.scoring.SCORES)
    scores: dict = field(default_factory=dict)  # every score measured ({"accuracy": ...}); ``accuracy`` is the first
    generated_exact_match: float | None = None  # answers generated greedily (n_answer tokens), when asked
    generated_token_f1: float | None = None
    threshold: float | None = None  # a score method in threshold mode: keep the tokens scoring at least this
    matched_to: str | None = None  # a row calibrated on training examples to this method's own-choice compute

    def to_dict(self) -> dict:
        return asdict(self)


def check_task_fits(backbone: Backbone, task: Task) -> None:
    """ValueError naming both when ``task``'s inputs do not fit ``backbone`` (the task sets itself up for it)."""
    task.prepare(backbone)
    if task.generative:
        raise ValueError(f"task {task.name!r} is scored on generated output; use rltr evaluate --output-length")


@torch.no_grad()
def run_method(
    backbone: Backbone,
    task: Task,
    reducer: Reducer,
    budget: float | None,
    *,
    n_examples: int = 500,
    seed: int = 0,
    decision_layers: Sequence[int] = (1,),
    batch_size: int = 64,
    query_aware: bool = True,
    progress: bool = False,
    score: str | None = None,
    generate: bool = False,
    split: str = "test",
) -> EvalResult:
    """Scores (the task's, or just ``score``), compute and latency of ``reducer`` at ``budget`` on ``n_examples``
    held-out examples (``split``), each batch one forward call of ``backbone.model`` under ``with reducer(model, ...)``;
    ``generate``: also score answers generated greedily on the same path (exact match, token F1)."""
    budget = check_budget(budget)
    examples = task.examples(n_examples, seed=seed, split=split)
    spec = ArchSpec.from_config(backbone.config)
    model, full = backbone.model, reducer.full_model
    patch = (
        None
        if full
        else reducer(
            model,
            budget=budget,
            decision_layers=list(decision_layers),
            seed=seed,
            **task.reduction_options(query_aware),
        )
    )
    names = [score] if score else list(task.scores)
    scores: dict[str, list] = {name: [] for name in names}
    fractions, kept, seconds, generated = [], [], 0.0, []
    batches = distributed.my_batches(len(examples), batch_size)  # all of them, unless launched as several processes
    with contextlib.nullcontext() if patch is None else patch:
        for start in tqdm(batches, desc=f"{task.name}/{reducer.name}@{budget} (batches)", disable=not progress, leave=False):
            batch = task.collate(examples[start : start + batch_size]).to(backbone.device)
            inputs = batch.model_inputs(reduced=not full, query_aware=query_aware)
            if start == batches[0]:
                model(**inputs)  # warm-up, untimed: first-call allocations would land on one method only
            t0 = time.perf_counter()
            out = model(**inputs)
            _synchronize(backbone.device)
            seconds += time.perf_counter() - t0
            output = batch.model_output(out)
            if batch.kind == "tokens" and any(name in NEEDS_REFERENCE for name in names):
                batch.reference = reference_logits(model, inputs, batch._scored_columns(), batch.input_ids.shape)
            for name, values in scores.items():
                values.append(score_function(name, batch.kind)(output, batch).cpu())
            if generate:
                generated.append(torch.stack(generated_scores(model, batch, task.pad_id, query_aware, reduced=not full), 1))
            if patch is None:  # the full model
                n_rows = output.shape[0]
                frac, kept_rows = torch.ones(n_rows, dtype=torch.float64), torch.ones(n_rows)
            else:
                info = patch.last
                frac = info.trace.compute_fraction(spec, batch.n_head_tokens).cpu()
                kept_rows = info.trace.kept_ratio.cpu().float()
            fractions.append(frac.float())
            kept.append(kept_rows)
    n = len(examples)
    all_fractions, all_kept = (distributed.in_order(batches, rows) for rows in (fractions, kept))  # every example
    means = {name: float(distributed.in_order(batches, values).mean()) for name, values in scores.items()}
    return EvalResult(
        task=task.name,
        method=reducer.title,
        budget=budget,
        accuracy=means[names[0]],
        compute_fraction=float(all_fractions.mean()),
        kept_ratio=float(all_kept.mean()),
        latency_ms=1000 * distributed.total(seconds) / n,
        n_examples=n,
        query_aware=query_aware,
        score=names[0],
        scores=means,
        threshold=getattr(reducer, "threshold", None),
        **(_generation_means(batches, generated) if generate else {}),
    )


def _generation_means(batches: list[int], generated: list[torch.Tensor]) -> dict:
    """EvalResult's generation fields from per-batch (b, 2) [exact match, token F1] rows."""
    em, f1 = distributed.in_order(batches, generated).mean(0).tolist()
    return {"generated_exact_match": em, "generated_token_f1": f1}


def _synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so wall-clock times cover it."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def full_latency(results: list[EvalResult]) -> dict[str, float]:
    """{task: the full model's (``identity``'s) measured ms/example}, for tasks where it was evaluated."""
    return {r.task: r.latency_ms for r in results if r.method == "identity"}


def format_table(results: list[EvalResult]) -> str:
    """A markdown table: task, method, budget, the tasks' scores (accuracy for token and image tasks),
    compute fraction, tokens kept, latency, and the measured speedup over the full model (``identity`` on the
    same task; blank when it was not run)."""
    full = full_latency(results)
    names = list(dict.fromkeys(k for r in results for k in (r.scores or {"accuracy": r.accuracy})))
    lines = [
        f"| task | method | budget | {' | '.join(names)} | compute fraction | tokens kept | latency ms/example | speedup |",
        "|---|---|---:|" + "---:|" * len(names) + "---:|---:|---:|---:|",
    ]
    for r in results:
        budget = ("full" if r.method == "identity" else "own") if r.budget is None else f"{r.budget:.2f}"
        speedup = f"{full[r.task] / r.latency_ms:.2f}x" if r.task in full and r.latency_ms > 0 else ""
        values = r.scores or {"accuracy": r.accuracy}
        cells = " | ".join(f"{values[k]:.3f}" if k in values else "" for k in names)
        lines.append(
            f"| {r.task} | {r.method} | {budget} | {cells} | {r.compute_fraction:.3f} | "
            f"{r.kept_ratio:.3f} | {r.latency_ms:.2f} | {speedup} |"
        )
    return "\n".join(lines)
