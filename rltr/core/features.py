"""Per-token observations at a decision layer, shared by the env (training) and routers (inference).

One function computes them from a :class:`~rltr.core.decisions.DecisionContext`, so a router sees at
inference exactly what its policy saw in training. Shapes: B rows, N token slots, F features.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass

import torch

from rltr.core.decisions import DecisionContext
from rltr.core.similarity import nearest_similarity

FEATURE_SETS = ("full", "light")  # FeatureSpec.named: light = no attention rows, no all-pairs similarity
PROJECTIONS = ("gaussian", "orthogonal", "identity")  # FeatureSpec.projection

TOKEN_FEATURES = (
    "valid",  # 1 on slots the policy may read: live ones (query-agnostic: live context ones); the rest is 0
    "attn_from_query",  # attention received from the query (x N: uniform = 1)
    "attn_recent",  # mean attention received from the last N_RECENT_ROWS visible rows (x N)
    "hidden_norm",  # hidden-state L2 norm / the row's mean norm
    "nearest_sim",  # cosine similarity to the most similar other visible token (in the hidden projection)
    "rel_position",  # original position / original length (query-agnostic: the context's length)
    "log_size",  # log of how many originals the token stands for
    "protected",  # 1 if the token can never be removed
)
GLOBAL_FEATURES = ("layer_frac", "tokens_left", "step_frac", "budget")
N_RECENT_ROWS = 16  # query rows behind "attn_recent": an R x N slice of the attention map, never N x N


@dataclass(frozen=True)
class FeatureSpec:
    """Which features a policy sees. ``n_hidden_proj`` > 0 appends that many dims of a fixed random
    projection of the normalised hidden state (token content, seeded by ``proj_seed``).
    ``attention=False`` leaves the two attention columns at 0 and ``similarity=False`` the
    nearest-similarity column (the observation keeps its shape): the "light" set, whose decision costs
    about what a norm heuristic's does."""

    n_hidden_proj: int = 16
    proj_seed: int = 0
    attention: bool = True
    similarity: bool = True
    # "gaussian" (N(0, 1/d) columns), "orthogonal" (orthonormal columns, n_hidden_proj <= d_model) or
    # "identity" (no projection: the whole unit hidden state; n_hidden_proj must equal d_model)
    projection: str = "gaussian"

    def __post_init__(self) -> None:
        if self.projection not in PROJECTIONS:
            raise ValueError(f"projection must be one of {list(PROJECTIONS)}, got {self.projection!r}")

    @classmethod
    def named(cls, feature_set: str, **kw) -> FeatureSpec:
        """``full`` (every feature) or ``light`` (no attention rows, no all-pairs similarity)."""
        if feature_set not in FEATURE_SETS:
            raise ValueError(f"feature set must be one of {list(FEATURE_SETS)}, got {feature_set!r}")
        light = feature_set == "light"
        return cls(attention=not light, similarity=not light, **kw)

    @classmethod
    def from_dict(cls, d: dict) -> FeatureSpec:
        """From a router's ``config.json`` (routers saved before the attention/similarity switches see
        every feature)."""
        return cls(**{f: d[f] for f in ("n_hidden_proj", "proj_seed", "attention", "similarity", "projection") if f in d})

    @property
    def n_features(self) -> int:
        return len(TOKEN_FEATURES) + len(GLOBAL_FEATURES) + self.n_hidden_proj

    def to_dict(self) -> dict:
        return {**asdict(self), "token_features": list(TOKEN_FEATURES), "global_features": list(GLOBAL_FEATURES)}

    def projection_matrix(self, d_model: int, device) -> torch.Tensor:
        """(d_model, n_hidden_proj) the fixed random projection (seeded; made once per device)."""
        if self.projection == "orthogonal" and self.n_hidden_proj > d_model:
            raise ValueError(f"an orthogonal projection has at most d_model={d_model} columns, got n_hidden_proj={self.n_hidden_proj}")
        if self.projection == "identity" and self.n_hidden_proj != d_model:
            raise ValueError(
                f"projection identity passes the whole hidden state: n_hidden_proj must be d_model={d_model}, got {self.n_hidden_proj}"
            )
        return _projection(self.proj_seed, d_model, self.n_hidden_proj, self.projection, str(device))


@functools.lru_cache(maxsize=32)
def _projection(seed: int, d_model: int, n_proj: int, kind: str, device: str) -> torch.Tensor:
    """Gaussian columns N(0, 1/d), or the same made orthonormal (unit columns: a unit hidden state has
    coordinates of size ~1/sqrt(d) either way, so features keep their scale)."""
    if kind == "identity":
        return torch.eye(d_model, device=device)
    g = torch.Generator().manual_seed(seed)
    m = torch.randn(d_model, n_proj, generator=g) / d_model**0.5
    if kind == "orthogonal":
        m = torch.linalg.qr(m).Q
    return m.to(device)


def hidden_projection(ctx: DecisionContext, spec: FeatureSpec) -> torch.Tensor:
    """(B, N, P) unit hidden states in the spec's random projection (computed once per decision, charged)."""
    if "hidden_proj" not in ctx._cache:
        h = ctx.state.hidden.float()
        unit = torch.nn.functional.normalize(h, dim=-1)
        if spec.projection == "identity":
            spec.projection_matrix(h.shape[-1], h.device)  # checks the width
            ctx._cache["hidden_proj"] = unit
        else:
            ctx._cache["hidden_proj"] = unit @ spec.projection_matrix(h.shape[-1], h.device)
            ctx.charge(2 * ctx.n_live * h.shape[-1] * spec.n_hidden_proj)
    return ctx._cache["hidden_proj"]


@torch.no_grad()
def token_features(ctx: DecisionContext, spec: FeatureSpec) -> torch.Tensor:
    """(B, N, F) float32 observations for every slot of ``ctx.state`` (zeros on dead slots); what they
    compute is charged to ``ctx``.

    Tail slots are marked protected. Query-agnostic, nothing here depends on the tail: its slots are
    all-zero rows (invalid, so a policy neither reads nor pools them), attention rows come from the
    context, and relative positions, token counts and norms are measured against the context alone.
    """
    st = ctx.state
    visible = ctx.observers()  # all live slots, or the context only when query-agnostic
    n = visible.sum(1, keepdim=True).clamp_min(1).float()  # (B, 1)
    base_counts = ctx.n_original if ctx.query_aware else ctx.n_context
    if base_counts is None:
        raise ValueError("token features need the context's token counts (n_original, n_context): build it with decision_context")
    n_base = base_counts.float()[:, None]  # (B, 1)
    h = st.hidden.float()
    norm = h.norm(dim=-1)
    mean_norm = (norm * visible).sum(1, keepdim=True) / n
    zeros = torch.zeros_like(norm)
    proj = hidden_projection(ctx, spec) if spec.n_hidden_proj else torch.nn.functional.normalize(h, dim=-1)  # (B, N, P)
    nearest_sim = zeros
    if spec.similarity:
        # Similarities in the low-dim random projection (cosines nearly preserved; identical tokens stay at 1):
        # N x N x P instead of N x N x D.
        nearest_sim = nearest_similarity(torch.nn.functional.normalize(proj, dim=-1), visible)  # (B, N), row blocks
        ctx.charge(2 * ctx.n_live**2 * proj.shape[-1])
    protected = st.protected | (ctx.tail if ctx.tail is not None else torch.zeros_like(visible))
    cols = [
        visible.float(),
        ctx.attention_from_query() * n if spec.attention else zeros,
        ctx.attention_from_recent(N_RECENT_ROWS) * n if spec.attention else zeros,
        norm / mean_norm.clamp_min(1e-6),
        nearest_sim,
        st.positions.float() / n_base,
        torch.log(st.sizes.clamp_min(1.0)),
        protected.float(),
    ]
    b, slots = visible.shape
    glob = (
        torch.tensor([(ctx.layer + 1) / ctx.backbone.n_layers, 0.0, (ctx.step + 1) / ctx.n_steps, ctx.budget or 1.0], device=visible.device)
        .expand(b, slots, -1)
        .clone()
    )
    glob[..., 1] = (n / n_base).expand(b, slots)
    feats = [torch.stack(cols, dim=-1), glob]
    if spec.n_hidden_proj:
        feats.append(proj * h.shape[-1] ** 0.5)
    out = torch.cat(feats, dim=-1)
    return out * visible[..., None]


def merge_match(ctx: DecisionContext, spec: FeatureSpec) -> torch.Tensor | None:
    """(B, N, P) what a policy's MERGE actions are matched on: hidden states in the features' random
    projection (cosines nearly preserved at P/D of the cost). Env and router both use it, so merges
    at inference go where they went in training. None (match on hidden states) without a projection."""
    return hidden_projection(ctx, spec) if spec.n_hidden_proj else None
