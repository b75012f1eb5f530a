"""Question-guided attention (SparseVLM-like): the question tokens that look at the image act as raters, each
with one equal vote.

For each question row and head, the attention it pays to the candidate tokens (live, unprotected context:
image tokens on a VLM) is its "mass"; raters are the rows whose mass (mean over heads) is at least the mean
over the question rows (SparseVLM's relevant text raters). Each rater's candidate attention is renormalised
to sum to one (a rater that mostly reads text still votes fully), and scores are the mean over raters and
heads. ``attn_topk`` instead averages raw attention over every question row, so rows that read the image
most dominate. Query-agnostic there is no question: the last context token rates (as FastV).
"""

import torch

from rltr.core.decisions import DecisionContext
from rltr.reducers.base import ScoreReducer


class QuestionAttention(ScoreReducer):
    name = "question_attn"

    def score(self, ctx: DecisionContext) -> torch.Tensor:
        rows = ctx.query_rows()  # (B, N) bool: the question (query-aware) or the last context token
        candidates = (ctx.context & ~ctx.state.protected).float()  # (B, N)
        b, n = rows.shape
        n_rows = max(int(rows.sum(1).max()), 1)
        idx = torch.argsort((~rows).to(torch.int8), dim=1, stable=True)[:, :n_rows]  # (B, R) question slots first
        weight = torch.gather(rows.float(), 1, idx)  # (B, R) 1 on real question rows
        ctx._charge_attention(rows.sum(1).double())
        att = ctx.backbone.attention_rows(ctx.layer, ctx.state, idx, keys=ctx.keys()).float()  # (B, H, R, N)
        on_candidates = att * candidates[:, None, None, :]
        mass = on_candidates.sum(-1, keepdim=True)  # (B, H, R, 1) how much each row looks at candidates
        rated = (on_candidates / mass.clamp_min(1e-9)).mean(1)  # (B, R, N) one vote per row, mean over heads
        row_mass = mass.mean(1).squeeze(-1)  # (B, R)
        mean_mass = (row_mass * weight).sum(1, keepdim=True) / weight.sum(1, keepdim=True).clamp_min(1.0)
        raters = weight * (row_mass >= mean_mass).float()  # (B, R): real rows at or above the mean mass
        return (rated * raters[:, :, None]).sum(1) / raters.sum(1, keepdim=True).clamp_min(1.0)
