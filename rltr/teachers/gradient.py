"""Gradient teacher: the norm of d log p(answer) / d (input embedding) per token.

One forward and one backward through every layer, with the answer teacher-forced. (The product
|grad . embedding| is a worse teacher on instructed retrieval: it ranks the instruction token first.)
"""

from __future__ import annotations

import torch

from rltr.tasks.base import Batch
from rltr.teachers.base import Teacher, answer_logprob, candidates


class GradientTeacher(Teacher):
    name = "gradient"
    cost = "one forward and one backward"

    def scores(self, backbone, batch: Batch) -> torch.Tensor:
        state = batch.embed(backbone)
        hidden = state.hidden.detach().float().requires_grad_(True)
        with torch.enable_grad():
            st = state.with_hidden(hidden.to(state.hidden.dtype))
            for i in range(backbone.n_layers):  # the adapter's layer step, with gradients (run_layer is no_grad)
                st = st.with_hidden(backbone._layer_forward(i, st, backbone._layer_bias(i, st)))
            logits = backbone.lm_head(backbone.final_hidden(st.hidden))  # (B, N, V): slots = columns (right padding)
            (grad,) = torch.autograd.grad(answer_logprob(logits, batch).sum(), hidden)
        return grad.norm(dim=-1).masked_fill(~candidates(batch), float("-inf"))
