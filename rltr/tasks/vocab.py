"""The one fixed word list shared by every built-in task, and its tokenizer.

Words, in id order: specials (``<pad> <bos> <unk> <sep>``), one tag per task (``<retrieval>`` ...),
filler ``f0..f15``, retrieval keys ``k0..k15`` / values ``v0..v15`` and their fused pairs ``k3v7``,
selective-copy data ``d0..d15``, majority symbols ``m0..m3``, multihop nodes ``n0..n15`` and their
fused edges ``n3n7`` (``i != j``), then words added later (:data:`ADDED_WORDS`, appended at the end so
every earlier id, and the committed ``default`` model, stays valid). One word is one token; the
tokenizer splits on whitespace only.
"""

from __future__ import annotations

import numpy as np

SPECIALS = ("<pad>", "<bos>", "<unk>", "<sep>")
TASK_TAGS = ("<retrieval>", "<selective_copy>", "<majority>", "<multihop>")
N_FILLER = 16
N_KEYS = 16
N_VALUES = 16
N_DATA = 16
N_MAJORITY = 4
N_NODES = 16
# Appended after the original list (never insert above: ids of committed models would shift).
# <chain> tags the verbose chain task; h1/h2 ask for one or two hops.
ADDED_WORDS = ("<chain>", "h1", "h2")


def _words() -> tuple[str, ...]:
    words = list(SPECIALS) + list(TASK_TAGS)
    words += [f"f{i}" for i in range(N_FILLER)]
    words += [f"k{i}" for i in range(N_KEYS)] + [f"v{i}" for i in range(N_VALUES)]
    words += [f"k{i}v{j}" for i in range(N_KEYS) for j in range(N_VALUES)]
    words += [f"d{i}" for i in range(N_DATA)]
    words += [f"m{i}" for i in range(N_MAJORITY)]
    words += [f"n{i}" for i in range(N_NODES)]
    words += [f"n{i}n{j}" for i in range(N_NODES) for j in range(N_NODES) if i != j]
    return tuple(words) + ADDED_WORDS


WORDS: tuple[str, ...] = _words()
word_to_id: dict[str, int] = {w: i for i, w in enumerate(WORDS)}
VOCAB_SIZE = len(WORDS)
BASE_VOCAB_SIZE = VOCAB_SIZE - len(ADDED_WORDS)  # the original list: what the tasks before <chain> use
PAD_ID, BOS_ID, UNK_ID, SEP_ID = (word_to_id[w] for w in SPECIALS)
FILLER_IDS = np.array([word_to_id[f"f{i}"] for i in range(N_FILLER)])


def ids(words: list[str]) -> list[int]:
    """Token ids of ``words`` (KeyError on a word outside the vocabulary)."""
    return [word_to_id[w] for w in words]


def words_of(token_ids: list[int]) -> list[str]:
    return [WORDS[i] for i in token_ids]


def scatter_in_filler(rng: np.random.Generator, tag: str, items: list[int], context_len: int) -> tuple[list[int], list[int]]:
    """A context ``<bos> <tag> ...`` of ``context_len`` ids with ``items`` (ids, in order) at random
    sorted positions among random filler. Returns (context ids, the items' positions)."""
    n_free = context_len - 2
    if len(items) > n_free:
        raise ValueError(f"{len(items)} items do not fit a context of {context_len} tokens")
    context = [BOS_ID, word_to_id[tag]] + rng.choice(FILLER_IDS, size=n_free).tolist()
    positions = (2 + np.sort(rng.choice(n_free, size=len(items), replace=False))).tolist()
    for pos, item in zip(positions, items):
        context[pos] = item
    return context, positions


def build_tokenizer():
    """A ``PreTrainedTokenizerFast`` over :data:`WORDS` (WordLevel, whitespace split, no added BOS).

    ``tokenizer(" ".join(words)).input_ids == ids(words)``; it round-trips through
    ``save_pretrained`` + ``AutoTokenizer.from_pretrained``. ``<sep>`` is also the end-of-sequence token
    (the zoo models' ``eos_token_id``: generation stops there).
    """
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(WordLevel(vocab=dict(word_to_id), unk_token="<unk>"))
    core.pre_tokenizer = WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<bos>", pad_token="<pad>", unk_token="<unk>", sep_token="<sep>",
                                   eos_token="<sep>")  # fmt: skip
