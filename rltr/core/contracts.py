"""The contracts the mechanics layer calls, declared as Protocols so that higher layers (reducers, routers,
backbones) implement them without this layer importing them.

Shapes: B rows, N token slots, D hidden width.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

import torch

from rltr.core.ops import TokenState

if TYPE_CHECKING:  # annotations only: decisions imports this module at run time
    from rltr.core.decisions import Decision, DecisionContext


@runtime_checkable
class DecisionBackbone(Protocol):
    """What a decision reads from the frozen model (a family adapter in :mod:`rltr.backbones` implements it)."""

    @property
    def name(self) -> str: ...

    @property
    def family(self) -> str: ...

    @property
    def causal(self) -> bool:
        """Decoder (True) or encoder."""
        ...

    @property
    def n_layers(self) -> int: ...

    @property
    def config(self) -> object:
        """The HF config."""
        ...

    @property
    def config_hash(self) -> str: ...

    def key_states(self, i: int, state: TokenState) -> torch.Tensor:
        """(B, H, N, Dh) attention keys of layer ``i`` on ``state``."""
        ...

    def attention_rows(self, i: int, state: TokenState, rows: torch.Tensor, keys: torch.Tensor | None = None) -> torch.Tensor:
        """(B, H, R, N) attention probabilities of layer ``i`` from the R query ``rows`` to every slot."""
        ...


@runtime_checkable
class DecisionMaker(Protocol):
    """Anything that decides KEEP/MERGE/DROP per token (a heuristic or a router), with the capabilities that
    orchestration reads instead of a method's name."""

    name: str
    label: str  # how tables name it ('' -> name)
    takes_budget: bool  # False: it sets its own token counts (tome:r=N) and runs with budget None only
    causal_only: bool  # its rule needs a causal order: refused on encoders
    full_model: bool  # the unreduced reference (identity): runs the unpatched forward
    reference: bool  # a reference point (identity, oracle, router), not a competitor in matched-compute rows
    query_aware: bool | None  # its own mode (a router's), else the caller's

    @property
    def chooses_own_budget(self) -> bool:
        """With budget None it picks how many tokens to keep (read only: an attribute or a property)."""
        ...

    @property
    def decision_layers(self) -> list[int] | None:
        """Its own decision layers (a router's), else None: the caller's (read only)."""
        ...

    def decide(self, ctx: DecisionContext) -> Decision: ...

    def check_backbone(self, backbone: DecisionBackbone) -> None:
        """Raise ValueError when it cannot act on ``backbone`` (e.g. a router for another model)."""
        ...
