"""kvpress presses as evaluation methods: ``kvpress:snapkv``, ``kvpress:knorm``, ... (NVIDIA kvpress, an extra
with its own environment: it requires ``transformers<5.3``; ``make kvpress-venv``).

A press is not a token reducer: it compresses the KV cache after a *full* prefill, so it runs two-phase,
one example at a time (kvpress scorers ignore padding masks):

1. prefill the context (positions ``[0, context_len)``) under ``with press(model)``: the press prunes each
   layer's cache to ``budget`` of the context's entries (``compression_ratio = 1 - budget``);
2. run question + teacher-forced answer on that cache with positions continuing at ``context_len``;
   the answer is scored by exact match like every other method (the argmax at each answer position).

Columns: ``tokens kept`` is the fraction of the context's KV entries left in the cache (mean over layers,
measured); ``compute fraction`` is 1.0 plus nothing saved: the prefill is the full model's (the tail's
attention over fewer keys is negligible at these lengths). What a press saves is decode memory and time,
not prefill FLOPs. Always query-agnostic: the question does not exist when the press acts.

``import kvpress`` patches transformers' attention globally, so it is imported only when a press runs.
"""

from __future__ import annotations

import time

import torch

from rltr.core.decisions import DecisionContext
from rltr.peers.base import Peer

PRESSES: dict[str, str] = {  # rltr name -> kvpress class
    "snapkv": "SnapKVPress",
    "knorm": "KnormPress",
    "expected_attention": "ExpectedAttentionPress",
    "streaming_llm": "StreamingLLMPress",
    "tova": "TOVAPress",
    "keydiff": "KeyDiffPress",
    "random": "RandomPress",
}


def import_kvpress():
    """The kvpress module; ValueError naming the extra when it is not installed."""
    try:
        import kvpress
    except ImportError as e:
        raise ValueError(
            f"kvpress methods need the kvpress package (requires transformers<5.3; a separate venv: make kvpress-venv): {e}"
        ) from None
    return kvpress


class KVPress(Peer):
    """``kvpress:NAME`` (:data:`PRESSES`), evaluated by :meth:`evaluate_task` rather than as a decision rule."""

    name = "kvpress"
    causal_only = True

    def __init__(self, press: str = "snapkv"):
        if press not in PRESSES:
            raise ValueError(f"unknown kvpress press {press!r}; known: {', '.join(sorted(PRESSES))}")
        self.press = press

    def decide(self, ctx: DecisionContext):
        raise ValueError(
            f"kvpress:{self.press} compresses a KV cache after a full prefill, it makes no per-layer token "
            f"decision: evaluate it with rltr evaluate (two-phase), not inside a TokenReduction"
        )

    def make_press(self, budget: float):
        kvpress = import_kvpress()
        return getattr(kvpress, PRESSES[self.press])(compression_ratio=1.0 - budget)

    @torch.no_grad()
    def evaluate_task(
        self,
        backbone,
        task,
        budget: float | None,
        *,
        n_examples: int = 500,
        seed: int = 0,
        query_aware: bool = False,
        progress: bool = False,
        split: str = "test",
        **ignored,
    ) -> dict:
        """The fields of an :class:`~rltr.evaluation.run.EvalResult` for this press on ``task``'s first ``n_examples``
        examples of ``split`` (``ignored``: batch size, decision layers, ...: they do not apply to a press)."""
        if budget is None or not 0 < budget <= 1:
            raise ValueError(f"kvpress:{self.press} needs a budget in (0, 1] (the kept fraction of the KV cache), got {budget!r}")
        if query_aware:
            raise ValueError(f"kvpress:{self.press} compresses the context before the question exists: run it with --query-agnostic")
        from tqdm.auto import tqdm
        from transformers import DynamicCache

        model, press = backbone.model, self.make_press(budget)
        torch.manual_seed(seed)
        examples = task.examples(n_examples, seed=seed, split=split)
        hits, kept, seconds = [], [], 0.0
        for e in tqdm(examples, desc=f"{task.name}/kvpress:{self.press}@{budget}", disable=not progress, leave=False):
            n_tail = len(e.input_ids) - e.context_len
            if n_tail <= e.n_answer:
                raise ValueError(
                    f"kvpress:{self.press}: an example of {task.name!r} has no question between context and "
                    f"answer (tail {n_tail} tokens, answer {e.n_answer}): the press needs one"
                )
            ids = torch.tensor([e.input_ids], device=backbone.device)
            t0 = time.perf_counter()
            cache = DynamicCache()
            with press(model):
                model.model(input_ids=ids[:, : e.context_len], past_key_values=cache)
            positions = torch.arange(e.context_len, ids.shape[1], device=ids.device)[None]
            logits = model(input_ids=ids[:, e.context_len :], past_key_values=cache, position_ids=positions).logits[0]
            seconds += time.perf_counter() - t0
            pred = logits[n_tail - e.n_answer - 1 : n_tail - 1].argmax(-1).tolist()
            hits.append(float(pred == e.answer))
            kept.append(_kept_fraction(cache, e.context_len, n_tail))
        n = len(examples)
        accuracy = sum(hits) / n
        return dict(
            task=task.name,
            method=f"kvpress:{self.press}",
            budget=budget,
            accuracy=accuracy,
            compute_fraction=1.0,
            kept_ratio=sum(kept) / n,
            latency_ms=1000 * seconds / n,
            n_examples=n,
            query_aware=False,
            scores={"accuracy": accuracy},
        )

    def __repr__(self) -> str:
        return f"KVPress({self.press!r})"


def _kept_fraction(cache, n_context: int, n_tail: int) -> float:
    """Mean over layers of the context's KV entries left in ``cache`` (after the tail was appended)."""
    lengths = (
        [cache.get_seq_length(i) - n_tail for i in range(len(cache.layers))]
        if hasattr(cache, "layers")
        else [k.shape[-2] - n_tail for k in cache.key_cache]
    )
    return sum(lengths) / (len(lengths) * n_context)
