"""Query-agnostic reduction is two-phase on causal models (rltr.inference.two_phase): the context is reduced
alone, the tail runs on its reduced cache. The same holds in evaluation, ``generate()`` and the env reward."""

import pytest
import torch

from rltr.core.ops import Action
from rltr.inference import PromptHints, TokenReduction
from rltr.reducers import get_reducer
from rltr.reducers.base import Decision, Reducer
from tests.conftest import FAMILIES, tiny_gpt2


class DropEveryOther(Reducer):
    """Drops the even context positions, whatever the layer: a fixed, layer-independent choice."""

    name = "drop_even"

    def decide(self, ctx):
        actions = torch.where(ctx.state.positions % 2 == 0, int(Action.DROP), int(Action.KEEP))
        return Decision(actions)


def _prompts(vocab: int, b: int = 3, n: int = 24, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab, (b, n), generator=g)
    lengths = torch.tensor([n, n - 3, n - 5])[:b]
    mask = (torch.arange(n)[None, :] < lengths[:, None]).long()
    context_len = lengths - 4  # a 4-token tail per row
    return ids * mask, mask, context_len


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_keeping_everything_two_phase_reproduces_the_full_model(family):
    model = FAMILIES[family]()
    ids, mask, context_len = _prompts(model.config.vocab_size)
    full = model(input_ids=ids, attention_mask=mask).logits
    with TokenReduction(model, get_reducer("random"), budget=1.0, decision_layers=[1], query_aware=False, protect_last=1):
        out = model(input_ids=ids, attention_mask=mask, reduction_hints=PromptHints(context_len=context_len)).logits
    real = mask.bool()
    torch.testing.assert_close(out[real], full[real], atol=2e-4, rtol=1e-4)


def test_drops_at_layer_0_equal_the_model_run_on_the_kept_tokens():
    """Two-phase with drops before layer 0 is the plain model on the kept context + tail at their original positions."""
    model = tiny_gpt2(n_layer=3)
    ids, mask, context_len = _prompts(model.config.vocab_size, b=1, n=20)
    with TokenReduction(model, DropEveryOther(), budget=None, decision_layers=[0], query_aware=False, protect_last=1) as patch:
        out = model(input_ids=ids, attention_mask=mask, reduction_hints=PromptHints(context_len=context_len)).logits[0]
    n, c = int(mask.sum()), int(context_len[0])
    kept = [p for p in range(c) if p % 2 == 1] + list(range(c, n))
    ref = model(input_ids=ids[:, kept], position_ids=torch.tensor([kept])).logits[0]
    tail = [kept.index(p) for p in range(c, n)]
    torch.testing.assert_close(out[c:n], ref[tail], atol=2e-4, rtol=1e-4)
    assert patch.last is not None and patch.last.layer_counts[0].tolist() == [len(kept)] * 3


def test_the_question_does_not_read_a_context_token_dropped_at_a_later_layer():
    """Decision at layer 2: the last context token is dropped there, and no kept context token comes after it, so
    in two-phase nothing the tail reads depends on it. Single-pass (the question in the same forward) it does."""
    model = tiny_gpt2(n_layer=3)
    ids, mask, context_len = _prompts(model.config.vocab_size, b=1, n=21)
    c = int(context_len[0])
    assert (c - 1) % 2 == 0  # DropEveryOther drops it
    changed = ids.clone()
    changed[0, c - 1] = changed[0, c - 1] % (model.config.vocab_size - 1) + 1

    def tail_logits(x, query_aware):
        with TokenReduction(model, DropEveryOther(), budget=None, decision_layers=[2], query_aware=query_aware, protect_last=1):
            return model(input_ids=x, attention_mask=mask, reduction_hints=PromptHints(context_len=context_len)).logits[0, c:]

    torch.testing.assert_close(tail_logits(ids, False), tail_logits(changed, False), atol=1e-6, rtol=0)
    assert (tail_logits(ids, True) - tail_logits(changed, True)).abs().max() > 1e-4


def test_random_at_6_of_128_tokens_fails_at_layer_1_as_at_layer_0():
    from rltr.backbones import load_backbone
    from rltr.evaluation.sweep import evaluate
    from rltr.tasks import get_task

    bb = load_backbone("default")
    task = get_task("retrieval", context_len=128, n_keys=8, n_values=8, n_pairs=6)
    kw = dict(n_examples=100, batch_size=100, query_aware=False, progress=False)
    (at0,) = evaluate(bb, [task], ["random"], [6 / 128], decision_layers=[0], **kw)
    (at1,) = evaluate(bb, [task], ["random"], [6 / 128], decision_layers=[1], **kw)
    (full,) = evaluate(bb, [task], ["identity"], [None], **kw)
    assert full.accuracy > 0.9
    assert at0.accuracy < 0.5, at0
    assert at1.accuracy < 0.5, f"random keeps 6 of 128 context tokens yet scores {at1.accuracy:.1%} at layer 1"
    assert at1.compute_fraction < 0.35  # the tail is charged at every layer, the context only up to layer 1


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_generate_after_a_two_phase_prompt(family):
    model = FAMILIES[family]()
    ids, mask, _ = _prompts(model.config.vocab_size)
    ids, mask = ids.flip(1), mask.flip(1)  # left-padded, as generate() wants (the token order is arbitrary)
    kw = dict(max_new_tokens=5, do_sample=False, pad_token_id=0)
    plain = model.generate(input_ids=ids, attention_mask=mask, **kw)
    with TokenReduction(model, get_reducer("random"), budget=1.0, decision_layers=[1], query_aware=False, protect_last=2):
        same = model.generate(input_ids=ids, attention_mask=mask, **kw)
    assert torch.equal(plain, same)
    with TokenReduction(model, get_reducer("norm:hidden"), budget=0.5, decision_layers=[1], query_aware=False, protect_last=2) as p:
        reduced = model.generate(input_ids=ids, attention_mask=mask, **kw)
    assert reduced.shape == plain.shape
    assert p.last is not None
    kept = p.last.n_kept
    assert (kept < mask.sum(1)).all()


def test_a_prompt_with_no_context_before_its_tail_is_refused():
    model = tiny_gpt2()
    with TokenReduction(model, get_reducer("random"), budget=0.5, query_aware=False, protect_last=4):
        with pytest.raises(ValueError, match="no context"):
            model(input_ids=torch.tensor([[5, 6, 7, 8]]))


@pytest.mark.parametrize("method", ["norm:hidden", "attn_topk"])
def test_env_reward_scores_what_evaluation_scores(method):
    """The env (two-phase tail at the episode's end) and evaluation (two-phase prompt pass) give the same score and
    token counts for the same decisions, query-agnostic at decision layers past 0. (Compute fractions differ by the
    decisions' own cost: the env charges the policy's features, evaluation the heuristic's computation.)"""
    from rltr.backbones import load_backbone
    from rltr.config import EnvConfig
    from rltr.envs.engine import EpisodeEngine
    from rltr.evaluation.run import run_method
    from rltr.tasks import get_task

    bb = load_backbone("default")
    task = get_task("retrieval", context_len=32, n_keys=8, n_values=8, n_pairs=4)
    settings = EnvConfig(decision_layers=[1, 2], budget=0.5, query_aware=False, max_tokens=64, compute_weight=0.0)
    engine = EpisodeEngine(bb, task, settings)
    engine.start(task.examples(32, seed=3))
    red = get_reducer(method)
    while not engine.done:
        engine.step(engine.expert_actions(red, 0.5))
    res = engine.result()
    ev = run_method(bb, task, red, 0.5, n_examples=32, seed=3, decision_layers=[1, 2], batch_size=32, query_aware=False)
    assert 0 < ev.accuracy < 1  # neither trivial: the comparison can fail
    assert abs(float(res.score.mean()) - ev.accuracy) < 1e-6
    assert abs(float(res.kept_ratio.mean()) - ev.kept_ratio) < 1e-6


@pytest.mark.parametrize("query_aware", [True, False])
def test_fidelity_reward_keeping_everything_is_one_in_both_modes(query_aware):
    """The fidelity reward compares with the full model (tail included, two-phase or not): keeping every token
    reproduces it (exp(-KL) = 1), and a heavy cut does not."""
    from rltr.backbones import load_backbone
    from rltr.config import EnvConfig
    from rltr.envs.engine import EpisodeEngine
    from rltr.tasks import get_task

    bb = load_backbone("default")
    task = get_task("retrieval", context_len=32, n_keys=8, n_values=8, n_pairs=4)
    scores = []
    for budget in (1.0, 0.1):
        settings = EnvConfig(decision_layers=[1], budget=budget, query_aware=query_aware, max_tokens=64, score="fidelity_kl")
        engine = EpisodeEngine(bb, task, settings)
        engine.start(task.examples(16, seed=5))
        engine.step(engine.expert_actions(get_reducer("random"), budget))
        scores.append(float(engine.result().score.mean()))
    assert scores[0] == pytest.approx(1.0, abs=1e-4)
    assert scores[1] < 0.99
