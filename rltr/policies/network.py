"""The per-token policy networks: pure torch, shared by the SB3 policy (training) and routers (inference).

Weights are shared over tokens, so one network handles any sequence length. Shapes: B rows, N slots,
F features per slot (column 0 is the validity flag, see :mod:`rltr.core.features`), A = 3 actions.

``TokenActor`` (``policy.network: mlp``) decides each token from its own features and a mean-pooled
summary of all of them. ``ContextActor`` (``policy.network: attention``) adds one softmax-attention step
across tokens, so a token's decision can depend on another token (an instruction, a question) or on how
much else is there. Only valid slots are ever read or pooled, so in query-agnostic mode (where the tail's
slots are invalid) nothing depends on the question.
"""

from __future__ import annotations

import torch
from torch import nn

from rltr.core.ops import N_ACTIONS, Action


def masked_mean(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(B, N, H), (B, N) bool -> (B, H) mean over valid slots."""
    w = valid.to(x.dtype)[..., None]
    return (x * w).sum(1) / w.sum(1).clamp_min(1.0)


class Tanh(nn.Module):
    """tanh as ``2 * sigmoid(2x) - 1``: the same function (within float rounding, ~1e-7), but torch's CPU
    tanh kernel is slow enough that this is ~4x faster (``benchmarks/activations.py``: 1.08 vs 0.24 ms
    on 536k floats, 1 thread, AVX512, torch 2.13); tanh had been the largest cost of a router's network.
    No parameters, so state dicts match ``nn.Tanh`` networks exactly."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x * 2).mul(2).sub(1)


class TokenActor(nn.Module):
    """Per-token MLP over [token features, pooled summary of all tokens] -> (B, N, 3) action logits.

    Invalid slots get logits that make KEEP certain (log-prob 0, entropy 0), so padding never adds
    noise to the policy gradient.
    """

    def __init__(self, n_features: int, hidden: int = 64):
        super().__init__()
        self.n_features, self.hidden = n_features, hidden
        self.embed = nn.Sequential(nn.Linear(n_features, hidden), Tanh(), nn.Linear(hidden, hidden), Tanh())
        self.head = nn.Sequential(nn.Linear(2 * hidden, hidden), Tanh(), nn.Linear(hidden, N_ACTIONS))

    def flops(self, n_tokens):
        """Multiply-add FLOPs (x2) of one decision on ``n_tokens`` tokens (a number or a tensor): every
        linear layer runs once per token."""
        return 2 * n_tokens * sum(m.in_features * m.out_features for m in self.modules() if isinstance(m, nn.Linear))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        assert obs.shape[-1] == self.n_features, f"obs has {obs.shape[-1]} features, network expects {self.n_features}"
        valid = obs[..., 0] > 0.5
        h = self.embed(obs)
        pooled = masked_mean(h, valid)[:, None, :].expand_as(h)
        logits = self.head(torch.cat([h, pooled], dim=-1))
        forced = torch.full_like(logits, -1e9)
        forced[..., Action.KEEP] = 0.0
        return torch.where(valid[..., None], logits, forced)


class ContextActor(nn.Module):
    """A per-token network that can read the rest of the context, in two cross-token steps.

    Each token's observation is projected linearly (``z``, a learned projection of its features and
    hidden state) and squashed (``g = tanh(z)``). The context is summarised by the mean and the max of
    ``g`` over the valid slots — the max answers "does any token carry feature X" (an instruction, a
    marker) — and one softmax-attention step (single head, ``attn_dim`` wide) lets each token read the
    tokens it matches. The head (an MLP) reads [z, attended mix, mean, max, g * max] (the product lets a
    token's own feature be switched by a context feature in one layer).

    Why this shape (measured on instructed retrieval, imitating the instruction oracle): a two-layer
    tanh embedding before the pooling, or attention alone, sat on a plateau for over a thousand Adam
    steps in most seeds; a linear projection into a max pool ranked the instructed pairs first on 100%
    of held-out examples within ~300 steps in every seed tried.

    Cost (:meth:`flops`): the per-token linears plus 4 * N^2 * attn_dim FLOPs for the N x N scores and mix.
    Invalid slots are never read or pooled and get logits that make KEEP certain.
    """

    def __init__(self, n_features: int, hidden: int = 64, attn_dim: int = 32):
        super().__init__()
        self.n_features, self.hidden, self.attn_dim = n_features, hidden, attn_dim
        self.project = nn.Linear(n_features, hidden)
        self.qkv = nn.Linear(hidden, 3 * attn_dim)
        # first layer's input: [z (H), mixed (d), mean (H), max (H), g * max (H)]
        self.head = nn.Sequential(nn.Linear(4 * hidden + attn_dim, hidden), nn.ReLU(), nn.Linear(hidden, N_ACTIONS))

    def flops(self, n_tokens):
        """Per token: the projection, q/k/v, the head's per-token part; per row pair: 4 * attn_dim (scores
        and mix). The head's mean/max part is one vector per row, computed once (not counted)."""
        h, d = self.hidden, self.attn_dim
        per_token = self.n_features * h + h * 3 * d + (2 * h + d) * h + h * N_ACTIONS
        return 2 * n_tokens * per_token + 4 * n_tokens * n_tokens * d

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        assert obs.shape[-1] == self.n_features, f"obs has {obs.shape[-1]} features, network expects {self.n_features}"
        valid = obs[..., 0] > 0.5  # (B, N)
        h, d = self.hidden, self.attn_dim
        z = self.project(obs)  # (B, N, H)
        g = torch.tanh(z)
        q, k, v = self.qkv(g).split(d, dim=-1)  # (B, N, d) each
        scores = (q @ k.transpose(1, 2)) * d**-0.5  # (B, N, N)
        mixed = scores.masked_fill(~valid[:, None, :], -1e9).softmax(-1) @ v  # -1e9, not -inf: no NaN on empty rows
        mean = masked_mean(g, valid)[:, None, :]  # (B, 1, H)
        top = g.masked_fill(~valid[..., None], -2.0).max(1, keepdim=True).values  # (B, 1, H); -2: below tanh's range
        # the head's first layer on [z, mixed, mean, top, g * top], its mean/top columns once per row
        first = self.head[0]
        assert isinstance(first, torch.nn.Linear), "the head starts with a Linear"
        w_tok, w_row = first.weight[:, : h + d], first.weight[:, h + d : h + d + 2 * h]
        per_token = torch.nn.functional.linear(torch.cat([z, mixed], -1), w_tok) + (g * top) @ first.weight[:, -h:].T
        per_row = torch.nn.functional.linear(torch.cat([mean, top], -1), w_row, first.bias)  # (B, 1, H)
        logits = self.head[2](self.head[1](per_token + per_row))
        forced = torch.full_like(logits, -1e9)
        forced[..., Action.KEEP] = 0.0
        return torch.where(valid[..., None], logits, forced)


ACTORS = {"TokenActor": TokenActor, "ContextActor": ContextActor}
NETWORKS = {"mlp": "TokenActor", "attention": "ContextActor"}  # policy.network -> actor class


def network_spec(network: str = "mlp", hidden: int = 64, attn_dim: int = 32) -> dict:
    """The actor's description as stored in a router's config.json (``{"type": ..., widths}``)."""
    if network not in NETWORKS:
        raise ValueError(f"policy.network must be one of {sorted(NETWORKS)}, got {network!r}")
    spec = {"type": NETWORKS[network], "hidden": hidden}
    return {**spec, "attn_dim": attn_dim} if network == "attention" else spec


def build_actor(n_features: int, spec: dict) -> TokenActor:
    """The actor a :func:`network_spec` describes (routers saved before ``type`` existed are TokenActors)."""
    kind = spec.get("type", "TokenActor")
    if kind not in ACTORS:
        raise ValueError(f"unknown network type {kind!r}; known: {sorted(ACTORS)}")
    kwargs = {k: spec[k] for k in ("hidden", "attn_dim") if k in spec and (k != "attn_dim" or kind == "ContextActor")}
    return ACTORS[kind](n_features, **kwargs)


class TokenCritic(nn.Module):
    """Value of a whole observation: MLP on the masked mean and max of per-token embeddings -> (B,)."""

    def __init__(self, n_features: int, hidden: int = 64):
        super().__init__()
        self.embed = nn.Sequential(nn.Linear(n_features, hidden), Tanh())
        self.out = nn.Sequential(nn.Linear(2 * hidden, hidden), Tanh(), nn.Linear(hidden, 1))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        valid = obs[..., 0] > 0.5
        h = self.embed(obs)
        mx = h.masked_fill(~valid[..., None], -1e4).max(1).values
        return self.out(torch.cat([masked_mean(h, valid), mx], dim=-1)).squeeze(-1)
