"""ToMe on encoders is the published algorithm: hand-checked small cases and a loop-by-loop reference."""

import itertools

import pytest
import torch

from rltr.core.ops import Action
from rltr.reducers import get_reducer
from tests.test_reducers import hand_ctx, kept_slots


def unit(*v):
    x = torch.tensor(v, dtype=torch.float32)
    return x / x.norm()


def keys_of(rows):
    """(1, N, F) keys from a list of vectors."""
    return torch.stack(rows)[None]


def cls_protected(n, b=1):
    p = torch.zeros(b, n, dtype=torch.bool)
    p[:, 0] = True
    return p


def merges(d, row=0):
    """{source slot: destination slot} of a decision."""
    src = (d.actions[row] == Action.MERGE).nonzero().flatten().tolist()
    return {s: int(d.merge_dst[row, s]) for s in src}


def test_alternate_sets_best_edges_and_a_protected_cls():
    # positions 0..6: A = {0, 2, 4, 6}, B = {1, 3, 5}. CLS (0) has the strongest edge of all (identical to 1)
    # but is protected: it neither merges nor absorbs. Edges: 2 -> 5 (0.99), 4 -> 1 (0.9), 6 -> 3 (0.5).
    cls = unit(1, 0, 0, 0)
    keys = keys_of(
        [cls, cls, unit(0, 0.141, 0.99, 0), unit(0, 0, 0.5, 0.866), unit(0.9, 0.436, 0, 0), unit(0, 0, 1, 0), unit(0, 0.866, 0, 0.5)]
    )
    ctx = hand_ctx(keys, [7], protected=cls_protected(7), causal=False)
    assert merges(get_reducer("tome:r=1").decide(ctx)) == {2: 5}
    assert merges(get_reducer("tome:r=2").decide(ctx)) == {2: 5, 4: 1}
    assert merges(get_reducer("tome:r=3").decide(ctx)) == {2: 5, 4: 1, 6: 3}


def test_a_protected_b_token_never_absorbs():
    # 3 (in B) is protected and identical to 2: 2 takes its next best B token, 5
    keys = keys_of([unit(1, 0, 0), unit(0, 1, 0), unit(0, 0, 1), unit(0, 0, 1), unit(1, 1, 0), unit(0, 0.3, 1)])
    protected = cls_protected(6)
    protected[0, 3] = True
    ctx = hand_ctx(keys, [6], protected=protected, causal=False)
    assert merges(get_reducer("tome:r=1").decide(ctx)) == {2: 5}


def test_at_most_half_per_round_and_several_sources_into_one_destination():
    # CLS + 6 tokens: r = 10 is capped at (7 - 1) // 2 = 3; 2 and 4 both go to 1, sizes add up, the merged
    # state is the size-weighted average
    keys = keys_of([unit(0, 0, 1), unit(1, 0, 0), unit(1, 0.05, 0), unit(0, 1, 0), unit(1, 0.1, 0), unit(0, 1, 0.1), unit(0, 1, 0.2)])
    hidden = torch.randn(1, 7, 8)
    ctx = hand_ctx(keys, [7], protected=cls_protected(7), causal=False, hidden=hidden)
    ctx.state.sizes[0, 2] = 2.0  # token 2 already stands for two originals
    d = get_reducer("tome:r=10").decide(ctx)
    assert merges(d) == {2: 1, 4: 1, 6: 5}
    kept, out = kept_slots(ctx, d)
    assert kept == [[0, 1, 3, 5]] and out.sizes[0].tolist() == [1.0, 4.0, 1.0, 2.0]
    expected = (hidden[0, 1] + 2 * hidden[0, 2] + hidden[0, 4]) / 4
    assert torch.allclose(out.hidden[0, 1], expected, atol=1e-6)


def test_budget_mode_runs_further_rounds_past_half():
    keys = torch.randn(2, 9, 8, generator=torch.Generator().manual_seed(1))
    ctx = hand_ctx(keys, [3, 2], lengths=[9, 5], protected=cls_protected(9, 2), causal=False)
    kept, out = kept_slots(ctx, get_reducer("tome").decide(ctx))
    assert [len(k) for k in kept] == [3, 2] and all(k[0] == 0 for k in kept)  # CLS survives
    assert out.sizes.sum(1).tolist() == [9.0, 5.0] and out.sizes[:, 0].tolist() == [1.0, 1.0]  # CLS absorbed nothing


def reference_round(keys, protected, r):
    """The paper's round written out with python loops: {source: destination}."""
    n = keys.shape[0]
    metric = [k / k.norm() for k in keys]
    a = [i for i in range(0, n, 2) if not protected[i]]
    b = [j for j in range(1, n, 2) if not protected[j]]
    edges = []
    for i in a:
        sims = [(float(metric[i] @ metric[j]), -j) for j in b]
        if sims:
            s, neg_j = max(sims)
            edges.append((s, -i, -neg_j))
    edges.sort(reverse=True)  # most similar first; ties: the earlier source
    r = min(r, (n - int(protected.sum())) // 2)
    return {-neg_i: j for _, neg_i, j in edges[:r]}


@pytest.mark.parametrize("n, r, seed", list(itertools.product([5, 8, 17], [1, 3, 8], [0, 1])))
def test_matches_a_loop_by_loop_reference(n, r, seed):
    g = torch.Generator().manual_seed(seed)
    keys = torch.randn(1, n, 6, generator=g)
    heads = torch.stack([keys, keys + 0.5 * torch.randn(1, n, 6, generator=g)], dim=1)  # (1, H=2, N, F): averaged over heads
    protected = cls_protected(n)
    protected[0, n - 1] = seed == 1  # a protected last token (BERT's SEP) in some cases
    ctx = hand_ctx(keys, [n], protected=protected, causal=False)
    ctx.backbone.key_states = lambda layer, state: heads
    got = merges(get_reducer(f"tome:r={r}").decide(ctx))
    assert got == reference_round(heads[0].mean(0), protected[0], r)


def test_r_mode_takes_no_budget():
    with pytest.raises(ValueError, match="r=N"):
        get_reducer("tome:r=0")
    with pytest.raises(ValueError, match="r=N"):
        get_reducer("tome:k=3")
    reducer = get_reducer("tome:r=4")
    assert not reducer.takes_budget and reducer.chooses_own_budget and get_reducer("tome").takes_budget
