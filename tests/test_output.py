"""Output-length pieces: the chain task's verbose completions and scoring, the reward, generation and
its compute model, and the output-length evaluation (tiny random models; no trl needed)."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from rltr.compute import ArchSpec
from rltr.inference.hf_compat import cache_kwargs, output_cache
from rltr.output.evaluate import evaluate_output, output_flops
from rltr.output.generation import generate, generate_on
from rltr.output.reward import LengthPenalizedScore, length_penalized
from rltr.tasks import get_task
from rltr.tasks.vocab import PAD_ID, SEP_ID, ids, words_of
from tests.conftest import tiny_task_gpt2

N = 200


def _split(task, e):
    words = words_of(e.input_ids)
    return words[: e.context_len], words[e.context_len : e.context_len + 3], words[len(words) - e.n_answer :]


def test_chain_completion_scans_walks_and_ends_with_the_answer():
    task = get_task("chain", context_len=32)
    seen_lengths, kinds, scans = set(), set(), set()
    for e in task.examples(N, seed=1):
        context, question, completion = _split(task, e)
        sep, x, hops = question
        assert sep == "<sep>" and hops in ("h1", "h2") and completion[-1] == "<sep>", (question, completion)
        edges = [w for w in context if w.count("n") == 2]
        succ = {w[: w.index("n", 1)]: w[w.index("n", 1) :] for w in edges}
        answer = succ[x] if hops == "h1" else succ[succ[x]]
        assert words_of([task.target(e)]) == [answer] and completion[-2] == answer, (x, hops, completion)
        assert [words_of([e.input_ids[p]])[0] for p in e.relevant][0] in edges and len(e.relevant) == int(hops[1])
        n_scan = next(i for i, w in enumerate(completion) if i >= len(edges) or w != edges[i]) if completion[0] in edges else 0
        scans.add(n_scan)  # how many of the context's edges the completion first reads aloud, in order
        seen_lengths.add(len(completion))
        kinds.add(task.group(e))
    assert kinds == {"h1", "h2"} and min(seen_lengths) == 2 and max(seen_lengths) >= 10, seen_lengths
    assert min(scans) == 0 and max(scans) >= 5, scans  # the habit reads anywhere from none to all of the edges


def test_final_answer_is_the_last_node_before_the_end():
    task = get_task("chain")
    assert task.final_answer(ids(["n1n2", "n2", "n2n5", "n5", "<sep>", "n7"])) == ids(["n5"])[0]
    assert task.final_answer(ids(["n1n2", "n2n5"])) is None  # no answer-shaped token
    assert task.final_answer(ids(["n3"])) == ids(["n3"])[0]  # cut by a cap before the end token: still read
    assert task.score_completion(ids(["n5", "<sep>"]), ids(["n5"])[0]) == 1.0
    assert task.score_completion(ids(["n4", "<sep>", "n5"]), ids(["n5"])[0]) == 0.0


@pytest.mark.parametrize("weight", [0.01, 0.02, 0.05])
def test_reward_orders_correct_short_over_correct_long_over_wrong(weight):
    task = get_task("chain", context_len=32)
    e = task.examples(1, seed=0)[0]
    target = task.target(e)
    verbose = e.input_ids[len(e.input_ids) - e.n_answer :]
    short, long_ = [target, SEP_ID], [*ids(["n0n1"] * (task.max_completion_len - 2)), target, SEP_ID]
    wrong_short = [next(t for t in task.answer_ids if t != target), SEP_ID]
    reward = LengthPenalizedScore(task, weight)
    r = reward(prompts=None, completions=None, completion_ids=[short, verbose, long_, wrong_short], target=[target] * 4)
    assert r[0] > r[1] >= r[2] > r[3], r
    assert r[0] == pytest.approx(1 - 2 * weight) and r[3] == pytest.approx(-2 * weight)
    assert length_penalized(0.0, 0, weight) == 0.0


def test_reward_rejects_a_negative_weight_and_logs_the_task_score():
    task = get_task("chain")
    with pytest.raises(ValueError, match="length_weight must be >= 0, got -0.1"):
        LengthPenalizedScore(task, -0.1)
    logged = {}
    LengthPenalizedScore(task, 0.0)(None, None, [[5, SEP_ID]], [5], log_metric=logged.__setitem__)
    assert logged == {"task_score": 0.0}


def test_left_padded_generation_matches_one_prompt_at_a_time():
    model = tiny_task_gpt2()
    prompts = [ids(["<bos>", "<chain>", "f1", "n1n2", "<sep>", "n1", "h1"]), ids(["<bos>", "<chain>", "n1n2", "<sep>", "n1", "h2"])]
    batched, _ = generate(model, prompts, max_new_tokens=5, stop_ids=[SEP_ID], pad_id=PAD_ID)
    single = [generate(model, [p], max_new_tokens=5, stop_ids=[SEP_ID], pad_id=PAD_ID)[0][0] for p in prompts]
    assert batched == single and all(1 <= len(c) <= 5 for c in batched), batched
    stops = set(batched[0][:2])  # stopping at the first of these tokens cuts there, the stop token kept
    cut, _ = generate(model, prompts[:1], max_new_tokens=5, stop_ids=sorted(stops), pad_id=PAD_ID)
    assert cut[0] == batched[0][:1], (cut, batched)
    with pytest.raises(ValueError, match="max_new_tokens must be >= 1, got 0"):
        generate(model, prompts, max_new_tokens=0, stop_ids=[SEP_ID], pad_id=PAD_ID)


def test_generation_on_a_non_generative_task_names_it():
    with pytest.raises(ValueError, match="task 'retrieval' is scored on teacher-forced logits"):
        generate_on(tiny_task_gpt2(), get_task("retrieval"), [])


def test_output_flops_match_measured_decode_passes():
    model = tiny_task_gpt2(n_layer=2)
    model.set_attn_implementation("eager")  # CPU SDPA kernels are invisible to FlopCounterMode
    prompt = torch.randint(4, 50, (1, 20))
    with torch.no_grad():
        out = model(input_ids=prompt, use_cache=True)
        cache, token = output_cache(out), out.logits[:, -1:].argmax(-1)
        with FlopCounterMode(display=False) as counter:
            for _ in range(3):  # three decode passes -> tokens 2, 3, 4 of a 4-token completion
                out = model(input_ids=token, **cache_kwargs(model, cache), use_cache=True)
                cache, token = output_cache(out), out.logits[:, -1:].argmax(-1)
    predicted = float(output_flops(ArchSpec.from_config(model.config), torch.tensor([20]), torch.tensor([4]))[0])
    measured = counter.get_total_flops()
    assert abs(predicted - measured) / measured < 0.05, (predicted, measured)
    assert float(output_flops(ArchSpec.from_config(model.config), torch.tensor([20]), torch.tensor([1]))[0]) == 0.0


def test_evaluate_output_runs_caps_early_stop_and_a_prompt_reducer():
    task = get_task("chain", context_len=24, n_edges=4, n_nodes=6)
    base, other = tiny_task_gpt2(seed=0), tiny_task_gpt2(seed=1)
    results = evaluate_output({"base": base, "other": other}, task, n_examples=12, caps=[1, 3], reducer_spec="window",
                              budget=0.5, pad_id=PAD_ID, batch_size=8)  # fmt: skip
    methods = [(r.model, r.method) for r in results]
    assert methods == [("base", "greedy"), ("other", "greedy"), ("base", "cap:1"), ("base", "cap:3"), ("base", "early_stop"),
                       ("base", "greedy+window@0.5"), ("other", "greedy+window@0.5")]  # fmt: skip
    by = dict(zip(methods, results))
    assert by["base", "cap:1"].mean_tokens == 1.0 and by["base", "cap:1"].output_mflops == 0.0
    assert by["base", "cap:3"].mean_tokens <= 3 and by["base", "early_stop"].mean_tokens <= by["base", "greedy"].mean_tokens
    reduced, full = by["base", "greedy+window@0.5"], by["base", "greedy"]
    assert reduced.prompt_mflops < 0.8 * full.prompt_mflops, (reduced.prompt_mflops, full.prompt_mflops)  # layer 1 of 2 at half
    for r in results:
        assert 0 <= r.accuracy <= 1 and r.n_examples == 12 and set(r.groups) <= {"h1", "h2"}
        assert r.to_dict()["total_mflops"] == pytest.approx(r.prompt_mflops + r.output_mflops)
        assert sum(g["n"] for g in r.groups.values()) == 12


def test_words_appended_later_keep_older_models_valid():
    from types import SimpleNamespace

    from rltr.evaluation import check_task_fits
    from rltr.tasks.vocab import BASE_VOCAB_SIZE, VOCAB_SIZE, WORDS

    assert WORDS[-3:] == ("<chain>", "h1", "h2") and VOCAB_SIZE == BASE_VOCAB_SIZE + 3
    old = SimpleNamespace(config=SimpleNamespace(vocab_size=BASE_VOCAB_SIZE), name="default", inputs="tokens")  # the committed default
    check_task_fits(old, get_task("retrieval"))
    with pytest.raises(ValueError, match=f"task 'chain' uses rltr's built-in vocabulary \\({VOCAB_SIZE} words\\).*{BASE_VOCAB_SIZE}"):
        check_task_fits(old, get_task("chain"))
    new = SimpleNamespace(config=SimpleNamespace(vocab_size=VOCAB_SIZE), name="verbose", inputs="tokens")
    with pytest.raises(ValueError, match="task 'chain' is scored on generated output; use rltr evaluate --output-length"):
        check_task_fits(new, get_task("chain"))
