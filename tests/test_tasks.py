"""Built-in tasks: seeded, split-disjoint, valid examples whose ``relevant`` positions hold the answer."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from rltr.tasks import TASKS, collate, exact_match, get_task
from rltr.tasks.vocab import PAD_ID, VOCAB_SIZE, WORDS, build_tokenizer, words_of

N = 50
# encoder tasks: tests/test_encoder_tasks.py; VLM tasks: tests/test_vlm.py
TOKEN_TASKS = sorted(name for name, cls in TASKS.items() if cls.kind == "tokens" and not cls.with_images)


@pytest.fixture(params=TOKEN_TASKS)
def task(request):
    return get_task(request.param)


def test_same_seed_same_examples_and_splits_differ(task):
    a, b = task.examples(N, seed=3, split="train"), task.examples(N, seed=3, split="train")
    assert [e.input_ids for e in a] == [e.input_ids for e in b]
    assert [e.relevant for e in a] == [e.relevant for e in b]
    test = task.examples(N, seed=3, split="test")
    assert [e.input_ids for e in a] != [e.input_ids for e in test]
    assert [e.input_ids for e in a] != [e.input_ids for e in task.examples(N, seed=4, split="train")]


def test_examples_are_valid(task):
    for e in task.examples(N, seed=0):
        words = words_of(e.input_ids)
        assert e.context_len >= 128, e.context_len
        assert words[:2] == ["<bos>", task.tag], words[:2]
        assert e.protected == [0, 1], e.protected
        assert words[e.context_len] == "<sep>", words[e.context_len]
        assert "<sep>" not in words[: e.context_len] and "<pad>" not in words
        assert e.relevant and all(2 <= p < e.context_len for p in e.relevant), e.relevant
        assert len(e.input_ids) <= 256 and max(e.input_ids) < VOCAB_SIZE


def test_retrieval_relevant_pair_holds_query_and_answer():
    for e in get_task("retrieval").examples(N, seed=1):
        words = words_of(e.input_ids)
        key, value = words[-2], words[-1]
        (pos,) = e.relevant
        assert words[pos] == key + value, (words[pos], key, value)
        pairs = [w for w in words[: e.context_len] if w[0] == "k" and "v" in w]
        assert len({p.split("v")[0] for p in pairs}) == len(pairs) == 6, pairs  # distinct keys


def test_selective_copy_relevant_tokens_are_the_answer_in_order():
    for e in get_task("selective_copy").examples(N, seed=1):
        assert [e.input_ids[p] for p in e.relevant] == e.answer
        assert e.relevant == sorted(e.relevant) and e.n_answer == 4
        data = [p for p, w in enumerate(words_of(e.input_ids[: e.context_len])) if w.startswith("d")]
        assert data == e.relevant


def test_majority_answer_is_the_true_mode_with_margin():
    task = get_task("majority")
    for e in task.examples(N, seed=1):
        words = words_of(e.input_ids)
        counts = Counter(words[p] for p in e.relevant)
        assert all(w.startswith("m") for w in counts), counts
        assert len(e.relevant) == sum(w.startswith("m") for w in words[: e.context_len])
        (top, c1), (_, c2) = counts.most_common(2)
        assert words[-1] == top and c1 - c2 >= max(1, round(task.min_margin_ratio * len(e.relevant)))


def test_multihop_relevant_edges_form_the_chain():
    for e in get_task("multihop").examples(N, seed=1):
        words = words_of(e.input_ids)
        x, z = words[-2], words[-1]
        edges = [words[p] for p in e.relevant]
        heads = {w[: w.index("n", 1)]: w[w.index("n", 1) :] for w in edges}
        assert x in heads and heads[heads[x]] == z, (x, z, edges)
        all_edges = [w for w in words[2 : e.context_len] if w.count("n") == 2]
        assert len({w[: w.index("n", 1)] for w in all_edges}) == len(all_edges) == 6  # a function


def test_tokenizer_round_trip(tmp_path):
    from transformers import AutoTokenizer

    build_tokenizer().save_pretrained(tmp_path)
    tok = AutoTokenizer.from_pretrained(tmp_path)
    assert len(tok) == VOCAB_SIZE and tok.pad_token_id == PAD_ID and tok.bos_token == "<bos>"
    for name in TOKEN_TASKS:
        e = get_task(name).examples(1, seed=0)[0]
        assert tok(" ".join(words_of(e.input_ids))).input_ids == e.input_ids
    assert tok.convert_ids_to_tokens(list(range(VOCAB_SIZE))) == list(WORDS)
    assert tok("k3v7 nope").input_ids[1] == tok.unk_token_id


def test_exact_match_on_teacher_forced_answer():
    examples = get_task("selective_copy").examples(3, seed=0)
    batch = collate(examples, PAD_ID)
    logits = torch.nn.functional.one_hot(batch.input_ids.roll(-1, dims=1), VOCAB_SIZE).float()
    assert exact_match(logits, batch).tolist() == [1.0, 1.0, 1.0]


def test_unknown_task_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown task 'nope'.*majority.*retrieval"):
        get_task("nope")


@pytest.mark.parametrize("pairs", [4, [1, 4]])
def test_instructed_retrieval_relevant_sets(pairs):
    """The instruction names the group the question asks; relevant_any is exactly that group's pairs."""
    sizes = Counter()
    for e in get_task("instructed_retrieval", pairs_per_group=pairs).examples(N, seed=2):
        words = words_of(e.input_ids)
        group = int(words[2][1:])  # m0 / m1
        pairs_at = {p: w for p, w in enumerate(words[: e.context_len]) if w[0] == "k" and "v" in w}
        mine = sorted(p for p, w in pairs_at.items() if int(w[1:].split("v")[0]) // 4 == group)
        assert e.relevant_any == mine and set(e.relevant) <= set(mine)
        (q,) = e.relevant
        assert pairs_at[q] == words[-2] + words[-1]
        assert len({w.split("v")[0] for w in pairs_at.values()}) == len(pairs_at)  # distinct keys
        sizes[len(mine)] += 1
    assert set(sizes) == ({4} if pairs == 4 else {1, 2, 3, 4}), sizes


def test_retrieval_variable_load_and_relevant_any():
    counts = Counter()
    for e in get_task("retrieval", n_pairs=[1, 6]).examples(N, seed=2):
        pairs = [p for p, w in enumerate(words_of(e.input_ids[: e.context_len])) if w[0] == "k" and "v" in w]
        assert e.relevant_any == pairs and set(e.relevant) <= set(pairs)
        counts[len(pairs)] += 1
    assert len(counts) >= 5 and min(counts) >= 1 and max(counts) <= 6
    with pytest.raises(ValueError, match="n_pairs"):
        get_task("retrieval", n_pairs=[3, 1])


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("instructed_retrieval", {}),
        ("instructed_retrieval", {"pairs_per_group": [1, 4]}),
        ("retrieval", {"n_pairs": [1, 6]}),
    ],
)
def test_default_model_answers_the_variants_with_all_tokens(name, kwargs):
    from rltr.backbones import load_backbone
    from rltr.zoo import evaluate_full

    model = load_backbone("default").model
    assert evaluate_full(model, PAD_ID, get_task(name, **kwargs), n=300) >= 0.95
