"""Each token's nearest other token (cosine), in row blocks: the N x N similarity map is never whole.

At N = 4096 tokens a (B, N, N) float32 map is 64 MB per row of the batch; computed ``rows`` query tokens
at a time the peak is (B, rows, N). Small inputs (B * N * N <= :data:`BLOCK_ELEMENTS`) take one block,
which is exactly the plain computation.
"""

from __future__ import annotations

import torch

BLOCK_ELEMENTS = 1 << 24  # similarities held at once (64 MB in float32)


def nearest_similarity(unit: torch.Tensor, visible: torch.Tensor, block_elements: int = BLOCK_ELEMENTS) -> torch.Tensor:
    """(B, N) the largest cosine similarity of each token to another *visible* token.

    ``unit`` (B, N, P): unit vectors; ``visible`` (B, N) bool. A token never matches itself; with no other
    visible token the result is -1.
    """
    b, n, _ = unit.shape
    rows = max(1, block_elements // max(b * n, 1))
    masked = None if bool(visible.all()) else ~visible[:, None, :]  # (B, 1, N)
    out = []
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        sim = unit[:, start:stop] @ unit.transpose(1, 2)  # (B, r, N)
        sim[:, torch.arange(stop - start), torch.arange(start, stop)] = -1.0  # not itself
        if masked is not None:
            sim.masked_fill_(masked, -1.0)
        out.append(sim.max(-1).values)
    return torch.cat(out, dim=1)
