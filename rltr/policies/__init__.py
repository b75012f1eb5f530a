"""Per-token policies: the torch network, its SB3 wrapper, imitation warm start, and routers."""

from rltr.policies.network import TokenActor, TokenCritic
from rltr.policies.router import Router, RouterError

__all__ = ["Router", "RouterError", "TokenActor", "TokenCritic"]
