"""``prose:KIND`` task specs: RULER-style tasks in real prose (:mod:`rltr.tasks.needles`), generated when the
task is loaded, tokenized with the model's own tokenizer like a JSONL file (:mod:`rltr.tasks.jsonl`).

Options (``--task-kwargs`` / ``env.task_kwargs``): ``length`` (context tokens, at most; default 1024),
``n_examples`` (per split; default 64), ``seed``, ``n_needles`` (multikey / multivalue), ``n_digits``,
``chat_template`` (context and question as the user turn of the tokenizer's chat template).
Splits draw from disjoint plays (:func:`rltr.tasks.prose_source.split_plays`) and different seeds.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from rltr.tasks.jsonl import JsonlTask, _examples, _template_parts, load_tokenizer
from rltr.tasks.needles import KINDS, make_record

PROSE_PREFIX = "prose:"
_SPLIT_SALT = {"train": 0, "validation": 1, "test": 2}


@dataclass(frozen=True)
class ProseOptions:
    length: int = 1024
    n_examples: int = 64
    seed: int = 0
    n_needles: int = 4
    n_digits: int = 5
    chat_template: bool = False

    @classmethod
    def from_kwargs(cls, kwargs: dict) -> ProseOptions:
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(kwargs) - set(known))
        if unknown:
            raise ValueError(f"unknown prose task option(s) {unknown}; known: {known}")
        opts = cls(**kwargs)
        for key in ("length", "n_examples", "n_needles", "n_digits"):
            value = getattr(opts, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"prose task option {key} must be a positive int, got {value!r}")
        if opts.length < 64:
            raise ValueError(f"prose task option length={opts.length} is too short (at least 64 tokens)")
        return opts


def prose_kind(spec: str) -> str | None:
    """The kind of a ``prose:KIND`` spec, else None (ValueError naming a kind that does not exist)."""
    if not spec.startswith(PROSE_PREFIX):
        return None
    kind = spec[len(PROSE_PREFIX) :]
    if kind not in KINDS:
        raise ValueError(f"unknown prose task {spec!r}; known: {', '.join(PROSE_PREFIX + k for k in KINDS)}")
    return kind


_LOADED: dict = {}


def load_prose(spec: str, backbone=None, *, tokenizer=None, **kwargs) -> JsonlTask:
    """The examples of ``prose:KIND`` for ``backbone``'s tokenizer (or ``tokenizer``); made once per process."""
    kind = prose_kind(spec)
    if kind is None:
        raise ValueError(f"not a prose task spec: {spec!r} (expected {PROSE_PREFIX}KIND)")
    opts = ProseOptions.from_kwargs(kwargs)
    if tokenizer is None and backbone is None:
        raise ValueError("a prose task is tokenized with a model's tokenizer: pass a backbone or a tokenizer")
    key = (kind, opts, id(tokenizer) if tokenizer is not None else backbone.name)
    if key not in _LOADED:
        tok = tokenizer if tokenizer is not None else load_tokenizer(backbone.name)
        template = _template_parts(tok) if opts.chat_template else None
        limit = None if backbone is None else (backbone.max_positions, backbone.name)
        splits, where = {}, {}
        for split, salt in _SPLIT_SALT.items():
            rng = np.random.default_rng([opts.seed, salt, KINDS.index(kind)])
            records = [
                make_record(kind, rng, tok, opts.length, split, (spec, i + 1), opts.n_needles, opts.n_digits)
                for i in range(opts.n_examples)
            ]
            splits[split] = _examples(records, tok, template, limit, 0, backbone)
            where[split] = [f"{spec}#{split}:{r.line}" for r in records]
        pad = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
        _LOADED[key] = JsonlTask(splits, where, name=spec, pad_id=pad)
    return _LOADED[key]
