import sys
from unittest import mock

import pytest
import torch

from rltr.backbones import ADAPTERS, ModelLoadError, load_backbone, wrap
from rltr.core.ops import Action, apply_actions
from tests.conftest import ATTN_IMPLEMENTATIONS, ENCODERS, FAMILIES, tiny_llama, tiny_mistral, tiny_qwen2, tiny_qwen3


def _padded_batch(vocab=101, n=24):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, vocab, (4, n), generator=g)
    mask = torch.ones(4, n, dtype=torch.long)
    mask[1, 17:] = 0
    mask[2, 5:] = 0
    mask[3, 23:] = 0
    return ids, mask


def _identity_error(model, ids, mask=None) -> float:
    """max |logits| difference at real tokens between the HF model and its adapter's identity run."""
    ref = model(input_ids=ids, attention_mask=mask).logits
    out = wrap(model).forward_logits(ids, mask)
    real = torch.ones_like(ids, dtype=torch.bool) if mask is None else mask.bool()
    return (ref - out)[real].abs().max().item()


@pytest.mark.parametrize("attn", ATTN_IMPLEMENTATIONS)
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_identity_reproduces_hf_logits(family, attn):
    """Batched, padded and unpadded, under sdpa and eager attention (eager applies no causal mask by itself)."""
    model = FAMILIES[family](attn=attn)
    ids, mask = _padded_batch()
    assert _identity_error(model, ids, mask) <= 1e-4
    assert _identity_error(model, ids) <= 1e-4


@pytest.mark.parametrize("attn", ATTN_IMPLEMENTATIONS)
@pytest.mark.parametrize(
    "factory, config",
    [
        (tiny_mistral, {"sliding_window": 8}),
        (tiny_qwen2, {"use_sliding_window": True, "sliding_window": 8, "max_window_layers": 1}),  # layer 0 full, 1-2 sliding
        (tiny_qwen3, {"use_sliding_window": True, "sliding_window": 8, "max_window_layers": 1}),
    ],
    ids=["mistral", "qwen2", "qwen3"],
)
def test_identity_with_a_sliding_window_shorter_than_the_prompt(factory, config, attn):
    model = factory(attn=attn, **config)
    ids, mask = _padded_batch()
    assert _identity_error(model, ids, mask) <= 1e-4
    assert _identity_error(model, ids) <= 1e-4
    unwindowed = factory(attn=attn)(input_ids=ids).logits
    assert (unwindowed - model(input_ids=ids).logits).abs().max() > 1e-3  # the window does change this model


def test_left_padding_gives_the_logits_of_right_padding_and_of_single_prompts(family_model):
    """Either padding side into embed / forward_logits: real tokens first, positions over real tokens,
    results back at the caller's columns."""
    _, model = family_model
    bb = wrap(model)
    ids, right_mask = _padded_batch()
    lengths = right_mask.sum(1)
    left_ids, left_mask = torch.zeros_like(ids), torch.zeros_like(right_mask)
    for r, n in enumerate(lengths.tolist()):
        left_ids[r, ids.shape[1] - n :], left_mask[r, ids.shape[1] - n :] = ids[r, :n], 1
    right = bb.forward_logits(ids, right_mask)
    left = bb.forward_logits(left_ids, left_mask)
    assert (left[~left_mask.bool()] == 0).all()
    for r, n in enumerate(lengths.tolist()):
        single = bb.forward_logits(ids[r : r + 1, :n])[0]
        torch.testing.assert_close(left[r, ids.shape[1] - n :], right[r, :n], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(left[r, ids.shape[1] - n :], single, atol=1e-5, rtol=1e-5)
    last_column = torch.arange(ids.shape[1]) == ids.shape[1] - 1
    state = bb.embed(left_ids, left_mask, protected=last_column.expand_as(left_mask))
    assert torch.equal(state.alive, right_mask.bool())
    assert torch.equal(state.positions[state.alive], torch.arange(24).expand(4, 24)[state.alive])  # counted over real tokens
    assert state.protected.sum(1).tolist() == [1, 1, 1, 1] and torch.equal(state.protected.float().argmax(1), lengths - 1)


def test_all_keep_decisions_are_identity(family_model):
    _, model = family_model
    bb = wrap(model)
    ids, mask = _padded_batch()

    def keep_all(i, state):
        return apply_actions(state, torch.full_like(state.positions, Action.KEEP), causal=bb.causal)

    ref = bb.forward_logits(ids, mask)
    out = bb.forward_logits(ids, mask, decide=keep_all, decision_layers=[0, 1, 2])
    assert (ref - out)[mask.bool()].abs().max().item() <= 1e-5


def test_dropping_a_token_changes_later_logits_and_shrinks_state(family_model):
    _, model = family_model
    bb = wrap(model)
    ids, mask = _padded_batch()
    seen = []

    def drop_third(i, state):
        actions = torch.full_like(state.positions, Action.KEEP)
        actions[:, 3] = Action.DROP
        return apply_actions(state, actions, causal=True)

    out = bb.forward_logits(ids, mask, decide=drop_third, decision_layers=[1])
    bb.run(bb.embed(ids, mask), drop_third, [1], on_layer=lambda i, s: seen.append(s.hidden.shape[1]))
    ref = bb.forward_logits(ids, mask)
    assert seen == [24, 23, 23]  # compaction: layers after the decision really run on fewer tokens
    assert torch.allclose(out[:, :3], ref[:, :3], atol=1e-5)  # causal: earlier positions unaffected
    assert not torch.allclose(out[0, 10], ref[0, 10], atol=1e-4)
    assert (out[:, 3] == 0).all()  # the dropped position has no logits


def test_rotary_positions_survive_reduction():
    bb = wrap(tiny_llama())
    ids = torch.randint(0, 101, (1, 12))

    def drop_middle(i, state):
        actions = torch.full_like(state.positions, Action.KEEP)
        actions[:, 4:8] = Action.DROP
        return apply_actions(state, actions, causal=True)

    state = bb.run(bb.embed(ids), drop_middle, [0])
    assert state.positions.tolist() == [[0, 1, 2, 3, 8, 9, 10, 11]]


def test_attention_probabilities_are_causal_and_normalised(family_model):
    _, model = family_model
    bb = wrap(model)
    ids, mask = _padded_batch()
    state = bb.embed(ids, mask)
    probs = bb.attention(1, state)
    assert probs.shape == (4, 4, 24, 24)
    assert torch.allclose(probs.sum(-1), torch.ones(4, 4, 24), atol=1e-5)
    assert probs.triu(diagonal=1).abs().max() == 0
    assert probs[2, :, :5, 5:].abs().max() == 0  # padded keys get no attention


def test_backbone_is_frozen(family_model):
    _, model = family_model
    bb = wrap(model)
    assert not bb.model.training
    assert not any(p.requires_grad for p in bb.model.parameters())


def test_load_backbone_from_saved_folder(tmp_path, family_model):
    family, model = family_model
    model.save_pretrained(tmp_path)
    bb = load_backbone(str(tmp_path))
    assert bb.family == family
    ids, mask = _padded_batch()
    ref = model(input_ids=ids, attention_mask=mask).logits
    assert (bb.forward_logits(ids, mask) - ref)[mask.bool()].abs().max() <= 1e-4


def test_unknown_model_is_a_clear_error():
    with pytest.raises(ModelLoadError, match="no-such-model-xyz"):
        load_backbone("no-such-model-xyz")


def test_unsupported_family_is_a_clear_error(tmp_path):
    from transformers import OPTConfig, OPTForCausalLM, T5Config

    T5Config(num_layers=1, d_model=32, num_heads=2, d_ff=64).save_pretrained(tmp_path)
    with pytest.raises(ModelLoadError, match="'t5'"):
        load_backbone(str(tmp_path))
    opt = OPTForCausalLM(OPTConfig(num_hidden_layers=1, hidden_size=32, num_attention_heads=2, ffn_dim=64, word_embed_proj_dim=32))
    supported = r"\['bert', 'gpt2', 'llama', 'llava', 'mistral', 'qwen2', 'qwen3', 'vit'\]"
    with pytest.raises(ModelLoadError, match=r"'opt' \(OPTForCausalLM\) has no adapter; supported: " + supported):
        wrap(opt)
    # every registered family has a tiny model in the shared tests (decoders), the encoder tests or tests/test_vlm.py (llava)
    assert sorted(ADAPTERS) == sorted([*FAMILIES, *ENCODERS, "llava"])


def test_attention_rows_equal_the_full_map_with_reductions(family_model):
    _, model = family_model
    bb = wrap(model)
    ids, mask = _padded_batch()

    def merge_some(i, state):
        actions = torch.full_like(state.positions, Action.KEEP)
        actions[:, 2:6] = Action.MERGE
        actions[:, 8] = Action.DROP
        return apply_actions(state, actions, causal=True)

    state = merge_some(0, bb.embed(ids, mask))  # merged sizes exercise proportional attention too
    rows = torch.tensor([[0, 5, 9], [1, 2, 3], [0, 0, 1], [7, 8, 9]])
    full = bb.attention(1, state)
    part = bb.attention_rows(1, state, rows)
    expected = torch.gather(full, 2, rows[:, None, :, None].expand(-1, full.shape[1], -1, full.shape[-1]))
    assert torch.allclose(part, expected, atol=1e-6)


def _reference_query_key(model, i, hidden, positions):
    """Layer ``i``'s queries and keys (B, H, N, d_head) on ``hidden`` (B, N, D) at ``positions`` (B, N) as the
    HF attention module itself computes them: the module runs (eager dispatch) on its block's normed input,
    with the model's rotary module at ``positions`` (Llama-like), and hands its q / k to a capturing
    attention function. Keys are repeated to the query heads."""
    from transformers.models.llama.modeling_llama import repeat_kv

    captured = {}

    def capture(module, query, key, value, attention_mask, **kwargs):
        captured.update(q=query, k=repeat_kv(key, query.shape[1] // key.shape[1]))
        return torch.zeros_like(query).transpose(1, 2), None

    if model.config.model_type == "gpt2":
        block = model.transformer.h[i]
        attn, kwargs = block.attn, {"hidden_states": block.ln_1(hidden)}
    else:
        block = model.model.layers[i]
        attn = block.self_attn
        kwargs = {
            "hidden_states": block.input_layernorm(hidden),
            "attention_mask": None,
            "position_embeddings": model.model.rotary_emb(hidden, position_ids=positions),
        }
    saved = model.config._attn_implementation
    model.config._attn_implementation = "eager"
    try:
        with mock.patch.object(sys.modules[type(attn).__module__], "eager_attention_forward", capture):
            attn(**kwargs)
    finally:
        model.config._attn_implementation = saved
    return captured["q"], captured["k"]


def test_key_and_row_query_projections_match_the_attention_module(family_model):
    """The adapters' key-only and row-only projections (cheap decision features) equal what the HF
    attention module computes, on a reduced state with shifted positions."""
    _, model = family_model
    bb = wrap(model)
    ids, mask = _padded_batch()
    actions = torch.full_like(ids, Action.KEEP)
    actions[:, 1:4] = Action.DROP
    state = apply_actions(bb.embed(ids, mask), actions, causal=True)
    q, k = _reference_query_key(model, 1, state.hidden, state.positions)
    rows = torch.tensor([[0, 3, 5], [1, 1, 2], [4, 0, 2], [6, 5, 1]])
    expected_q = torch.gather(q, 2, rows[:, None, :, None].expand(-1, q.shape[1], -1, q.shape[-1]))
    torch.testing.assert_close(bb.key_states(1, state), k, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(bb.query_states(1, state, rows), expected_q, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(bb.attention_rows(1, state, rows, keys=k), bb.attention_rows(1, state, rows), atol=1e-6, rtol=1e-5)


def _dynamic_rope_llama(**config):
    """A tiny Llama with dynamic NTK rope trained for 16 positions: longer calls rescale every frequency."""
    return tiny_llama(max_position_embeddings=16, rope_parameters={"rope_type": "dynamic", "factor": 4.0, "rope_theta": 10000.0}, **config)


@pytest.mark.parametrize("attn", ATTN_IMPLEMENTATIONS)
def test_dynamic_rope_identity_is_exact(attn):
    model = _dynamic_rope_llama(attn=attn)
    ids, mask = _padded_batch()  # 24 columns > 16 positions: scaled frequencies
    assert _identity_error(model, ids, mask) <= 1e-4
    assert _identity_error(model, ids) <= 1e-4


def test_dynamic_rope_phases_of_a_reduced_state_are_those_of_the_full_prompt():
    """Rotary phases come from the whole prompt (its longest position sets dynamic-rope frequencies),
    not from the rows a reduced state still holds: keys and queries at the kept positions equal the
    full sequence's."""
    model = _dynamic_rope_llama()
    bb = wrap(model)
    ids, mask = _padded_batch()
    full = bb.run_layers(bb.embed(ids, mask), 0, 1)
    actions = torch.full_like(ids, Action.KEEP)
    actions[:, 10:] = Action.DROP  # the kept rows end before position 16: on their own they would look unscaled
    actions[:, 3] = Action.DROP
    reduced = apply_actions(full, actions, causal=True)
    q, k = _reference_query_key(model, 1, full.hidden, full.positions)
    kept = reduced.positions  # (B, 9): the full state's slot of each kept token is its position
    expected_k = torch.gather(k, 2, kept[:, None, :, None].expand(-1, k.shape[1], -1, k.shape[-1]))
    torch.testing.assert_close(bb.key_states(1, reduced), expected_k, atol=1e-5, rtol=1e-5)
    rows = torch.tensor([[0, 2, 4]]).expand(4, 3)
    expected_q = torch.gather(q, 2, torch.gather(kept, 1, rows)[:, None, :, None].expand(-1, q.shape[1], -1, q.shape[-1]))
    torch.testing.assert_close(bb.query_states(1, reduced, rows), expected_q, atol=1e-5, rtol=1e-5)
