"""Output-length evaluation: accuracy, generated tokens, generation time and prompt + output compute of
generative models on held-out examples, against the heuristics people use to cut output: a hard
``max_new_tokens`` cap and early stopping at the first answer-shaped token; optionally with a token
reducer on the prompt (``with get_reducer(...)(model, ...): model.generate(...)``).

Compute (analytic FLOPs, :mod:`rltr.core.compute`) per example: the prompt pass on the tokens entering each
layer (all of them, or what the reducer kept, plus its decision cost) with the LM head on one position,
then one decode pass per generated token after the first (one token attending over the kept prompt
and the tokens generated so far, LM head on it).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch

from rltr.core.compute import ArchSpec, forward_flops, head_flops, layer_flops
from rltr.inference.generation import cut_at_stop, left_padded
from rltr.reducers import get_reducer
from rltr.tasks import Example, Task
from rltr.tasks.generation import check_generative


@dataclass
class OutputResult:
    """One model under one decoding method on ``n_examples`` held-out examples (per-example means)."""

    model: str
    method: str  # greedy | cap:K | early_stop, with "+reducer@budget" when the prompt was reduced
    accuracy: float
    mean_tokens: float  # generated tokens per example, the end token included
    ms_per_example: float  # wall-clock of the generate calls / examples
    prompt_mflops: float
    output_mflops: float
    n_examples: int
    groups: dict = field(default_factory=dict)  # {group: {"accuracy", "mean_tokens", "n"}} (e.g. h1 / h2 questions)

    @property
    def total_mflops(self) -> float:
        return self.prompt_mflops + self.output_mflops

    def to_dict(self) -> dict:
        return {**asdict(self), "total_mflops": self.total_mflops}


def output_flops(spec: ArchSpec, n_prompt_kept: torch.Tensor, n_generated: torch.Tensor) -> torch.Tensor:
    """(B,) FLOPs of the decode passes: generated token k+1 comes from a pass of token k over
    ``n_prompt_kept + k`` cached keys, k = 1 .. n_generated - 1 (the first comes from the prompt pass)."""
    out = []
    for kept, n in zip(n_prompt_kept.tolist(), n_generated.tolist()):
        keys = torch.arange(kept + 1, kept + n, dtype=torch.float64)  # keys seen by each decode pass
        out.append(float((spec.n_layers * layer_flops(spec, 1, keys) + head_flops(spec, 1)).sum()))
    return torch.tensor(out, dtype=torch.float64)


def _groups(task: Task, examples: list[Example], scores: list[float], lengths: list[int]) -> dict:
    if not hasattr(task, "group"):
        return {}
    out: dict = {}
    for e, s, n in zip(examples, scores, lengths):
        g = out.setdefault(task.group(e), {"accuracy": 0.0, "mean_tokens": 0.0, "n": 0})
        g["accuracy"], g["mean_tokens"], g["n"] = g["accuracy"] + s, g["mean_tokens"] + n, g["n"] + 1
    return {k: {"accuracy": v["accuracy"] / v["n"], "mean_tokens": v["mean_tokens"] / v["n"], "n": v["n"]} for k, v in sorted(out.items())}


@torch.no_grad()
def run_output(model, task: Task, examples: list[Example], *, label: str, cap: int | None = None, early_stop: bool = False,
               reducer=None, budget: float | None = None, pad_id: int = 0, batch_size: int = 64,
               seed: int = 0) -> OutputResult:  # fmt: skip
    """Greedy generation on ``examples`` with one decoding method (the task's cap, a hard ``cap``, or
    stopping at the first answer-shaped token), optionally with ``reducer`` at ``budget`` on the prompt
    (decision layer 1; the first two tokens and the question tail protected)."""
    import time

    gen = check_generative(task)
    spec = ArchSpec.from_config(model.config)
    stop = [gen.eos_id] + (sorted(gen.answer_ids) if early_stop else [])
    max_new = cap or gen.max_completion_len
    n_tail = len(gen.prompt(examples[0])) - gen.context_len  # the question: <sep> and what follows
    patch = None if reducer is None else reducer(
        model, budget=budget, protect_last=n_tail, protect_first=2, decision_layers=[1], seed=seed)  # fmt: skip
    completions, prompt_f, output_f, seconds = [], [], [], 0.0
    model.eval()
    with contextlib.nullcontext() if patch is None else patch:
        for start in range(0, len(examples), batch_size):
            prompts = [gen.prompt(e) for e in examples[start : start + batch_size]]
            ids, mask = left_padded(prompts, pad_id, "cpu")
            kw = dict(input_ids=ids.to(model.device), attention_mask=mask.to(model.device), do_sample=False,
                      eos_token_id=stop, pad_token_id=pad_id)  # fmt: skip
            if start == 0:
                model.generate(**kw, max_new_tokens=2)  # warm-up, untimed
            t0 = time.perf_counter()
            seq = model.generate(**kw, max_new_tokens=max_new)
            seconds += time.perf_counter() - t0
            rows = [cut_at_stop(r, set(stop)) for r in seq[:, ids.shape[1] :].tolist()]
            completions += rows
            row_lengths = mask.sum(1)
            if patch is None:
                counts, kept = row_lengths[:, None].expand(-1, spec.n_layers), row_lengths
                extra = 0
            else:
                counts, kept = patch.last.layer_counts.cpu(), patch.last.n_kept.cpu()
                extra = patch.last.trace.decision_flops.cpu()  # what the decision computed, charged by its context
            prompt_f.append(forward_flops(spec, list(counts.T), n_head_tokens=1, extra_flops=extra) * torch.ones(len(rows)))
            output_f.append(output_flops(spec, kept, torch.tensor([len(r) for r in rows])))
    scores = [gen.score_completion(c, gen.target(e)) for c, e in zip(completions, examples)]
    lengths = [len(c) for c in completions]
    n = len(examples)
    method = "greedy" if not (cap or early_stop) else (f"cap:{cap}" if cap else "early_stop")
    if reducer is not None:
        method += f"+{reducer.title}@{budget}"
    return OutputResult(
        model=label, method=method, accuracy=sum(scores) / n, mean_tokens=sum(lengths) / n, ms_per_example=1000 * seconds / n,
        prompt_mflops=float(torch.cat(prompt_f).double().mean()) / 1e6, output_mflops=float(torch.cat(output_f).mean()) / 1e6,
        n_examples=n, groups=_groups(task, examples, scores, lengths),
    )  # fmt: skip


def evaluate_output(models: dict, task: Task, *, n_examples: int = 500, seed: int = 0, caps: Sequence[int] = (),
                    early_stop: bool = True, reducer_spec: str | None = None, budget: float | None = None,
                    pad_id: int = 0, batch_size: int = 64) -> list[OutputResult]:  # fmt: skip
    """Every model greedy; the first (the base) also under each cap and early stopping; with
    ``reducer_spec``, every model greedy again with that reducer on the prompt at ``budget``."""
    examples = task.examples(n_examples, seed=seed, split="test")
    reducer = None if reducer_spec is None else get_reducer(reducer_spec)  # fail on a bad name before any work

    def run(model, label: str, **method) -> OutputResult:
        return run_output(model, task, examples, label=label, pad_id=pad_id, batch_size=batch_size, seed=seed, **method)

    results = [run(m, name) for name, m in models.items()]
    base_name, base = next(iter(models.items()))
    results += [run(base, base_name, cap=c) for c in caps]
    if early_stop:
        results.append(run(base, base_name, early_stop=True))
    if reducer is not None:
        results += [run(m, name, reducer=reducer, budget=budget) for name, m in models.items()]
    return results
