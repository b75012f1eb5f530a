"""Every registered reducer through the one decision path (Decider / run_method): budgets, protection,
size conservation, causality, query-agnostic invariance; plus hand-built cases per method."""

import re

import pytest
import torch

from rltr.backbones import wrap
from rltr.core.decider import Decider
from rltr.core.ops import Action, TokenState, apply_actions, scatter_to_positions
from rltr.evaluation.run import run_method
from rltr.reducers import (
    REDUCERS,
    Decision,
    DecisionContext,
    Reducer,
    get_reducer,
    target_counts,
)
from rltr.tasks import collate, get_task
from rltr.tasks.vocab import N_KEYS, PAD_ID, VOCAB_SIZE, word_to_id
from tests.conftest import tiny_gpt2, tiny_llama

OPTIONS = {"attn_topk": ["attn_topk:merge"], "norm": ["norm:hidden"], "window": ["window:0", "window:2"]}
NOT_HERE = {"identity", "router"}  # identity reduces nothing; a router needs an exported folder (own tests)
SPECS = [s for name in sorted(REDUCERS) if name not in NOT_HERE for s in [name, *OPTIONS.get(name, [])]]
BUDGETS = [0.25, 0.5, 0.75]


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def backbone(request):
    make = {"gpt2": tiny_gpt2, "llama": tiny_llama}[request.param]
    return wrap(make(n_layer=2, vocab=VOCAB_SIZE))


def mixed_batch(seed: int = 0, n: int = 6):
    """Retrieval (48-token context + 3 tail) and majority (40 + 2) rows: padded, lengths and tails differ."""
    examples = get_task("retrieval", context_len=48).examples(n, seed=seed)
    examples += get_task("majority", context_len=40).examples(n, seed=seed)
    return examples, collate(examples, PAD_ID)


class Recording(Reducer):
    """Wraps a reducer and keeps each Decision and the state it was made on."""

    def __init__(self, inner: Reducer):
        self.inner, self.name, self.seen = inner, inner.name, []

    def decide(self, ctx: DecisionContext) -> Decision:
        d = self.inner.decide(ctx)
        self.seen.append((ctx.state, d))
        return d


def run_decisions(backbone, batch, spec, budget, layers=(1,), query_aware=True):
    """(final state after the last decision, Recording) for ``spec`` through Decider."""
    rec = Recording(get_reducer(spec))
    decide = Decider(
        rec,
        backbone,
        list(layers),
        budget,
        batch.relevant,
        torch.Generator().manual_seed(0),
        context_len=batch.context_len,
        query_aware=query_aware,
        answer_start=batch.lengths - batch.n_answer,
    )
    after = []
    state = backbone.embed(batch.input_ids, batch.attention_mask, protected=batch.protected)
    backbone.run(state, lambda i, s: after.append(decide(i, s)) or after[-1], layers)
    return after[-1], rec


@pytest.mark.parametrize("spec", SPECS)
def test_budget_protection_sizes_and_causality(backbone, spec):
    examples, batch = mixed_batch()
    n_pos = batch.input_ids.shape[1]
    for budget in BUDGETS:
        state, rec = run_decisions(backbone, batch, spec, budget)
        expected = torch.maximum(target_counts(batch.lengths, budget, 0, 1), batch.protected.sum(1))
        assert state.n_alive.tolist() == expected.tolist(), f"{spec}@{budget}"
        for i, e in enumerate(examples):
            kept = set(state.positions[i][state.alive[i]].tolist())
            always = set(e.protected) | set(range(e.context_len, len(e.input_ids)))
            assert always <= kept, f"{spec}@{budget} row {i}"
        before, d = rec.seen[0]
        n_dropped = ((d.actions == Action.DROP) & before.alive & ~before.protected).sum(1)
        left = (batch.lengths - n_dropped).float()
        assert torch.equal(state.sizes.sum(1), left), f"{spec}@{budget}: sizes not conserved"
        # causal: mass only moves to later positions, so positions <= p never hold more than p + 1 originals
        mass = scatter_to_positions(state.sizes, state, n_pos).cumsum(1)
        originals = batch.attention_mask.float().cumsum(1)
        assert (mass <= originals + 1e-6).all(), f"{spec}@{budget}: a merge went back in time"
        if d.merge_dst is not None:
            src = d.merge_dst >= 0
            dst_pos = torch.gather(before.positions, 1, d.merge_dst.clamp_min(0))
            assert (dst_pos[src] > before.positions[src]).all(), f"{spec}: merge into an earlier position"


@pytest.mark.parametrize("spec", SPECS)
def test_two_decision_layers_reach_the_budget(backbone, spec):
    _, batch = mixed_batch(seed=1, n=4)
    state, _ = run_decisions(backbone, batch, spec, 0.25, layers=(0, 1))
    expected = torch.maximum(target_counts(batch.lengths, 0.25, 1, 2), batch.protected.sum(1))
    assert state.n_alive.tolist() == expected.tolist()
    if spec == "tome":  # merges only: every original token is still accounted for
        assert torch.equal(state.sizes.sum(1), batch.lengths.float())


@pytest.mark.parametrize("spec", SPECS)
def test_query_agnostic_decisions_ignore_the_tail(backbone, spec):
    examples, batch = mixed_batch(seed=2)
    ids = batch.input_ids.clone()
    for i, e in enumerate(examples):  # a different question key (retrieval) / answer symbol (majority)
        word = next(w for w, j in word_to_id.items() if j == e.input_ids[e.context_len + 1])
        other = f"k{(int(word[1:]) + 1) % N_KEYS}" if word[0] == "k" else f"m{(int(word[1:]) + 1) % 2}"
        ids[i, e.context_len + 1] = word_to_id[other]
    changed = collate(examples, PAD_ID)
    changed.input_ids = ids
    n_pos = ids.shape[1]
    ctx_mask = torch.arange(n_pos)[None, :] < batch.context_len[:, None]
    outs = [run_decisions(backbone, b, spec, 0.5, query_aware=False)[0] for b in (batch, changed)]
    sizes = [scatter_to_positions(s.sizes, s, n_pos)[ctx_mask] for s in outs]
    hidden = [scatter_to_positions(s.hidden, s, n_pos)[ctx_mask] for s in outs]
    assert torch.equal(sizes[0], sizes[1]), f"{spec}: query-agnostic context decisions depend on the tail"
    assert torch.allclose(hidden[0], hidden[1], atol=1e-5)


@pytest.mark.parametrize("spec", SPECS)
def test_run_method_meets_the_budget(backbone, spec):
    task = get_task("retrieval", context_len=48)
    r = run_method(backbone, task, get_reducer(spec), 0.5, n_examples=8, batch_size=8)
    assert r.kept_ratio == pytest.approx(26 / 51) and r.compute_fraction < 1


def test_oracle_keeps_relevant_tokens(backbone):
    examples, batch = mixed_batch(seed=3)
    for budget in [None, *BUDGETS]:
        state, _ = run_decisions(backbone, batch, "oracle", budget)
        for i, e in enumerate(examples):
            kept = set(state.positions[i][state.alive[i]].tolist())
            always = set(e.protected) | set(range(e.context_len, len(e.input_ids)))
            if budget is None:
                assert kept == always | set(e.relevant)
            elif len(always | set(e.relevant)) <= state.n_alive[i]:
                assert set(e.relevant) <= kept, f"oracle@{budget} row {i} lost a relevant token"
            else:
                assert kept - always <= set(e.relevant)
    with pytest.raises(ValueError, match="relevant"):
        Decider(get_reducer("oracle"), backbone, [1], 0.5)(1, backbone.embed(batch.input_ids[:1]))


# ---- hand-built cases: a stub backbone whose keys we choose ------------------------------------------


class StubBackbone:
    """keys: (B, N, F) returned as the layer's keys; received: (N,) attention every row gives each key."""

    def __init__(self, keys: torch.Tensor, causal: bool = True, received: torch.Tensor | None = None):
        self.k, self.causal, self.received = keys, causal, received

    def keys(self, layer: int, state: TokenState) -> torch.Tensor:
        return self.k

    def attention(self, layer: int, state: TokenState) -> torch.Tensor:
        b, n = state.alive.shape
        return self.received.expand(b, 1, n, n)

    def key_states(self, layer: int, state: TokenState) -> torch.Tensor:
        return self.k[:, None]

    def attention_rows(self, layer: int, state: TokenState, rows: torch.Tensor, keys=None) -> torch.Tensor:
        return self.received.expand(rows.shape[0], 1, rows.shape[1], state.alive.shape[1])


def hand_ctx(keys, n_keep, lengths=None, tail=None, protected=None, causal=True, hidden=None, received=None):
    b, n = keys.shape[:2]
    lengths = torch.full((b,), n) if lengths is None else torch.tensor(lengths)
    alive = torch.arange(n)[None, :] < lengths[:, None]
    hidden = torch.randn(b, n, 8) if hidden is None else hidden
    state = TokenState.from_hidden(hidden, alive=alive, protected=protected)
    return DecisionContext(
        backbone=StubBackbone(keys, causal, received),
        layer=1,
        state=state,
        n_keep=torch.tensor(n_keep),
        tail=None if tail is None else tail & alive,
    )


def kept_slots(ctx, d):
    causal = ctx.backbone.causal
    out = apply_actions(ctx.state, d.actions, causal=causal, merge_dst=d.merge_dst, dst_allowed=ctx.context)
    return [out.positions[i][out.alive[i]].tolist() for i in range(out.alive.shape[0])], out


@pytest.mark.parametrize("causal", [True, False])
def test_tome_merges_the_most_similar_pair(causal):
    g = torch.Generator().manual_seed(0)
    keys = torch.randn(1, 6, 32, generator=g)
    keys[0, 4] = keys[0, 1]  # identical, but 4 (set A) -> 1 (set B) goes back in time
    keys[0, 5] = keys[0, 2] + 0.3 * torch.randn(32, generator=g)  # very similar, forward: 2 (A) -> 5 (B)
    ctx = hand_ctx(keys, [5], causal=causal)
    d = get_reducer("tome").decide(ctx)
    src, dst = (4, 1) if not causal else (2, 5)
    assert (d.actions[0] == Action.MERGE).nonzero().flatten().tolist() == [src] and d.merge_dst[0, src] == dst
    kept, out = kept_slots(ctx, d)
    assert len(kept[0]) == 5 and out.sizes[0][out.positions[0] == dst].item() == 2


def test_tome_runs_more_rounds_and_resolves_chains():
    ctx = hand_ctx(torch.randn(2, 8, 16), [2, 1], lengths=[8, 3], causal=True)
    d = get_reducer("tome").decide(ctx)
    kept, out = kept_slots(ctx, d)
    # row 0: 8 -> 4 -> 2 in two rounds; row 1: 0 -> 1, then 1 -> 2, resolved to 0 -> 2 and 1 -> 2
    assert [len(k) for k in kept] == [2, 1] and d.merge_dst[1, :2].tolist() == [2, 2]
    assert out.sizes.sum(1).tolist() == [8.0, 3.0]
    ends = torch.tensor([[True, False, True]])  # slot 0 protected, slot 2 the tail: only 0 could take slot 1
    # causal: 0 lies before 1; non-causal (the paper's rule): 1 is in B, 0 and 2 in A are protected, and a
    # protected token never absorbs a merge: nothing admissible either way, ToMe falls short of n_keep
    for causal, expected in [(True, [0, 1, 2]), (False, [0, 1, 2])]:
        tail = ends & (torch.arange(3) == 2)
        short = hand_ctx(torch.randn(1, 3, 16), [1], tail=tail, protected=ends, causal=causal)
        assert kept_slots(short, get_reducer("tome").decide(short))[0] == [expected]


def test_window_keeps_sinks_and_recent_tokens():
    tail = torch.zeros(2, 10, dtype=torch.bool)
    tail[0, 8:], tail[1, 6:8] = True, True
    ctx = hand_ctx(torch.randn(2, 10, 4), [6, 5], lengths=[10, 8], tail=tail, protected=tail)
    kept, _ = kept_slots(ctx, get_reducer("window:2").decide(ctx))
    assert kept == [[0, 1, 6, 7, 8, 9], [0, 1, 5, 6, 7]]
    kept, _ = kept_slots(ctx, get_reducer("window:0").decide(ctx))
    assert kept == [[4, 5, 6, 7, 8, 9], [3, 4, 5, 6, 7]]


def test_attention_methods_keep_the_most_attended_tokens():
    received = torch.tensor([0.01, 0.3, 0.1, 0.01, 0.2, 0.01, 0.05, 0.01, 0.25, 0.06])
    ctx = hand_ctx(torch.randn(1, 10, 4), [6], received=received)
    assert kept_slots(ctx, get_reducer("attn_topk").decide(ctx))[0] == [[1, 2, 4, 6, 8, 9]]
    # H2O: 6 free slots = 3 recent (7, 8, 9) + the 3 heaviest of the rest (1, 4, 2)
    assert kept_slots(ctx, get_reducer("h2o").decide(ctx))[0] == [[1, 2, 4, 7, 8, 9]]
    ctx = hand_ctx(torch.randn(1, 10, 4), [6], received=received)
    kept, out = kept_slots(ctx, get_reducer("attn_topk:merge").decide(ctx))
    assert kept == [[1, 2, 4, 6, 8, 9]] and out.sizes.sum().item() == 10  # every token before 9 has a later home


def test_norm_keeps_lowest_key_norms_and_highest_hidden_norms():
    norms = torch.tensor([[5.0, 1.0, 3.0, 2.0, 4.0, 0.5]])
    keys = norms[..., None] * torch.nn.functional.normalize(torch.randn(1, 6, 4), dim=-1)
    hidden = norms[..., None] * torch.nn.functional.normalize(torch.randn(1, 6, 8), dim=-1)
    ctx = hand_ctx(keys, [3], hidden=hidden)
    assert kept_slots(ctx, get_reducer("norm").decide(ctx))[0] == [[1, 3, 5]]
    assert kept_slots(ctx, get_reducer("norm:hidden").decide(ctx))[0] == [[0, 2, 4]]


def test_unprotected_tail_is_never_reduced():
    """A hand-made context on a tiny Llama (synthetic ids, vocabulary 101) whose tail is NOT protected."""
    backbone = wrap(tiny_llama(n_layer=2))
    ids = torch.randint(1, 101, (3, 20), generator=torch.Generator().manual_seed(0))
    lengths = torch.tensor([20, 15, 11])
    alive = torch.arange(20)[None, :] < lengths[:, None]
    bos = torch.zeros_like(alive).index_fill(1, torch.tensor([0]), True)
    state = backbone.run_layer(0, backbone.embed(ids, alive, protected=bos))
    tail = (torch.arange(20)[None, :] >= (lengths - 3)[:, None]) & alive
    for spec in [s for s in SPECS if s != "random"]:  # random.py relies on the tail being protected
        ctx = DecisionContext(
            backbone=backbone,
            layer=1,
            state=state,
            n_keep=torch.tensor([7, 6, 6]),
            budget=0.3,
            tail=tail,
            relevant=alive & (ids % 7 == 0),
            generator=torch.Generator().manual_seed(0),
        )
        d = get_reducer(spec).decide(ctx)
        out = apply_actions(state, d.actions, causal=True, merge_dst=d.merge_dst, dst_allowed=ctx.context)
        assert out.n_alive.tolist() == [7, 6, 6], spec
        for i in range(3):
            kept = set(out.positions[i][out.alive[i]].tolist())
            n = int(lengths[i])
            assert {0, n - 3, n - 2, n - 1} <= kept, f"{spec} row {i}: {sorted(kept)}"


@pytest.mark.parametrize("spec", ["attn_topk:bogus", "norm:keys", "window:-1", "window:x", "window:2.5"])
def test_bad_options_are_value_errors(spec):
    with pytest.raises(ValueError, match=re.escape(repr(spec.partition(":")[2]))):
        get_reducer(spec)


@pytest.mark.parametrize("network", ["mlp", "attention"])
@pytest.mark.parametrize("budget", [None, 0.25])
def test_query_agnostic_router_ignores_the_tail(backbone, budget, network, tmp_path):
    """A router's pooled summary and global features read the context only: a different question gives
    identical actions (it used to move the context logits by ~1e-3 through the pooled tail rows)."""
    from tests.routers import random_router

    path = random_router(backbone, tmp_path, query_aware=False, network=network)
    examples, batch = mixed_batch(seed=4)
    ids = batch.input_ids.clone()
    for i, e in enumerate(examples):  # another question token, and a longer tail on the retrieval rows
        ids[i, e.context_len + 1] = (ids[i, e.context_len + 1] + 1) % VOCAB_SIZE
    changed = collate(examples, PAD_ID)
    changed.input_ids = ids
    outs = []
    for b in (batch, changed):
        state, rec = run_decisions(backbone, b, f"router:{path}", budget, query_aware=False)
        ctx_state, d = rec.seen[0]
        outs.append(torch.where(ctx_state.positions < b.context_len[:, None], d.actions, -1))
    assert torch.equal(outs[0], outs[1])


@pytest.mark.parametrize("spec", [*SPECS, "router"])
def test_no_decision_reads_the_teacher_forced_answer(backbone, spec, tmp_path):
    """Query-aware methods read the question, never the answer appended for teacher forcing (at generation
    time it does not exist): another answer token gives identical decisions everywhere else."""
    from tests.routers import random_router

    if spec == "router":
        spec = f"router:{random_router(backbone, tmp_path)}"
    examples, batch = mixed_batch(seed=5)
    changed = collate(examples, PAD_ID)
    last = batch.lengths - 1
    changed.input_ids = batch.input_ids.clone()
    changed.input_ids[torch.arange(len(examples)), last] = (batch.input_ids[torch.arange(len(examples)), last] + 1) % VOCAB_SIZE
    seen = []
    for b in (batch, changed):
        _, rec = run_decisions(backbone, b, spec, 0.25, query_aware=True)
        state, d = rec.seen[0]
        seen.append(torch.where(state.positions < last[:, None], d.actions, -1))
    assert torch.equal(seen[0], seen[1]), spec
