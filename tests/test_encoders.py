"""Encoder families (ViT, BERT): exact identity against the HF models (tiny random ones and real MiniLM
weights), non-causal merge rules, the HF forward under ``with reducer(model)``, and clear errors."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from rltr.backbones import wrap
from rltr.core.compute import ArchSpec, forward_flops
from rltr.core.decider import Decider
from rltr.core.decisions import DecisionContext
from rltr.core.ops import Action, TokenState, apply_actions, scatter_to_positions
from rltr.reducers import get_reducer
from tests.conftest import ATTN_IMPLEMENTATIONS, minilm_path, tiny_bert, tiny_vit

HEURISTICS = ["tome", "attn_topk", "attn_topk:merge", "norm", "norm:hidden", "random"]


def images(b=5, seed=0):
    return torch.randn(b, 1, 16, 16, generator=torch.Generator().manual_seed(seed))


def padded_ids(left: bool, vocab=101, seed=0):
    """(4, 14) ids with rows of 14, 9, 4 and 11 real tokens, padded on the left or the right."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab, (4, 14), generator=g)
    mask = torch.zeros_like(ids)
    for i, n in enumerate([14, 9, 4, 11]):
        if left:
            mask[i, 14 - n :] = 1
        else:
            mask[i, :n] = 1
    return ids * mask, mask


@pytest.mark.parametrize("attn", ATTN_IMPLEMENTATIONS)
def test_vit_identity_is_exact_batched(attn):
    model = tiny_vit(attn=attn)
    x = images()
    ref = model(pixel_values=x).logits
    bb = wrap(model)
    state = bb.embed_images(x)
    assert state.protected[:, 0].all() and state.protected.sum() == 5 and state.alive.shape == (5, 17)
    assert (bb.class_logits(bb.run(state)) - ref).abs().max() <= 1e-4
    with get_reducer("identity")(model, budget=None) as red:
        out = model(pixel_values=x)
    assert (out.logits - ref).abs().max() <= 1e-4 and red.last.n_kept.tolist() == [17] * 5


@pytest.mark.parametrize("attn", ATTN_IMPLEMENTATIONS)
def test_vit_layers_do_not_see_dead_slots(attn):
    """Every ViT block under a mask (transformers 5.2's blocks take none: the adapter runs them step by step)
    gives the live slots what the block gives them with the dead slots cut off."""
    bb = wrap(tiny_vit(attn=attn))
    full = bb.embed_images(images())
    live = 11
    alive = full.alive & (torch.arange(17) < live)
    dead = TokenState(full.hidden, full.positions, full.sizes * alive, alive, full.protected)
    cut = TokenState.from_hidden(full.hidden[:, :live], protected=full.protected[:, :live])
    for i in range(bb.n_layers):
        dead, cut = bb.run_layer(i, dead), bb.run_layer(i, cut)
        assert (dead.hidden[:, :live] - cut.hidden).abs().max() <= 1e-5


@pytest.mark.parametrize("attn", ATTN_IMPLEMENTATIONS)
@pytest.mark.parametrize("left", [False, True])
def test_bert_identity_is_exact_on_a_padded_batch(attn, left):
    model = tiny_bert(attn=attn)
    ids, mask = padded_ids(left)
    types = (torch.arange(14) >= 7).long().expand(4, 14)
    ref = model(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
    bb = wrap(model)
    state = bb.embed(ids, mask, token_type_ids=types)
    assert state.protected.sum(1).tolist() == [2, 2, 2, 2]  # [CLS] and [SEP]: first and last real token
    out = bb.run(state)
    assert torch.allclose(scatter_to_positions(out.hidden, out, 14) * mask[..., None], ref * mask[..., None], atol=1e-5)
    with get_reducer("identity")(model, budget=None):
        patched = model(input_ids=ids, attention_mask=mask, token_type_ids=types)
    assert ((patched.last_hidden_state - ref) * mask[..., None]).abs().max() <= 1e-5
    real_first = mask[:, 0].bool()  # BertModel pools column 0, a pad token's state in left-padded rows: compare the others
    pooled = model(input_ids=ids, attention_mask=mask, token_type_ids=types).pooler_output
    assert torch.allclose(patched.pooler_output[real_first], pooled[real_first], atol=1e-5)


def test_minilm_identity_is_exact_with_real_weights():
    from transformers import AutoModel, AutoTokenizer

    path = minilm_path()
    model, tok = AutoModel.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    texts = [
        "A cat sat on the mat.",
        "Token merging started on vision transformers, and learned token selection on BERT.",
        "Short one",
        "The quick brown fox jumps over the lazy dog near the riverbank at dawn.",
    ]
    batch = tok(texts, padding=True, return_tensors="pt")
    assert int(batch["attention_mask"].sum(1).min()) < batch["input_ids"].shape[1]  # a padded batch
    ref = model(**batch).last_hidden_state
    mask = batch["attention_mask"][..., None]
    with get_reducer("identity")(model, budget=None):
        out = model(**batch).last_hidden_state
    assert ((out - ref) * mask).abs().max() <= 1e-4
    bb = wrap(model)
    pooled = bb.mean_pooled(bb.run(bb.embed(batch["input_ids"], batch["attention_mask"])))
    assert torch.allclose(pooled, (ref * mask).sum(1) / mask.sum(1), atol=1e-5)  # sentence-transformers' mean pooling


def test_non_causal_merges_go_to_any_kept_token():
    # slot 3 merges into slot 1 (an earlier token), which a causal model forbids
    hidden = torch.randn(1, 5, 8)
    state = TokenState.from_hidden(hidden)
    actions = torch.tensor([[Action.KEEP, Action.KEEP, Action.KEEP, Action.MERGE, Action.KEEP]])
    dst = torch.tensor([[-1, -1, -1, 1, -1]])
    out = apply_actions(state, actions, causal=False, merge_dst=dst)
    assert out.positions[0].tolist() == [0, 1, 2, 4] and out.sizes[0].tolist() == [1, 2, 1, 1]
    assert torch.allclose(out.hidden[0, 1], (hidden[0, 1] + hidden[0, 3]) / 2)
    with pytest.raises(AssertionError, match="invalid merge destinations"):
        apply_actions(state, actions, causal=True, merge_dst=dst)
    # the last token can merge (into any kept one) only when non-causal; a protected CLS is never merged away
    bb = wrap(tiny_vit())
    cls = torch.zeros(1, 5, dtype=torch.bool)
    cls[0, 0] = True
    state = TokenState.from_hidden(torch.randn(1, 5, 64), protected=cls)
    ctx = DecisionContext(backbone=bb, layer=1, state=state, n_keep=torch.tensor([3]))
    kept = torch.tensor([[True, True, False, False, False]])
    assert ctx.can_merge(kept)[0].tolist() == [False, False, True, True, True]
    assert ctx.query_rows()[0].tolist() == [True, False, False, False, False]  # EViT's query: CLS


@pytest.mark.parametrize("spec", HEURISTICS)
@pytest.mark.parametrize("family", ["vit", "bert"])
def test_heuristics_keep_the_budget_and_the_summary_tokens(spec, family):
    if family == "vit":
        model = tiny_vit()
        x = images()
        call = {"pixel_values": x}
    else:
        model = tiny_bert()
        ids, mask = padded_ids(left=False)
        call = {"input_ids": ids, "attention_mask": mask}
    with get_reducer(spec)(model, budget=0.5, decision_layers=[1]) as red:
        out = model(**call)
    n = red.last.trace.n_original
    assert red.last.trace.tokens_per_layer[:, 2].tolist() == torch.ceil(n * 0.5).long().tolist()
    bb = wrap(model)
    first = red.last.positions[:, 0]
    assert (first == 0).all()  # CLS ([CLS] for BERT) survives at slot 0
    if family == "vit":
        assert out.logits.shape == (5, 10)
    else:
        assert out.last_hidden_state.shape == (4, 14, 64) and out.pooler_output.shape == (4, 64)
        assert red.last.token_mask[mask.bool()].sum() >= red.last.n_kept.sum()  # merged columns stay represented
        last_real = mask.sum(1) - 1
        assert red.last.token_mask[torch.arange(4), last_real].all()  # [SEP] survives
    assert bb.causal is False


def test_tome_r_merges_r_tokens_before_every_decision_layer():
    model = tiny_vit(n_layer=4)
    with get_reducer("tome:r=3")(model) as red:  # no budget: ToMe sets its own counts; every layer by default
        model(pixel_values=images())
    assert red.decision_layers == [0, 1, 2, 3] and red.budget is None
    assert red.last.trace.tokens_per_layer[0].tolist() == [14, 11, 8, 5]
    assert red.last.sizes.sum(1).tolist() == [17.0] * 5  # merges only: every original token is still counted
    with get_reducer("tome:r=20")(model, decision_layers=[1]) as red:  # at most half of the mergeable tokens
        model(pixel_values=images())
    assert red.last.trace.tokens_per_layer[0].tolist() == [17, 9, 9, 9]


def test_merges_keep_the_mean_pool_of_the_tokens_they_stand_for():
    model = tiny_bert(n_layer=1)
    ids, mask = padded_ids(left=False)
    bb = wrap(model)
    state = bb.embed(ids, mask)
    decide = Decider(get_reducer("tome:r=2"), bb, [0])  # merges only (budget mode may have to drop)
    merged = decide(0, state)
    assert torch.allclose(bb.mean_pooled(merged), bb.mean_pooled(state), atol=1e-5)  # before any layer: exact


def test_encoder_errors_are_one_clear_line():
    vit, bert = tiny_vit(), tiny_bert()
    with pytest.raises(ValueError, match=r"shape \(2, 3, 16, 16\).*expected \(batch, 1, 16, 16\)"):
        wrap(vit).embed_images(torch.zeros(2, 3, 16, 16))
    with get_reducer("tome")(vit), pytest.raises(ValueError, match=r"shape \(2, 16, 16\)"):
        vit(pixel_values=torch.zeros(2, 16, 16))
    assert "forward" not in vars(vit)
    with pytest.raises(ValueError, match="takes images"):
        wrap(vit).embed(torch.zeros(1, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="takes token ids, not images"):
        wrap(bert).embed_images(torch.zeros(1, 1, 16, 16))
    for spec in ("window", "h2o"):
        with pytest.raises(ValueError, match="not applicable to encoders"), get_reducer(spec)(bert):
            pass
    with pytest.raises(ValueError, match="budget none"), get_reducer("tome:r=2")(vit, budget=0.5):
        pass
    with get_reducer("tome")(bert), pytest.raises(ValueError, match="output_attentions is not supported"):
        bert(input_ids=torch.ones(1, 5, dtype=torch.long), output_attentions=True)


@pytest.mark.parametrize("family", ["vit", "bert"])
def test_analytic_flops_match_measured(family):
    model = tiny_vit() if family == "vit" else tiny_bert()
    model.set_attn_implementation("eager")
    call = {"pixel_values": images(2)} if family == "vit" else {"input_ids": torch.randint(1, 101, (2, 17))}
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(**call)
    spec = ArchSpec.from_config(model.config)
    head = 1 if family == "vit" else 0  # ViT's classifier on CLS; BertModel's pooler is one D x D matmul, left out
    pooler = 0 if family == "vit" else 2 * 64 * 64
    predicted = 2 * forward_flops(spec, [17] * spec.n_layers, n_head_tokens=head) + 2 * pooler
    patch = 2 * 16 * 16 * 64 if family == "vit" else 0  # ViT's patch embedding (a conv), left out of the model
    assert abs(predicted + 2 * patch - counter.get_total_flops()) / counter.get_total_flops() < 0.05
