"""Analytic FLOPs of a forward pass from the real token count entering each layer.

Counts matrix multiplies (2 FLOPs per multiply-add), the same convention as
``torch.utils.flop_counter.FlopCounterMode``: QKV and output projections, attention scores (QK^T)
and mixing (AV) over the dense N x N map the kernels compute, the MLP, and the LM head on the
positions whose logits are used. Norms, softmax and activations are ignored (a few % at most).
Token counts may be python ints or tensors of any shape (e.g. (B,) per example); results follow.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

LLAMA_LIKE = ("llama", "mistral", "qwen2", "qwen3")  # model types read as Llama-shaped blocks
ENCODERS = ("vit", "bert")  # plain-MLP encoders; the head is ViT's classifier (vocab_size = labels) or none (BERT: pooling)


@dataclass(frozen=True)
class ArchSpec:
    """What the FLOPs model needs to know about an architecture."""

    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    d_ff: int
    mlp_matrices: int  # 2 for a plain MLP (up, down), 3 for a gated one (gate, up, down)
    vocab_size: int

    @classmethod
    def from_config(cls, config) -> ArchSpec:
        """The FLOPs model's view of an HF config. Llama-like families (gated MLP, grouped KV heads, an
        explicit ``head_dim`` where set) share one reading; biases, q/k norms and sliding windows change
        no matrix multiply the model counts (a windowed layer's kernel still computes the dense N x N map)."""
        mt = config.model_type
        if mt == "gpt2":
            d = config.n_embd
            return cls(config.n_layer, d, config.n_head, config.n_head, d // config.n_head, config.n_inner or 4 * d, 2, config.vocab_size)
        if mt in LLAMA_LIKE:
            d = config.hidden_size
            head_dim = getattr(config, "head_dim", None) or d // config.num_attention_heads
            return cls(
                config.num_hidden_layers,
                d,
                config.num_attention_heads,
                config.num_key_value_heads or config.num_attention_heads,
                head_dim,
                config.intermediate_size,
                3,
                config.vocab_size,
            )
        if mt in ENCODERS:  # ViT's patch embedding (one small matmul per patch) is left out, as token embeddings are
            d = config.hidden_size
            n_out = config.num_labels if mt == "vit" else 0
            return cls(
                config.num_hidden_layers,
                d,
                config.num_attention_heads,
                config.num_attention_heads,
                d // config.num_attention_heads,
                config.intermediate_size,
                2,
                n_out,
            )
        raise ValueError(f"no FLOPs model for model_type {mt!r}; supported: {sorted(['gpt2', *LLAMA_LIKE, *ENCODERS])}")


def layer_flops(spec: ArchSpec, n_tokens, n_keys=None):
    """FLOPs of one block on ``n_tokens`` queries attending over ``n_keys`` keys (default: the same)."""
    n_keys = n_tokens if n_keys is None else n_keys
    d, hd = spec.d_model, spec.head_dim
    q_width, kv_width = spec.n_heads * hd, spec.n_kv_heads * hd
    proj = 2 * n_tokens * d * (q_width + 2 * kv_width) + 2 * n_tokens * q_width * d
    attn = 2 * 2 * n_tokens * n_keys * q_width  # scores and mixing
    mlp = 2 * n_tokens * d * spec.d_ff * spec.mlp_matrices
    return proj + attn + mlp


def builds_whole_map(n_rows, n_tokens):
    """Whether reading ``n_rows`` attention rows over ``n_tokens`` tokens builds the whole N x N map
    instead (more than a quarter of the rows: one map is then cheaper than the row-wise path). Works
    elementwise on tensors of counts; :class:`rltr.core.decisions.DecisionContext` charges by it."""
    return 4 * n_rows > n_tokens


def head_flops(spec: ArchSpec, n_head_tokens):
    return 2 * n_head_tokens * spec.d_model * spec.vocab_size


def forward_flops(spec: ArchSpec, tokens_per_layer: Sequence, n_head_tokens=0, extra_flops=0):
    """Total FLOPs given the tokens entering each layer (length ``n_layers``), plus the head and any
    ``extra_flops`` (e.g. the router's own cost)."""
    if len(tokens_per_layer) != spec.n_layers:
        raise ValueError(f"tokens_per_layer has {len(tokens_per_layer)} entries for a {spec.n_layers}-layer model")
    total = sum(layer_flops(spec, n) for n in tokens_per_layer)
    return total + head_flops(spec, n_head_tokens) + extra_flops


def compute_fraction(spec: ArchSpec, tokens_per_layer: Sequence, n_full, n_head_tokens=0, extra_flops=0):
    """Reduced FLOPs / full FLOPs, where the full pass runs ``n_full`` tokens through every layer."""
    full = forward_flops(spec, [n_full] * spec.n_layers, n_head_tokens)
    reduced = forward_flops(spec, tokens_per_layer, n_head_tokens, extra_flops)
    if isinstance(reduced, torch.Tensor) or isinstance(full, torch.Tensor):
        return torch.as_tensor(reduced, dtype=torch.float64) / torch.as_tensor(full, dtype=torch.float64)
    return reduced / full
