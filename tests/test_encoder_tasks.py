"""The encoder tasks: digits images and sentences (fixed splits, seeded examples, scores of the full model)."""

import pytest
import torch

from rltr.backbones import load_backbone
from rltr.tasks import get_task
from rltr.tasks.scoring import score_function
from rltr.tasks.sentences import PAIR_SPLITS, corpus, split_sentences


@pytest.mark.parametrize("name", ["digits", "sentences"])
def test_examples_are_seeded_distinct_and_split(name):
    task = get_task(name)
    a, b = task.examples(20, seed=3, split="train"), task.examples(20, seed=3, split="train")
    assert [e.index for e in a] == [e.index for e in b] and len({e.index for e in a}) == 20
    assert {e.index for e in task.examples(1000, split="test")}.isdisjoint({e.index for e in task.examples(10000, split="train")})
    assert [e.index for e in a] != [e.index for e in task.examples(20, seed=4, split="train")]


def test_digits_batches_are_images_in_minus_one_to_one():
    task = get_task("digits")
    batch = task.collate(task.examples(8))
    assert batch.pixel_values.shape == (8, 1, 32, 32) and batch.labels.shape == (8,)
    assert batch.pixel_values.min() >= -1 and batch.pixel_values.max() <= 1 and batch.n_head_tokens.tolist() == [1] * 8


def test_corpus_pairs_and_splits():
    sentences = corpus()
    assert len(sentences) == 2 * sum(PAIR_SPLITS.values()) == 388 and len(set(sentences)) == 388
    test = split_sentences("test")
    assert len(test) == 2 * PAIR_SPLITS["test"] and set(test.tolist()) == {i ^ 1 for i in test.tolist()}  # both halves of each pair


def test_sentences_full_model_scores_one_on_minilm():
    from tests.conftest import minilm_path

    minilm_path()  # skips without the package
    bb = load_backbone("minilm")
    task = get_task("sentences")
    with pytest.raises(ValueError, match="prepare"):
        task.collate(task.examples(2))
    task.prepare(bb)
    batch = task.collate(task.examples(16))
    output = batch.head_output(bb, bb.run(batch.embed(bb)))
    for name in ("fidelity", "retrieval"):
        assert torch.allclose(score_function(name, "embedding")(output, batch), torch.ones(16), atol=1e-5)
    assert score_function("pair_retrieval", "embedding")(output, batch).mean() >= 0.9
    with pytest.raises(ValueError, match="does not apply"):
        score_function("accuracy", "embedding")
