"""Occlusion teacher: how much log p(answer) drops when one context token is removed.

The reference teacher (it measures what a router's decision does: a token removed before layer 0), and
the dearest: one forward per candidate token. Occluded copies are run ``batch_rows`` at a time; with
``max_candidates`` only that many tokens per example are occluded (those another teacher ranks first,
``prefilter``), the rest score below them.
"""

from __future__ import annotations

import torch

from rltr.core.ops import drop
from rltr.tasks.base import Batch
from rltr.teachers.base import Teacher, answer_logprob, candidates


class OcclusionTeacher(Teacher):
    name = "occlusion"
    cost = "one forward per occluded token"

    def __init__(self, max_candidates: int | None = None, prefilter: Teacher | None = None, batch_rows: int = 256):
        if max_candidates is not None and max_candidates < 1:
            raise ValueError(f"occlusion max_candidates must be >= 1 or None, got {max_candidates}")
        self.max_candidates, self.prefilter, self.batch_rows = max_candidates, prefilter, batch_rows

    def describe(self) -> str:
        return "occlusion" if self.max_candidates is None else f"occlusion@top{self.max_candidates}"

    @torch.no_grad()
    def scores(self, backbone, batch: Batch) -> torch.Tensor:
        cand = candidates(batch)  # (B, N)
        if self.max_candidates is not None:
            pre = (
                self.prefilter.scores(backbone, batch)
                if self.prefilter is not None
                else torch.zeros(cand.shape, device=cand.device).masked_fill(~cand, float("-inf"))
            )
            k = min(self.max_candidates, pre.shape[1])
            top = torch.zeros_like(cand).scatter(1, pre.topk(k, dim=1).indices, True)
            cand = cand & top
        state = batch.embed(backbone)
        full = answer_logprob(backbone.answer_logits(backbone.run_layers(state, 0, backbone.n_layers), batch.answer_mask), batch)
        out = torch.full(cand.shape, float("-inf"), device=cand.device)
        pairs = cand.nonzero()  # (M, 2): (row, position) per occluded copy
        for chunk in pairs.split(self.batch_rows):
            rows, pos = chunk[:, 0], chunk[:, 1]
            sub = Batch(**{k: (v[rows] if isinstance(v, torch.Tensor) else v) for k, v in batch.__dict__.items()})
            st = batch_state(state, rows)
            gone = torch.zeros_like(st.alive).scatter(1, pos[:, None], True)
            st = backbone.run_layers(drop(st, gone), 0, backbone.n_layers)
            out[rows, pos] = full[rows] - answer_logprob(backbone.answer_logits(st, sub.answer_mask), sub)
        if self.max_candidates is not None:  # tokens never occluded rank below every occluded one
            floor = out.masked_fill(~cand, float("inf")).min(1, keepdim=True).values
            rest = candidates(batch) & ~cand
            out = torch.where(rest, floor - 1.0, out)
        return out


def batch_state(state, rows: torch.Tensor):
    """The token state's rows ``rows`` (M,) long (a row may repeat)."""
    return type(state)(state.hidden[rows], state.positions[rows], state.sizes[rows], state.alive[rows], state.protected[rows])
