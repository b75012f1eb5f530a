"""A learned router as one more reducer: ``router:PATH`` loads an exported router folder.

Deterministic (argmax). With a budget, the budget overrides the router's own keep count: tokens are
kept in order of the router's KEEP log-probability until the budget is met; the rest follow the
router's preference between MERGE and DROP (DROP where no kept token could absorb a merge). Either
way the plan goes through the one budget rule (:func:`rltr.decisions.resolve_actions`), as in training.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from rltr.core.decisions import Decision, DecisionContext
from rltr.core.features import merge_match, token_features
from rltr.core.ops import Action, keep_top_k
from rltr.policies.router import Router
from rltr.reducers.base import Reducer

_log = logging.getLogger(__name__)

_ANNOUNCED: set[str] = set()  # router paths with ".." whose resolved folder was printed


class RouterReducer(Reducer):
    name = "router"
    chooses_own_budget = True
    reference = True

    def __init__(self, path: str = ""):
        if not path:
            raise ValueError("router needs a folder: use router:PATH, e.g. router:routers/default")
        self.path = path
        self.router = Router.from_pretrained(path)
        if ".." in Path(path).parts and path not in _ANNOUNCED:  # fine for a local path, but say where it led (once)
            _ANNOUNCED.add(path)
            _log.info(f"loaded router {str(Path(path).resolve())!r} (from {path!r})")
        self.query_aware = bool(self.router.config.get("query_aware", True))
        self._checked: set[str] = set()

    @property
    def decision_layers(self) -> list[int]:
        """The layers the router was trained at: evaluation runs it (and the methods beside it) there."""
        return self.router.decision_layers

    def __repr__(self) -> str:
        return f"RouterReducer({self.path!r})"

    def check_backbone(self, backbone) -> None:
        """RouterError (a ValueError) when the router was exported for another backbone (config hash)."""
        if backbone.config_hash not in self._checked:
            self.router.check_backbone(backbone)
            self._checked.add(backbone.config_hash)

    def decide(self, ctx: DecisionContext) -> Decision:
        self.check_backbone(ctx.backbone)
        self.router.to(ctx.state.hidden.device)
        obs = token_features(ctx, self.router.features)
        logits = self.router.logits(obs)  # (B, N, 3)
        ctx.charge(self.router.network_flops(ctx.observers().sum(1).double()))
        match = merge_match(ctx, self.router.features)  # as in training
        if ctx.budget is None:
            return Decision(logits.argmax(-1), match=match)
        keep = keep_top_k(logits.log_softmax(-1)[..., Action.KEEP], ctx.state, ctx.n_keep) == Action.KEEP
        wants_merge = (logits[..., Action.MERGE] > logits[..., Action.DROP]) & ctx.can_merge(keep)
        removal = torch.where(wants_merge, Action.MERGE, Action.DROP)  # no destination: drop, so the budget holds
        return Decision(torch.where(keep, torch.full_like(removal, Action.KEEP), removal), match=match)
