"""One evaluation loop for every method: the same held-out examples, the same code path, the same
compute model. Heuristics and routers differ only in the reducer passed in.

The code path is the production one: each batch is one call of the plain HF model's ``forward`` under
``with reducer(model, ...)`` (:class:`rltr.inference.TokenReduction`), so the accuracy and the latency
in a results table come from the same calls a user makes. ``identity`` (the full model) is the
unpatched model's own forward: the baseline every speedup is measured against.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from rltr.backbones import Backbone
from rltr.compute import ArchSpec, compute_fraction
from rltr.inference import PromptHints
from rltr.reducers import Reducer, check_budget, get_reducer
from rltr.tasks import Task, collate, exact_match
from rltr.tasks.vocab import PAD_ID, VOCAB_SIZE


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

    def to_dict(self) -> dict:
        return asdict(self)


def check_task_fits(backbone: Backbone, task: Task) -> None:
    vocab = getattr(backbone.config, "vocab_size", None)
    if vocab is None or not task.vocab_size <= vocab <= VOCAB_SIZE:  # models built before later words were appended fit older tasks
        raise ValueError(
            f"task {task.name!r} uses rltr's built-in vocabulary ({task.vocab_size} words) but model "
            f"{backbone.name!r} has vocab_size={vocab}; use a built-in model (rltr zoo list)"
        )
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
    decision_layers: list[int] = (1,),
    batch_size: int = 64,
    query_aware: bool = True,
    progress: bool = False,
) -> EvalResult:
    """Accuracy, compute and latency of ``reducer`` at ``budget`` on ``n_examples`` held-out examples,
    each batch one forward call of ``backbone.model`` under ``with reducer(model, ...)``."""
    budget = check_budget(budget)
    examples = task.examples(n_examples, seed=seed, split="test")
    spec = ArchSpec.from_config(backbone.config)
    model, full = backbone.model, reducer.name == "identity"
    reduction = contextlib.nullcontext() if full else reducer(
        model, budget=budget, protect_last=1, decision_layers=list(decision_layers), query_aware=query_aware, seed=seed,
    )
    correct, fractions, kept, seconds = [], [], [], 0.0
    batches = range(0, len(examples), batch_size)
    with reduction:
        for start in tqdm(batches, desc=f"{task.name}/{reducer.name}@{budget}", disable=not progress, leave=False):
            batch = collate(examples[start : start + batch_size], PAD_ID).to(backbone.device)
            columns = batch.answer_mask.any(0).nonzero().flatten()  # positions whose logits are scored
            inputs = dict(input_ids=batch.input_ids, attention_mask=batch.attention_mask.long(), use_cache=False,
                          logits_to_keep=columns)
            if not full:
                inputs["reduction_hints"] = PromptHints(batch.context_len, batch.protected, batch.relevant)
            if start == 0:
                model(**inputs)  # warm-up, untimed: first-call allocations would land on one method only
            t0 = time.perf_counter()
            out = model(**inputs).logits
            _synchronize(backbone.device)
            seconds += time.perf_counter() - t0
            logits = out.new_zeros((*batch.input_ids.shape, out.shape[-1]))
            logits[:, columns] = out
            correct.append(exact_match(logits, batch).cpu())
            lengths = batch.lengths.cpu()
            if full:
                counts, n_alive = lengths[:, None].expand(-1, backbone.n_layers), lengths
            else:
                counts, n_alive = reduction.last.layer_counts.cpu(), reduction.last.n_kept.cpu()
            extra = decision_overhead(reducer, spec, counts, lengths, lengths - batch.context_len.cpu(), decision_layers)
            frac = compute_fraction(spec, list(counts.T), lengths, n_head_tokens=batch.n_answer.cpu(), extra_flops=extra)
            fractions.append(frac.float())
            kept.append(n_alive.float() / lengths.float())
    n = len(examples)
    return EvalResult(
        task=task.name, method=getattr(reducer, "label", reducer.name), budget=budget,
        accuracy=float(torch.cat(correct).mean()), compute_fraction=float(torch.cat(fractions).mean()),
        kept_ratio=float(torch.cat(kept).mean()), latency_ms=1000 * seconds / n, n_examples=n, query_aware=query_aware,
    )


def _synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so wall-clock times cover it."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def method_label(spec: str) -> str:
    """How a method appears in tables: its spec (``norm:hidden``), or ``router:<folder name>``."""
    name, _, arg = spec.partition(":")
    if name == "router" and arg:
        return f"router:{Path(arg).name}"
    return spec


def decision_overhead(reducer: Reducer, spec: ArchSpec, counts: torch.Tensor, lengths: torch.Tensor, n_tail: torch.Tensor,
                      decision_layers):
    """(B,) extra FLOPs a reducer spends deciding at each decision layer, on the tokens present before
    that decision (``Reducer.decision_flops``)."""
    before = torch.cat([lengths[:, None], counts[:, :-1]], dim=1)  # tokens entering the previous layer
    return sum(reducer.decision_flops(spec, before[:, i], n_tail) for i in decision_layers)


def evaluate(
    backbone: Backbone,
    tasks: list[Task],
    methods: list[str],
    budgets: list[float],
    progress: bool = True,
    **kwargs,
) -> list[EvalResult]:
    """Every method at every budget on every task (identity once, at full budget; budget None only for
    methods that choose their own keep count: the oracle and routers)."""
    budgets = [check_budget(b) for b in budgets]
    reducers = [get_reducer(m) for m in methods]  # fail on a bad name before any work
    for m, r in zip(methods, reducers):
        r.label = method_label(m)
    for task in tasks:
        check_task_fits(backbone, task)
    results = []
    for task in tasks:
        for reducer in reducers:
            own = [b for b in budgets if b is not None or reducer.chooses_own_budget]
            for budget in [None] if reducer.name == "identity" else own:
                results.append(run_method(backbone, task, reducer, budget, progress=progress, **kwargs))
    return results


def full_latency(results: list[EvalResult]) -> dict[str, float]:
    """{task: the full model's (``identity``'s) measured ms/example}, for tasks where it was evaluated."""
    return {r.task: r.latency_ms for r in results if r.method == "identity"}


def format_table(results: list[EvalResult]) -> str:
    """A markdown table: task, method, budget, accuracy, compute fraction, tokens kept, latency, and the
    measured speedup over the full model (``identity`` on the same task; blank when it was not run)."""
    full = full_latency(results)
    lines = [
        "| task | method | budget | accuracy | compute fraction | tokens kept | latency ms/example | speedup |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        budget = ("full" if r.method == "identity" else "own") if r.budget is None else f"{r.budget:.2f}"
        speedup = f"{full[r.task] / r.latency_ms:.2f}x" if r.task in full and r.latency_ms > 0 else ""
        lines.append(
            f"| {r.task} | {r.method} | {budget} | {r.accuracy:.3f} | {r.compute_fraction:.3f} | "
            f"{r.kept_ratio:.3f} | {r.latency_ms:.2f} | {speedup} |"
        )
    return "\n".join(lines)
