"""Token reduction inside a plain HF model: ``with reducer(model, ...): model.generate(...)``."""

import argparse

import pytest
import torch

from rltr.backbones import adapter_for, config_hash, wrap
from rltr.core.decider import Decider
from rltr.core.ops import Action
from rltr.inference.hf_compat import CACHE_NAMES, cache_kwargs, output_cache
from rltr.reducers import get_reducer
from rltr.reducers.base import Decision, Reducer
from tests.conftest import ATTN_IMPLEMENTATIONS, FAMILIES, tiny_gpt2, tiny_mistral, tiny_task_gpt2

HEURISTICS = ["tome", "attn_topk", "h2o", "norm", "window", "random"]
GEN = dict(do_sample=False, max_new_tokens=6, min_new_tokens=6, pad_token_id=0)


def _ids(n=24, batch=1, seed=0):
    return torch.randint(1, 100, (batch, n), generator=torch.Generator().manual_seed(seed))


def _router_dir(model, path, decision_layers=(1,), stale_hash=None):
    """A freshly initialised (untrained) router folder for ``model``, in the format of ``rltr export``."""
    from rltr.core.features import FeatureSpec
    from rltr.policies.router import FORMAT, FORMAT_VERSION, Router

    family, real_hash = adapter_for(model).family, config_hash(model.config)  # no wrap(): it would freeze the model
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "features": FeatureSpec().to_dict(),
        "network": {"type": "TokenActor", "hidden": 16},
        "decision_layers": list(decision_layers),
        "query_aware": True,
        "backbone": {"family": family, "name": "tiny", "config_hash": stale_hash or real_hash},
        "actions": {a.name: int(a) for a in Action},
    }
    torch.manual_seed(0)
    return str(Router(config).save_pretrained(path))


class Fixed(Reducer):
    """Drops positions 3, 5, 7 and merges 2, 10, 11 (into their most similar later kept token)."""

    name = "fixed"

    def decide(self, ctx):
        pos = ctx.state.positions
        actions = torch.full_like(pos, Action.KEEP)
        actions[(pos == 3) | (pos == 5) | (pos == 7)] = Action.DROP
        actions[(pos == 2) | (pos == 10) | (pos == 11)] = Action.MERGE
        return Decision(actions)


def test_patch_is_undone_also_after_an_exception(family_model):
    _, model = family_model
    ids = _ids()
    with torch.no_grad():
        before = model(ids).logits
    for raise_inside in (False, True):
        model.train()  # the adapter switches to eval mode and freezes weights: both must come back
        try:
            with get_reducer("window")(model, budget=0.5, protect_last=4):
                assert "forward" in vars(model) and not model.training
                with torch.no_grad():
                    reduced = model(ids).logits
                if raise_inside:
                    raise RuntimeError("boom")
        except RuntimeError:
            pass
        assert "forward" not in vars(model) and model.training
        assert all(p.requires_grad for p in model.parameters())
        model.eval()  # dropout off to compare outputs
        with torch.no_grad():
            assert torch.equal(model(ids).logits, before)
    assert not torch.allclose(reduced, before)  # the patch did act


@pytest.mark.parametrize("attn", ATTN_IMPLEMENTATIONS)
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_identity_generate_matches_the_plain_model(family, attn, tmp_path):
    """The identity reducer, and a router at budget 1.0 (it keeps every token), give the plain model's tokens."""
    model = FAMILIES[family](attn=attn)
    ids = _ids(30)
    plain = model.generate(ids, **GEN)
    router = get_reducer(f"router:{_router_dir(model, tmp_path)}")
    for reducer, budget in ((get_reducer("identity"), None), (router, 1.0)):
        with reducer(model, budget=budget, protect_last=4) as red:
            patched = model.generate(ids, **GEN)
        assert torch.equal(plain, patched)
        assert red.last.n_kept.tolist() == [30]


@pytest.mark.parametrize("method", HEURISTICS + ["router"])
def test_reduced_generate_keeps_a_shorter_cache_and_the_protected_tail(family_model, method, tmp_path):
    _, model = family_model
    reducer = get_reducer(f"router:{_router_dir(model, tmp_path)}" if method == "router" else method)
    ids = _ids(40)
    with reducer(model, budget=0.25, protect_last=5, protect_first=1) as red:
        prefill = model(ids)
        out = model.generate(ids, return_dict_in_generate=True, **GEN)
    lengths = {layer.keys.shape[2] for layer in output_cache(prefill).layers}
    assert lengths == {10}  # ceil(40 * 0.25) at every layer
    assert out.sequences.shape == (1, 46)
    assert output_cache(out).get_seq_length() == 10 + 5  # the last generated token is not cached yet
    kept = set(red.last.positions[red.last.alive].tolist())
    assert {0, 35, 36, 37, 38, 39} <= kept
    assert prefill.logits.shape == (1, 40, model.config.vocab_size)


@pytest.mark.parametrize("cache_name", CACHE_NAMES)
def test_decode_with_reduced_cache_matches_the_layer_by_layer_model(family_model, cache_name):
    """Decision at layer 0: every layer runs on the reduced prompt, so each generated token's logits must
    equal the adapter run on prompt + generated tokens with the same decision (merged tokens' log-size
    bias persisting in the cache, positions continuing from the original length)."""
    _, model = family_model
    ids, new = _ids(20), torch.tensor([[17, 23]])
    with Fixed()(model, budget=None, protect_last=2, decision_layers=[0]) as red:
        out = model(ids)
        # the cache under either of transformers' names (``cache`` from 5.24, ``past_key_values`` before) is a decode step
        steps = [model(new[:, :1], **{cache_name: output_cache(out)})]
        steps.append(model(new[:, 1:], **{cache_name: output_cache(steps[0])}))
    assert red.last.n_kept.tolist() == [14] and red.last.sizes.max() > 1
    backbone = wrap(model)
    for k, step in enumerate(steps, start=1):
        x = torch.cat([ids, new[:, :k]], 1)
        protected = torch.arange(x.shape[1])[None] >= 18
        decide = Decider(Fixed(), backbone, [0], None, context_len=torch.tensor([18]))
        ref = backbone.forward_logits(x, protected=protected, decide=decide, decision_layers=[0])[:, -1]
        torch.testing.assert_close(step.logits[:, -1], ref, atol=1e-5, rtol=1e-5)


def test_left_padded_batch_matches_single_prompts(family_model):
    _, model = family_model
    a, b = _ids(30, seed=1), _ids(22, seed=2)
    batch = torch.zeros(2, 30, dtype=torch.long)
    mask = torch.zeros(2, 30, dtype=torch.long)
    batch[0], mask[0] = a[0], 1
    batch[1, 8:], mask[1, 8:] = b[0], 1
    with get_reducer("norm")(model, budget=0.5, protect_last=3) as red:
        both = model.generate(batch, attention_mask=mask, **GEN)
        assert red.last.n_kept.tolist() == [15, 11]
        one, two = model.generate(a, **GEN), model.generate(b, **GEN)
    assert torch.equal(both[0, 30:], one[0, 30:]) and torch.equal(both[1, 30:], two[0, 22:])


def test_sliding_window_generate_inside_the_window_and_a_clear_error_past_it():
    """Mistral's sliding-window cache layers are filled while prompt + generated tokens stay shorter than
    the window (it then masks nothing); past it a reduced cache cut by slot cannot give sliding semantics,
    so that is refused naming the window. Without a cache the adapter applies the window itself."""
    model = tiny_mistral(sliding_window=40)
    ids = _ids(30)
    plain = model.generate(ids, **GEN)
    with get_reducer("identity")(model, budget=None, protect_last=4):
        out = model.generate(ids, return_dict_in_generate=True, **GEN)
    assert torch.equal(plain, out.sequences)
    assert {type(layer).__name__ for layer in output_cache(out).layers} == {"DynamicSlidingWindowLayer"}
    long = _ids(48)
    with torch.no_grad():
        full = model(long).logits
    with get_reducer("window")(model, budget=0.5, protect_last=4):
        with pytest.raises(ValueError, match=r"40 tokens \(prompt \+ generated\) reach the model.s sliding window of 40 tokens"):
            model.generate(ids, **{**GEN, "max_new_tokens": 12, "min_new_tokens": 12})
        with pytest.raises(ValueError, match="48 tokens .* sliding window of 40 tokens"):
            model(long)
    with get_reducer("identity")(model, budget=None, protect_last=4):
        torch.testing.assert_close(model(long, use_cache=False).logits, full, atol=1e-5, rtol=1e-5)


def test_bad_inputs_raise_clear_value_errors(tmp_path):
    from transformers import OPTConfig, OPTForCausalLM

    model = tiny_gpt2()
    window = get_reducer("window")
    with pytest.raises(ValueError, match="shorter than the protected tail"):
        with window(model, budget=0.5, protect_last=8):
            model(_ids(5))
    assert "forward" not in vars(model)
    other = _router_dir(FAMILIES["llama"](), tmp_path / "llama_router")
    with pytest.raises(ValueError, match="config hash"):
        with get_reducer(f"router:{other}")(model, budget=0.5):
            pass
    mismatch = _router_dir(model, tmp_path / "stale", stale_hash="0123456789abcdef")
    with pytest.raises(ValueError, match="0123456789abcdef"):
        with get_reducer(f"router:{mismatch}")(model, budget=0.5):
            pass
    assert "forward" not in vars(model) and all(p.requires_grad for p in model.parameters())
    opt = OPTForCausalLM(OPTConfig(num_hidden_layers=1, hidden_size=32, num_attention_heads=2, ffn_dim=64, word_embed_proj_dim=32))
    with pytest.raises(ValueError, match="'opt'"):
        window(opt, budget=0.5)
    for kw, needle in [({"budget": 0.0}, "budget"), ({"protect_last": 0}, "protect_last"), ({"decision_layers": [7]}, "out of range")]:
        with pytest.raises(ValueError, match=needle):
            with window(model, **kw):
                pass
    with window(model, budget=0.5), pytest.raises(ValueError, match="already under token reduction"):
        with window(model, budget=0.5):
            pass


@pytest.fixture(scope="module")
def vocab_model_dir(tmp_path_factory):
    from rltr.tasks.vocab import build_tokenizer

    path = tmp_path_factory.mktemp("tiny_vocab_model")
    model = tiny_task_gpt2(n_layer=2)
    model.save_pretrained(path)
    build_tokenizer().save_pretrained(path)
    return path


def _apply(argv):
    from rltr.cli.apply import add_apply

    parser = argparse.ArgumentParser()
    add_apply(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["apply", *argv])
    return args.func(args)


def test_cli_apply_prints_both_outputs(vocab_model_dir, capsys, tmp_path):
    from transformers import AutoModelForCausalLM

    model = ["--model", str(vocab_model_dir), "--max-new-tokens", "3"]
    assert _apply(["--method", "tome", "--task", "retrieval", *model]) == 0
    out = capsys.readouterr().out
    assert "full:" in out and "reduced:" in out and "65/130 prompt tokens kept" in out and "expected answer" in out
    router = _router_dir(AutoModelForCausalLM.from_pretrained(vocab_model_dir), tmp_path / "r")
    assert _apply(["--router", router, "--prompt", "<bos> f1 f2 k3v7 f5 f6 <sep> k3", "--protect-last", "2", *model]) == 0
    out = capsys.readouterr().out
    assert "4/8 prompt tokens kept" in out and "full:    '" in out
    with pytest.raises(ValueError, match="shorter than the protected tail"):
        _apply(["--method", "window", "--prompt", "<bos> f1", "--protect-last", "3", *model])


def test_prompt_hints_set_per_row_tails_protection_and_relevance(family_model):
    """reduction_hints (how evaluation runs task examples): each row's tail starts at its context_len,
    hinted tokens survive, the oracle reads the hinted relevant tokens; right padding as in a task batch."""
    from rltr.inference import PromptHints

    _, model = family_model
    ids, mask = _ids(24, batch=2), torch.ones(2, 24, dtype=torch.long)
    mask[1, 20:] = 0
    context_len = torch.tensor([16, 12])
    protected = torch.zeros(2, 24, dtype=torch.bool)
    protected[:, 0] = True
    relevant = torch.zeros(2, 24, dtype=torch.bool)
    relevant[0, 5], relevant[1, 9] = True, True
    hints = PromptHints(context_len, protected, relevant)
    with get_reducer("oracle")(model, budget=None, protect_last=1, decision_layers=[1]) as red:
        model(ids, attention_mask=mask, use_cache=False, reduction_hints=hints)
    kept = [set(red.last.positions[i][red.last.alive[i]].tolist()) for i in range(2)]
    assert kept[0] == {0, 5, *range(16, 24)} and kept[1] == {0, 9, *range(12, 20)}
    n_later = model.config.num_hidden_layers - 1
    assert red.last.layer_counts.tolist() == [[24] + [10] * n_later, [20] + [10] * n_later]
    with get_reducer("window")(model, budget=0.5, protect_last=1) as red:
        out = model(ids, use_cache=True)
        with pytest.raises(ValueError, match="continues a cache"):
            model(ids[:, :1], **cache_kwargs(model, output_cache(out)), reduction_hints=hints)
        with pytest.raises(ValueError, match="shape"):
            model(ids, reduction_hints=PromptHints(protected=protected[:, :5]))


def test_early_layer_cache_holds_size_weighted_merges(family_model):
    """Decision at layer 1 (the default): layer 0 ran on every token, so its cache slot for a merge group
    holds the size-weighted mean of the group's layer-0 keys/values (it used to hold the destination's own,
    read with log(group size): a bias towards one member). Groups are recomputed here with ops' matching."""
    from rltr.core.ops import merge_targets

    _, model = family_model
    ids = _ids(20)
    with Fixed()(model, budget=None, protect_last=2, decision_layers=[1]) as red:
        cache = output_cache(model(ids))
    full = output_cache(model(ids, use_cache=True)).layers[0]  # the plain model's layer 0: every token
    backbone = wrap(model)
    pos = torch.arange(20)[None]
    state = backbone.run_layers(backbone.embed(ids, protected=pos >= 18), 0, 1)  # entering the decision
    merging = (pos == 2) | (pos == 10) | (pos == 11)
    kept = ~merging & ~((pos == 3) | (pos == 5) | (pos == 7))
    dst = merge_targets(state, merging, kept & (pos < 18), causal=True)[0]
    final = [p for p in range(20) if kept[0, p]]
    assert red.last.positions[0][red.last.alive[0]].tolist() == final
    groups = [[p, *(merging[0] & (dst == p)).nonzero()[:, 0].tolist()] for p in final]
    for name in ("keys", "values"):
        kv = getattr(full, name)[0]  # (H_kv, N, d)
        want = torch.stack([kv[:, g].mean(1) for g in groups], dim=1)  # (H_kv, N_f, d): every size is 1 at layer 0
        torch.testing.assert_close(getattr(cache.layers[0], name)[0], want, atol=1e-5, rtol=1e-5)
    assert red.last.sizes.max() > 1


@pytest.mark.parametrize("use_cache", [False, True])
def test_buckets_give_the_unbucketed_outputs(family_model, use_cache):
    """Rows that keep very different numbers of tokens run in buckets of similar length: the same logits and the
    same cache as one padded batch, and the buckets are really smaller."""
    from rltr.inference.buckets import plan_buckets

    _, model = family_model
    ids = _ids(40, batch=4, seed=3)

    class Uneven(Reducer):
        """Row 0 keeps everything, the others keep only their last 3 tokens."""

        name = "uneven"

        def decide(self, ctx):
            keep = torch.ones_like(ctx.state.alive)
            keep[1:] = ctx.state.positions[1:] >= 37
            return Decision(torch.where(keep, Action.KEEP, Action.DROP).long())

    outs = []
    for bucket in (False, True):
        with Uneven()(model, budget=None, protect_last=3, decision_layers=[1], bucket=bucket) as red:
            out = model(ids, use_cache=use_cache)
            step = model(torch.tensor([[5]] * 4), **cache_kwargs(model, output_cache(out))).logits if use_cache else None
        outs.append((out.logits, step, red.last.n_kept))
    assert outs[0][2].tolist() == outs[1][2].tolist() == [40, 3, 3, 3]
    assert len(plan_buckets(outs[1][2])) == 2
    torch.testing.assert_close(outs[1][0], outs[0][0], atol=1e-5, rtol=1e-5)
    if use_cache:
        torch.testing.assert_close(outs[1][1], outs[0][1], atol=1e-5, rtol=1e-5)
