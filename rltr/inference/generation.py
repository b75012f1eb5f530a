"""Greedy generation for a batch of prompts, and the scores of generated answers (exact match, token F1).

Teacher forcing scores an answer from one forward over ``prompt + answer``; generation scores what a
user gets: one prompt pass (reduced, under ``with reducer(model, ...)``) that fills the KV cache, then
one decode step per new token on the cached (reduced) prompt. For multi-token answers the two differ
(decode steps attend to the reduced cache at every layer), which is why free-form answers are scored
from generation.

Shapes: B prompts, L prompt columns (left-padded), T new tokens.
"""

from __future__ import annotations

from collections import Counter

import torch

from rltr.inference.hf_compat import cache_argument, output_cache


@torch.no_grad()
def greedy_generate(
    model, prompts: list[list[int]], max_new_tokens: int | list[int], pad_id: int, *, eos_id: int | None = None, forward=None, hints=None
) -> list[list[int]]:
    """Greedy continuations of ``prompts`` (token id lists): row i gets up to ``max_new_tokens[i]`` tokens,
    cut after ``eos_id``. The batch is left-padded; position ids count real tokens (as ``generate()`` does).

    ``forward``: the callable run instead of ``model`` (e.g. ``functools.partial(type(model).forward, model)``,
    the unpatched forward while a reduction is active). ``hints``: a :class:`~rltr.inference.PromptHints` in
    the left-padded layout, passed to the prompt pass of a patched model.
    """
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("greedy_generate needs a non-empty list of non-empty prompts")
    limits = [max_new_tokens] * len(prompts) if isinstance(max_new_tokens, int) else list(max_new_tokens)
    device = next(model.parameters()).device
    ids, mask = left_padded(prompts, pad_id, device)
    call = model if forward is None else forward
    extra = {} if hints is None else {"reduction_hints": hints}
    out = call(
        input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp_min(0), use_cache=True, logits_to_keep=1, **extra
    )
    cache, n_real = output_cache(out), mask.sum(1)
    cache_name = cache_argument(type(model).forward)
    steps = [out.logits[:, -1].argmax(-1)]  # each (B,)
    for t in range(1, max(limits)):
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
        out = call(
            input_ids=steps[-1][:, None], attention_mask=mask, position_ids=(n_real + t - 1)[:, None], use_cache=True, **{cache_name: cache}
        )
        cache = output_cache(out)
        steps.append(out.logits[:, -1].argmax(-1))
    tokens = torch.stack(steps, dim=1).tolist()  # (B, T)
    stop = set() if eos_id is None else {eos_id}
    return [cut_at_stop(row[:limit], stop) for row, limit in zip(tokens, limits)]


def left_padded(prompts: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, L) long ids and (B, L) long attention mask with every prompt at the right end of its row."""
    n = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), n), pad_id, dtype=torch.long)
    mask = torch.zeros(len(prompts), n, dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, n - len(p) :] = torch.tensor(p)
        mask[i, n - len(p) :] = 1
    return ids.to(device), mask.to(device)


def cut_at_stop(row: list[int], stop_ids: set[int]) -> list[int]:
    """``row`` up to and including its first stop token (all of it when there is none)."""
    for i, t in enumerate(row):
        if t in stop_ids:
            return row[: i + 1]
    return row


def exact(generated: list[int], reference: list[int]) -> float:
    """1.0 when the generated tokens are exactly the reference's."""
    return float(generated == reference)


def token_f1(generated: list[int], reference: list[int]) -> float:
    """F1 of the two token multisets (SQuAD's answer F1, on the model's tokens): 1.0 for the same tokens
    in any order, 0.0 when none are shared."""
    common = sum((Counter(generated) & Counter(reference)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(generated), common / len(reference)
    return 2 * precision * recall / (precision + recall)
