"""Evaluation scores beyond teacher-forced exact match: the full model's reference logits (for the fidelity
scores) and answers scored from generation (exact match and token F1), both on the production path.

Shapes: B rows, N columns (right-padded, as :func:`rltr.tasks.collate` makes them), K scored columns, V vocabulary.
"""

from __future__ import annotations

import torch

from rltr.inference import PromptHints
from rltr.inference.generation import exact, greedy_generate, token_f1
from rltr.tasks import Batch


@torch.no_grad()
def reference_logits(model, inputs: dict, columns: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """(B, N, V) the unreduced model's logits at ``columns`` (0 elsewhere): its own class ``forward`` on
    ``inputs`` (minus reduction hints), which bypasses a reduction patched onto the instance; the same call
    ``identity`` times, so identity scores exactly 1.0 on the fidelity scores."""
    plain = {k: v for k, v in inputs.items() if k != "reduction_hints"}
    out = type(model).forward(model, **plain).logits  # (B, K, V)
    dense = out.new_zeros((*shape, out.shape[-1]))
    dense[:, columns] = out
    return dense


@torch.no_grad()
def generated_scores(model, batch: Batch, pad_id: int, query_aware: bool, reduced: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(B,) exact match and (B,) token F1 of the answers ``model`` generates greedily (``n_answer`` tokens
    per row) from each row's prompt (context + question). ``reduced``: ``model`` is under ``with
    reducer(model, ...)``; the rows' context lengths, protected and relevant tokens go with the prompt pass."""
    lengths, n_answer = batch.lengths.tolist(), batch.n_answer.tolist()
    prompts = [batch.input_ids[i, : n - a].tolist() for i, (n, a) in enumerate(zip(lengths, n_answer))]
    answers = [batch.input_ids[i, n - a : n].tolist() for i, (n, a) in enumerate(zip(lengths, n_answer))]
    hints = None
    if reduced:
        width = max(len(p) for p in prompts)

        def left(mask: torch.Tensor) -> torch.Tensor:  # (B, N) right-padded -> (B, width) left-padded prompt columns
            out = torch.zeros(len(prompts), width, dtype=torch.bool, device=mask.device)
            for i, p in enumerate(prompts):
                out[i, width - len(p) :] = mask[i, : len(p)]
            return out

        hints = PromptHints(batch.context_len, left(batch.protected), left(batch.relevant_for(query_aware)))
    generated = greedy_generate(model, prompts, n_answer, pad_id, hints=hints)
    em = torch.tensor([exact(g, a) for g, a in zip(generated, answers)])
    f1 = torch.tensor([token_f1(g, a) for g, a in zip(generated, answers)])
    return em, f1


def format_generation(results) -> str:
    """A markdown table of the generated-answer scores of ``results`` (EvalResults run with ``generate``)."""
    lines = [
        "| task | method | budget | generated exact match | generated token F1 | teacher-forced score |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in results:
        budget = "own" if r.budget is None else f"{r.budget:.2f}"
        lines.append(
            f"| {r.task} | {r.method} | {budget} | {r.generated_exact_match:.3f} | {r.generated_token_f1:.3f} | "
            f"{r.score} {r.accuracy:.3f} |"
        )
    return "\n".join(lines)
