import pytest
import torch

from rltr.backbones import ModelLoadError, load_backbone, wrap
from rltr.ops import Action, apply_actions


def _padded_batch(vocab=101, n=24):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, vocab, (4, n), generator=g)
    mask = torch.ones(4, n, dtype=torch.long)
    mask[1, 17:] = 0
    mask[2, 5:] = 0
    mask[3, 23:] = 0
    return ids, mask


def test_identity_reproduces_hf_logits_with_padding(family_model):
    _, model = family_model
    ids, mask = _padded_batch()
    ref = model(input_ids=ids, attention_mask=mask).logits
    out = wrap(model).forward_logits(ids, mask)
    real = mask.bool()
    assert (ref - out)[real].abs().max().item() <= 1e-4


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
    from tests.conftest import tiny_llama

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
    from transformers import BertConfig

    BertConfig(num_hidden_layers=1, hidden_size=32, num_attention_heads=2, intermediate_size=64).save_pretrained(tmp_path)
    with pytest.raises(ModelLoadError, match="'bert'"):
        load_backbone(str(tmp_path))


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


def _reference_query_key(model, i, state):
    """Layer ``i``'s queries and keys as the HF attention module computes them (fused c_attn for GPT-2;
    q_proj/k_proj + rotary for Llama), for every slot of ``state``."""
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb, repeat_kv

    b, n = state.alive.shape
    if model.config.model_type == "gpt2":
        block = model.transformer.h[i]
        q, k, _ = block.attn.c_attn(block.ln_1(state.hidden)).split(block.attn.split_size, dim=2)
        shape = (b, n, -1, block.attn.head_dim)
        return q.view(shape).transpose(1, 2), k.view(shape).transpose(1, 2)
    layer = model.model.layers[i]
    x = layer.input_layernorm(state.hidden)
    shape = (b, n, -1, layer.self_attn.head_dim)
    q, k = layer.self_attn.q_proj(x).view(shape).transpose(1, 2), layer.self_attn.k_proj(x).view(shape).transpose(1, 2)
    cos, sin = model.model.rotary_emb(x, position_ids=state.positions)
    q, k = apply_rotary_pos_emb(q, k, cos, sin)
    return q, repeat_kv(k, layer.self_attn.num_key_value_groups)


def test_key_and_row_query_projections_match_the_attention_module(family_model):
    """The adapters' key-only and row-only projections (cheap decision features) equal what the HF
    attention module computes, on a reduced state with shifted positions."""
    _, model = family_model
    bb = wrap(model)
    ids, mask = _padded_batch()
    actions = torch.full_like(ids, Action.KEEP)
    actions[:, 1:4] = Action.DROP
    state = apply_actions(bb.embed(ids, mask), actions, causal=True)
    q, k = _reference_query_key(model, 1, state)
    rows = torch.tensor([[0, 3, 5], [1, 1, 2], [4, 0, 2], [6, 5, 1]])
    expected_q = torch.gather(q, 2, rows[:, None, :, None].expand(-1, q.shape[1], -1, q.shape[-1]))
    torch.testing.assert_close(bb.key_states(1, state), k, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(bb.query_states(1, state, rows), expected_q, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(bb.attention_rows(1, state, rows, keys=k), bb.attention_rows(1, state, rows), atol=1e-6, rtol=1e-5)
