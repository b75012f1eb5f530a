"""Attention teacher: the attention the answer-predicting positions pay to each context token.

One forward up to the deepest layer read (``layers``), with the answer teacher-forced: at each read
layer, the attention rows of the positions whose logits predict the answer (mean over heads, summed
over answer tokens and layers). On the built-in ``default`` model, layer 0 finds the queried pair of
instructed retrieval on 100% of examples; layers 1-3 alone ~5% (see docs/teachers.md).
"""

from __future__ import annotations

import torch

from rltr.tasks.base import Batch
from rltr.teachers.base import Teacher, answer_rows, candidates


class AttentionTeacher(Teacher):
    name = "attention"
    cost = "one forward up to the deepest layer read"

    def __init__(self, layers: list[int] | None = None):
        self.layers = sorted(set(layers)) if layers else [0]
        if any(not isinstance(i, int) or i < 0 for i in self.layers):
            raise ValueError(f"attention teacher layers must be ints >= 0, got {layers!r}")

    def describe(self) -> str:
        return f"attention@{','.join(map(str, self.layers))}"

    @torch.no_grad()
    def scores(self, backbone, batch: Batch) -> torch.Tensor:
        if max(self.layers) >= backbone.n_layers:
            raise ValueError(f"attention teacher layers {self.layers} must lie within 0..{backbone.n_layers - 1}")
        rows, real = answer_rows(batch)  # (B, R)
        state = batch.embed(backbone)
        total = torch.zeros(batch.input_ids.shape, device=backbone.device)
        for i in range(max(self.layers) + 1):
            if i in self.layers:
                attn = backbone.attention_rows(i, state, rows).mean(1)  # (B, R, N): mean over heads
                total += (attn * real[..., None]).sum(1)
            if i < max(self.layers):
                state = backbone.run_layer(i, state)
        return total.masked_fill(~candidates(batch), float("-inf"))
