"""Property tests for the token-state ops: conservation, exact removal, protection, identity."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rltr.core.ops import Action, TokenState, apply_actions, compact, drop, keep_top_k, merge, merge_targets

SETTINGS = settings(max_examples=60, deadline=None)


@st.composite
def states_and_actions(draw):
    b = draw(st.integers(1, 3))
    n = draw(st.integers(1, 12))
    d = draw(st.integers(1, 5))
    seed = draw(st.integers(0, 2**16))
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([draw(st.integers(1, n)) for _ in range(b)])
    alive = torch.arange(n)[None, :] < lengths[:, None]
    protected = (torch.rand(b, n, generator=g) < draw(st.floats(0, 0.5))) & alive
    hidden = torch.randn(b, n, d, generator=g)
    state = TokenState.from_hidden(hidden, alive=alive, protected=protected)
    actions = torch.randint(0, 3, (b, n), generator=g)
    causal = draw(st.booleans())
    return state, actions, causal


def _original_positions(state):
    return [set(state.positions[i][state.alive[i]].tolist()) for i in range(state.alive.shape[0])]


@SETTINGS
@given(states_and_actions())
def test_merge_conserves_sizes(case):
    state, actions, causal = case
    actions = torch.where(actions == Action.DROP, Action.KEEP, actions)  # merges only
    out = apply_actions(state, actions, causal=causal)
    assert torch.allclose(out.sizes.sum(1), state.sizes.sum(1))
    assert (out.sizes[out.alive] >= 1).all() and (out.sizes[~out.alive] == 0).all()


@SETTINGS
@given(states_and_actions())
def test_drop_removes_exactly_the_dropped_tokens(case):
    state, actions, causal = case
    actions = torch.where(actions == Action.MERGE, Action.KEEP, actions)  # drops only
    out = apply_actions(state, actions, causal=causal)
    for i, kept in enumerate(_original_positions(out)):
        expected = {p for p in range(state.alive.shape[1]) if state.alive[i, p] and (actions[i, p] != Action.DROP or state.protected[i, p])}
        assert kept == expected


@SETTINGS
@given(states_and_actions())
def test_protected_tokens_survive_any_actions(case):
    state, actions, causal = case
    out = apply_actions(state, actions, causal=causal)
    for i, kept in enumerate(_original_positions(out)):
        protected = set(state.positions[i][state.protected[i]].tolist())
        assert protected <= kept
        assert set(out.positions[i][out.protected[i]].tolist()) == protected


@SETTINGS
@given(states_and_actions())
def test_all_keep_is_identity(case):
    state, _, causal = case
    out = apply_actions(state, torch.full_like(state.positions, Action.KEEP), causal=causal)
    assert torch.equal(out.hidden[out.alive], state.hidden[state.alive])
    assert torch.equal(out.positions[out.alive], state.positions[state.alive])
    assert torch.equal(out.sizes, state.sizes[:, : out.sizes.shape[1]])


@SETTINGS
@given(states_and_actions())
def test_causal_merges_only_go_to_later_tokens_and_stay_sorted(case):
    state, actions, _ = case
    merging = state.alive & (actions == Action.MERGE) & ~state.protected
    kept = state.alive & ~merging
    dst = merge_targets(state, merging, kept, causal=True)
    rows, cols = (dst >= 0).nonzero(as_tuple=True)
    assert (state.positions[rows, dst[rows, cols]] > state.positions[rows, cols]).all()
    out = apply_actions(state, actions, causal=True)
    for i in range(out.alive.shape[0]):
        pos = out.positions[i][out.alive[i]]
        assert (pos[1:] > pos[:-1]).all()  # live tokens first, in position order
        assert out.alive[i, : int(out.n_alive[i])].all()


def test_merge_is_a_size_weighted_average():
    hidden = torch.tensor([[[1.0, 0.0], [3.0, 2.0], [0.0, 4.0]]])
    state = TokenState.from_hidden(hidden)
    state = TokenState(state.hidden, state.positions, torch.tensor([[1.0, 3.0, 1.0]]), state.alive, state.protected)
    merging = torch.tensor([[True, False, False]])
    out = merge(state, merging, torch.tensor([[1, -1, -1]]))
    assert torch.allclose(out.hidden[0, 1], (1 * hidden[0, 0] + 3 * hidden[0, 1]) / 4)
    assert out.sizes.tolist() == [[0.0, 4.0, 1.0]] and out.alive.tolist() == [[False, True, True]]


def test_merge_without_admissible_destination_keeps_the_token():
    state = TokenState.from_hidden(torch.randn(1, 3, 4))
    out = apply_actions(state, torch.tensor([[Action.KEEP, Action.KEEP, Action.MERGE]]), causal=True)
    assert out.n_alive.tolist() == [3]  # the last token has no later token to merge into


def test_compaction_shrinks_to_longest_row():
    state = TokenState.from_hidden(torch.randn(2, 6, 3))
    out = compact(drop(state, torch.tensor([[1, 1, 1, 0, 0, 0], [1, 0, 1, 0, 1, 0]], dtype=torch.bool)))
    assert out.hidden.shape == (2, 3, 3)
    assert out.positions.tolist() == [[3, 4, 5], [1, 3, 5]]


def test_keep_top_k_counts_protected_tokens():
    state = TokenState.from_hidden(torch.randn(1, 6, 2), protected=torch.tensor([[1, 0, 0, 0, 0, 1]], dtype=torch.bool))
    actions = keep_top_k(torch.tensor([[0.0, 5, 1, 4, 2, 0]]), state, torch.tensor([4]))
    assert actions.tolist() == [[Action.KEEP, Action.KEEP, Action.DROP, Action.KEEP, Action.DROP, Action.KEEP]]


def test_invalid_action_values_are_rejected():
    import pytest

    state = TokenState.from_hidden(torch.randn(1, 3, 2))
    with pytest.raises(ValueError, match=r"\[3\]"):
        apply_actions(state, torch.tensor([[0, 3, 0]]))
