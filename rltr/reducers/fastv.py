"""FastV (Chen et al., 2024): rank tokens by the attention the *last* prompt token pays them at layer K, keep the
top ``n_keep``, drop the rest. Run it with ``decision_layers=[K]`` (the paper: K = 2, R = 50-75% of image tokens).

Query-aware, the last prompt token is the last question token (a teacher-forced answer is never read);
query-agnostic, it is the last context token (for a VLM prompt ``<bos> <image>...``: the last image token).
Differs from ``attn_topk`` (attention from every question token) in reading one row only: 1 x N scores.
"""

import torch

from rltr.core.decisions import DecisionContext
from rltr.reducers.base import ScoreReducer


class FastV(ScoreReducer):
    name = "fastv"

    def score(self, ctx: DecisionContext) -> torch.Tensor:
        return ctx.attention_from_recent(1)  # (B, N): the last readable row only, mean over heads; charged by ctx
