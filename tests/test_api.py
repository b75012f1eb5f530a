"""The public API at the package root: every name in ``rltr.__all__`` resolves, and the quickstart works."""

import pytest
import torch

import rltr


@pytest.mark.parametrize("name", rltr.__all__)
def test_every_public_name_resolves(name):
    assert getattr(rltr, name) is not None


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        rltr.nope  # noqa: B018


def test_quickstart_on_a_plain_hf_model():
    backbone = rltr.load_backbone("default")
    model, ids = backbone.model, torch.randint(4, 60, (1, 40))
    full = model.generate(ids, do_sample=False, max_new_tokens=3, pad_token_id=0)
    with rltr.get_reducer("identity")(model):
        same = model.generate(ids, do_sample=False, max_new_tokens=3, pad_token_id=0)
    with rltr.get_reducer("attn_topk")(model, budget=0.5, protect_last=4) as reduction:
        model.generate(ids, do_sample=False, max_new_tokens=3, pad_token_id=0)
    assert torch.equal(full, same)
    assert int(reduction.last.n_kept.max()) == 20
