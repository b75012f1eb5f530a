"""The decision path itself: the one budget rule, reusable deciders, the run trace, and the decisions'
own FLOPs, each charged exactly as FlopCounterMode measures the work."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from rltr.backbones import wrap
from rltr.core.compute import ArchSpec, compute_fraction
from rltr.core.decider import Decider
from rltr.core.decisions import decision_context, resolve_actions, target_counts
from rltr.core.features import FeatureSpec, token_features
from rltr.core.ops import Action
from rltr.reducers import get_reducer
from tests.conftest import tiny_gpt2, tiny_llama
from tests.routers import random_router


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def backbone(request):
    return wrap({"gpt2": tiny_gpt2, "llama": tiny_llama}[request.param](n_layer=3))


def context(backbone, n, n_tail, query_aware=True, budget=0.5, layer=1, arch=True):
    state = backbone.run_layers(backbone.embed(torch.randint(1, 101, (1, n), generator=torch.Generator().manual_seed(n))), 0, layer)
    return decision_context(
        backbone,
        state,
        [layer],
        0,
        state.n_alive,
        budget,
        context_len=torch.tensor([n - n_tail]),
        query_aware=query_aware,
        arch=ArchSpec.from_config(backbone.config) if arch else None,
    )


def measured(fn) -> int:
    with FlopCounterMode(display=False) as fc:
        fn()
    return fc.get_total_flops()


@pytest.mark.parametrize(
    "n, n_tail, query_aware",
    [
        (64, 8, True),  # the case: 8 question rows + 16 recent rows, each R x N (charged 1.84 MFLOP before, 1.18 measured)
        (64, 3, True),
        (64, 20, True),  # 20 question rows > N/4: the whole map, the recent rows then read from it
        (40, 3, True),  # 16 recent rows > N/4 of 40: the whole map for the second row set
        (64, 8, False),
        (120, 3, False),
        (120, 3, True),
    ],
)
@pytest.mark.parametrize("features", ["full", "light"])
def test_feature_cost_is_what_the_features_compute(backbone, n, n_tail, query_aware, features):
    ctx = context(backbone, n, n_tail, query_aware)
    flops = measured(lambda: token_features(ctx, FeatureSpec.named(features)))
    charged = float(ctx.flops[0])
    assert charged == pytest.approx(flops, rel=0.02), (charged, flops)


SPECS = ["identity", "random", "oracle", "tome", "attn_topk", "attn_topk:merge", "h2o", "norm", "norm:hidden", "window"]


@pytest.mark.parametrize("spec", [*SPECS, "router"])
def test_every_reducer_is_charged_what_it_computes(backbone, spec, tmp_path):
    reducer = get_reducer(f"router:{random_router(backbone, tmp_path)}") if spec == "router" else get_reducer(spec)
    ctx = context(backbone, 48, 3, budget=0.25)
    ctx.relevant = torch.zeros_like(ctx.state.alive)
    ctx.generator = torch.Generator().manual_seed(0)
    flops = measured(lambda: reducer.decide(ctx))
    assert float(ctx.flops[0]) == pytest.approx(flops, rel=0.02, abs=1.0), (spec, float(ctx.flops[0]), flops)
    if spec in ("identity", "window", "random", "norm:hidden"):
        assert flops == 0  # they read nothing the model computes


def test_padded_rows_are_charged_as_if_alone(backbone):
    """A row's charge does not depend on what it is batched with (the env's batched and single views agree)."""
    ids = torch.randint(1, 101, (2, 64), generator=torch.Generator().manual_seed(1))
    mask = torch.ones(2, 64, dtype=torch.bool)
    mask[1, 36:] = False
    arch = ArchSpec.from_config(backbone.config)
    lengths = mask.sum(1)
    batched = decision_context(backbone, backbone.embed(ids, mask), [0], 0, lengths, 0.5, context_len=lengths - 8, arch=arch)
    token_features(batched, FeatureSpec())
    for row in range(2):
        n = int(lengths[row])
        alone = decision_context(
            backbone,
            backbone.embed(ids[row : row + 1, :n]),
            [0],
            0,
            lengths[row : row + 1],
            0.5,
            context_len=torch.tensor([n - 8]),
            arch=arch,
        )
        token_features(alone, FeatureSpec())
        assert float(batched.flops[row]) == pytest.approx(float(alone.flops[0]), rel=1e-9)


def test_resolve_actions_is_the_one_budget_rule(backbone):
    ctx = context(backbone, 40, 3, budget=0.25)  # n_keep = 10 of 40, the last 3 (the tail) always stay
    g = torch.Generator().manual_seed(0)
    for proposal in [*(torch.full((1, 40), int(a)) for a in Action), torch.randint(0, 3, (1, 40), generator=g)]:
        actions = resolve_actions(ctx, proposal)
        assert (actions[0, -3:] == Action.KEEP).all()
        # what survives as a token: KEEPs, plus merges that fall back to KEEP in ops (no destination)
        survivors = (actions == Action.KEEP) | ((actions == Action.MERGE) & ~ctx.can_merge(actions == Action.KEEP))
        assert int(survivors.sum()) <= 10, proposal
    # KEEP everything: the budget keeps the 7 latest context tokens besides the tail (default priority)
    actions = resolve_actions(ctx, torch.full((1, 40), int(Action.KEEP)))
    assert (actions[0] == Action.KEEP).nonzero().flatten().tolist() == list(range(30, 40))
    # all MERGE: nothing can absorb a merge; 7 of them fit the budget (latest first), the rest are drops
    actions = resolve_actions(ctx, torch.full((1, 40), int(Action.MERGE)))
    assert (actions[0, :30] == Action.DROP).all() and (actions[0, 30:37] == Action.MERGE).all()
    # no budget: nothing the policy meant to keep is lost
    free = context(backbone, 40, 3, budget=None)
    assert torch.equal(resolve_actions(free, torch.full((1, 40), int(Action.MERGE)))[0, :37], torch.full((37,), int(Action.MERGE)))


def test_a_decider_is_reusable_across_batches(backbone):
    """Decider used to keep the token count of its first batch: 10 of 10 at budget 0.5 on a second one."""
    decide = Decider(get_reducer("window"), backbone, [1], budget=0.5)
    for n_rows, n in [(1, 40), (3, 10), (2, 25)]:
        state = backbone.embed(torch.randint(1, 101, (n_rows, n)))
        out = backbone.run(state, decide, [1], on_layer=decide.on_layer)
        half = -(-n // 2)
        assert out.n_alive.tolist() == [half] * n_rows
        assert decide.trace.tokens_per_layer.tolist() == [[n, half, half]] * n_rows


def test_trace_compute_fraction_is_the_one_formula(backbone):
    decide = Decider(get_reducer("attn_topk"), backbone, [1, 2], budget=0.25, context_len=torch.tensor([36, 36]))
    state = backbone.embed(torch.randint(1, 101, (2, 40)))
    backbone.run(state, decide, [1, 2], on_layer=decide.on_layer)
    trace = decide.trace
    arch = ArchSpec.from_config(backbone.config)
    counts = trace.tokens_per_layer
    assert counts[:, 0].tolist() == [40, 40] and counts[:, -1].tolist() == target_counts(torch.tensor([40, 40]), 0.25, 1, 2).tolist()
    expected = compute_fraction(arch, list(counts.T.double()), torch.tensor([40.0, 40.0]), 1, trace.decision_flops)
    assert torch.allclose(trace.compute_fraction(arch, 1), expected) and (trace.decision_flops > 0).all()
    assert len(trace.slot_maps) == 2 and trace.slot_maps[0].shape == (2, 40)
