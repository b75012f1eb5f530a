"""The public API at the package root: every name in ``rltr.__all__`` resolves, and the quickstart works."""

import pytest
import torch

import rltr
import rltr.zoo


@pytest.mark.parametrize("name", rltr.__all__)
def test_every_public_name_resolves(name):
    assert getattr(rltr, name) is not None


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        rltr.nope  # noqa: B018


def test_quickstart_on_a_plain_hf_model():
    """The README's quickstart through the public API: identity reproduces the plain generate, a heuristic
    keeps half the prompt and still answers (the prompt is a real task prompt, not random ids)."""
    from transformers import AutoTokenizer

    backbone = rltr.load_backbone("default")
    model = backbone.model
    tok = AutoTokenizer.from_pretrained(rltr.zoo.model_path("default"))
    prompt = "<bos> <retrieval> f2 f12 k2v2 f10 f7 k3v5 f1 f9 f15 k7v2 f3 f13 k5v2 f0 f5 k1v0 f14 f8 k6v1 f4 f11 <sep> k3"
    ids = tok(prompt, return_tensors="pt").input_ids
    full = model.generate(ids, do_sample=False, max_new_tokens=1)
    with rltr.get_reducer("identity")(model):
        same = model.generate(ids, do_sample=False, max_new_tokens=1)
    with rltr.get_reducer("attn_topk")(model, budget=0.5, protect_last=8) as reduction:
        reduced = model.generate(ids, do_sample=False, max_new_tokens=1)
    assert torch.equal(full, same)
    assert tok.decode(reduced[0, -1:]).strip() == "v5"
    assert int(reduction.last.n_kept.max()) == 13
