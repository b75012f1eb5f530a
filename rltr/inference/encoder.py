"""``with reducer(model, budget=0.5): model(pixel_values=...)``: token reduction inside a plain HF encoder's
forward (``ViTForImageClassification``, ``ViTModel``, ``BertModel``).

While the context is active the model's ``forward`` is replaced (on the instance, undone on exit) by one
full forward through the family adapter, the reducer acting before the decision layers: dropped tokens
are not computed in later layers, merged ones are computed once. The output has the model's own type and
shapes:

* ``ViTForImageClassification``: ``logits`` (B, labels) from the final CLS state;
* ``ViTModel`` / ``BertModel``: ``last_hidden_state`` (B, L, D) at the input columns, each token's column
  holding the final state of the slot it ended up in (its own, or its merge group's), 0 where it was
  dropped; ``pooler_output`` as the model computes it from column 0.

So a plain mean pool of ``last_hidden_state`` over the attention mask weighs a merged slot by its size,
as the full model weighs the tokens it stands for, and dropped tokens add nothing (the direction of the
mean, hence any cosine, is that of the size-weighted mean over the kept slots). ``last.token_mask``
(B, L) marks the columns still represented, for exact means.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rltr.backbones.padding import to_columns
from rltr.core.contracts import DecisionMaker
from rltr.core.decider import Decider, RunTrace
from rltr.inference.forward_patch import DEFAULT_BUDGET, ForwardPatch, _DefaultBudget, named_arguments
from rltr.inference.prefill import final_slots


@dataclass
class ReducedForward:
    """What the latest reduced encoder forward did.

    trace:      the run's :class:`~rltr.core.decider.RunTrace` (tokens entering each layer, the decisions' FLOPs).
    positions:  (B, N_f) long, original positions of the final slots; sizes (B, N_f) float, tokens each
                stands for; alive (B, N_f) bool.
    token_mask: (B, L) bool, input columns whose token is still represented (kept, or merged into a kept one).
    """

    trace: RunTrace
    positions: torch.Tensor
    sizes: torch.Tensor
    alive: torch.Tensor
    token_mask: torch.Tensor

    @property
    def n_kept(self) -> torch.Tensor:
        """(B,) long: slots left after the last decision."""
        return self.alive.sum(1)


class EncoderReduction(ForwardPatch):
    """Context manager applying ``reducer`` to an HF encoder's ``forward`` (see the module docstring).

    budget:          fraction of tokens to keep, in (0, 1] (None: the reducer's own choice; default 0.5, or
                     None for a reducer that sets its own token counts, e.g. ``tome:r=8``).
    decision_layers: layers before which the reducer acts; default: a router's own, else every layer.
    query_aware:     default: a router's own setting, else True (encoders have no question tail).
    seed:            seed of the generator random reducers draw from (one per forward call).

    The family protects its summary tokens (ViT: CLS; BERT: [CLS] and [SEP]). ``last`` is the
    :class:`ReducedForward` of the latest call.
    """

    last: ReducedForward | None

    def __init__(
        self,
        model,
        reducer: DecisionMaker,
        *,
        budget: float | _DefaultBudget | None = DEFAULT_BUDGET,
        decision_layers: list[int] | None = None,
        query_aware: bool | None = None,
        seed: int = 0,
    ):
        every = list(range(model.config.num_hidden_layers))
        super().__init__(
            model, reducer, budget=budget, decision_layers=decision_layers, query_aware=query_aware, seed=seed, default_layers=every
        )

    def __repr__(self) -> str:
        return f"EncoderReduction({self.reducer!r}, budget={self.budget}, decision_layers={self.decision_layers})"

    @torch.no_grad()
    def _forward(self, original, sig, args: tuple, kwargs: dict):
        bb = self.backbone
        named = named_arguments(sig, args, kwargs)
        unsupported = [k for k, v in named.items() if k not in bb.forward_args and v is not None and v is not False]
        if unsupported:
            raise ValueError(
                f"{unsupported[0]} is not supported under token reduction; {type(self.model).__name__} takes "
                f"{', '.join(a for a in bb.forward_args if a not in ('return_dict', 'use_cache'))} here"
            )
        state, order = bb.forward_inputs(named)  # (B, L) slots, order (B, L): each slot's input column
        decider = Decider(
            self.reducer,
            bb,
            self.decision_layers,
            self.budget,
            query_aware=self.query_aware,
            generator=torch.Generator().manual_seed(self.seed),
        )
        final = bb.run(state, decider, self.decision_layers, on_layer=decider.on_layer)
        trace = decider.trace
        assert trace is not None, "Backbone.run calls the decider at the first decision layer, which starts its trace"
        slot = final_slots(state, trace, self.decision_layers, -1)  # (B, L): final slot of each input slot
        represented = slot >= 0

        def columns() -> torch.Tensor:  # (B, L, D) final states at the input columns
            hidden = bb.sequence_output(final)
            at_slots = torch.gather(hidden, 1, slot.clamp_min(0)[..., None].expand(-1, -1, hidden.shape[-1]))
            return to_columns(at_slots * represented[..., None].to(hidden.dtype), order)

        self.last = ReducedForward(trace, final.positions, final.sizes, final.alive, to_columns(represented, order))
        out = bb.forward_output(final, columns, named)
        return out.to_tuple() if named.get("return_dict") is False else out
