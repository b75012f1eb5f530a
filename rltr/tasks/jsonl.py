"""JSONL datasets as tasks: ``env.task: jsonl:PATH`` (and ``--task jsonl:PATH``), tokenized with the model's
own tokenizer.

Each line (:mod:`rltr.tasks.jsonl_read`) becomes one :class:`~rltr.tasks.base.Example`: the context
(tokenized with the tokenizer's special tokens, e.g. BOS) is what reducers may shrink; the question and
the answer (tokenized without special tokens) form the protected tail, and the answer is teacher-forced
and scored. Character spans map to every token they overlap. Options (``task_kwargs``):

- ``chat_template: true``: the context and question are the user turn of the tokenizer's chat
  template, the answer follows the assistant prompt; the template's tokens before the context are
  protected;
- ``split: [train, validation, test]`` fractions with ``split_seed``: a seeded split of the file by
  *context* (questions about one context stay in one split); or ``validation: PATH`` / ``test: PATH``:
  those splits from other files (the spec's file is then the training split). With neither, the file
  is every split (train on one file, evaluate on another);
- ``model_answers: N``: lines without ``answer`` are answered by the full model's own N greedy tokens
  (raw prompts: train with ``score: fidelity``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from rltr.backbones import resolve_model
from rltr.inference.generation import greedy_generate
from rltr.tasks.base import Example
from rltr.tasks.jsonl_read import Record, read_records
from rltr.tasks.pool import ExamplePool

JSONL_PREFIX = "jsonl:"
_SENTINEL = "RLTRCONTENT7F3A"  # stands for the user turn's content while rendering a chat template
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "vocab.txt", "tokenizer.model", "spiece.model")


@dataclass(frozen=True)
class JsonlOptions:
    chat_template: bool = False
    split: tuple[float, float, float] | None = None
    split_seed: int = 0
    validation: str | None = None
    test: str | None = None
    model_answers: int = 0

    @classmethod
    def from_kwargs(cls, kwargs: dict) -> JsonlOptions:
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(kwargs) - set(known))
        if unknown:
            raise ValueError(f"unknown jsonl task option(s) {unknown}; known: {known}")
        opts = dict(kwargs)
        if opts.get("split") is not None:
            split = opts["split"]
            ok = isinstance(split, (list, tuple)) and len(split) == 3 and all(isinstance(v, (int, float)) and v >= 0 for v in split)
            if not ok or abs(sum(split) - 1) > 1e-6:
                raise ValueError(f"jsonl option split={split!r} must be three fractions [train, validation, test] summing to 1")
            opts["split"] = tuple(float(v) for v in split)
        for key, tp in (("chat_template", bool), ("split_seed", int), ("model_answers", int)):
            if key in opts and (not isinstance(opts[key], tp) or (tp is int and isinstance(opts[key], bool))):
                raise ValueError(f"jsonl option {key} must be {tp.__name__}, got {opts[key]!r}")
        if opts.get("model_answers", 0) < 0:
            raise ValueError(f"jsonl option model_answers must be >= 0, got {opts['model_answers']}")
        if opts.get("split") is not None and (opts.get("validation") or opts.get("test")):
            raise ValueError("jsonl options: give either split fractions or validation/test files, not both")
        return cls(**opts)


class JsonlTask(ExamplePool):
    """Examples read from JSONL file(s), per split; ``where[split][i]`` is ``file:line`` of example i."""

    description = "examples from a JSONL file (context, question, answer), tokenized with the model's tokenizer"

    def __init__(self, splits: dict[str, list[Example]], where: dict[str, list[str]], name: str, pad_id: int):
        super().__init__(splits, name=name)
        self.where, self.pad_id = where, pad_id

    def check_fits(self, backbone) -> None:
        """The model embeds every token id and has positions for every example (ValueError naming the line)."""
        n_vocab = backbone.model.get_input_embeddings().num_embeddings
        limit = backbone.max_positions
        for split, examples in self.splits.items():
            for e, where in zip(examples, self.where[split]):
                if max(e.input_ids) >= n_vocab:
                    raise ValueError(
                        f"{where}: token id {max(e.input_ids)} is outside the {n_vocab} embeddings of model "
                        f"{backbone.name!r} (tokenized with another model's tokenizer?)"
                    )
                if limit is not None and len(e.input_ids) > limit:
                    raise ValueError(
                        f"{where}: example of {len(e.input_ids)} tokens is longer than the {limit} positions of model {backbone.name!r}"
                    )


def load_tokenizer(model: str):
    """The tokenizer saved with ``model`` (built-in name, folder or hub name); ValueError naming it if none."""
    from transformers import AutoTokenizer

    where = resolve_model(model)
    missing = ValueError(f"model {model!r} has no tokenizer files (tokenizer.json / tokenizer_config.json) to tokenize text with")
    if Path(where).is_dir() and not any((Path(where) / f).is_file() for f in _TOKENIZER_FILES):
        raise missing  # transformers would build an empty tokenizer from config.json alone
    try:
        tokenizer = AutoTokenizer.from_pretrained(where)
    except (OSError, ValueError, TypeError, KeyError):
        raise missing from None
    if not tokenizer.vocab_size:
        raise missing
    return tokenizer


_LOADED: dict = {}


def load_jsonl(path: str | Path, backbone=None, *, tokenizer=None, progress: bool = False, **kwargs) -> JsonlTask:
    """The task of JSONL file ``path`` for ``backbone`` (its tokenizer, positions and, for ``model_answers``,
    its greedy answers); ``kwargs`` are the options in the module docstring; ``progress``: bars over lines and
    model answers on stderr. Loaded once per process for the same file contents, options and model."""
    opts = JsonlOptions.from_kwargs(kwargs)
    if tokenizer is None and backbone is None:
        raise ValueError("a jsonl task is tokenized with a model's tokenizer: pass a backbone or a tokenizer")
    files = {"train": Path(path), "validation": opts.validation, "test": opts.test}
    stamps = tuple((str(p), *_stamp(Path(p))) for p in files.values() if p is not None)
    key = (stamps, opts, id(tokenizer) if tokenizer is not None else backbone.name, id(backbone))
    if key not in _LOADED:
        tok = tokenizer if tokenizer is not None else load_tokenizer(backbone.name)
        _LOADED[key] = _build(files, opts, tok, backbone, progress)
    return _LOADED[key]


def _stamp(path: Path) -> tuple[int, int]:
    if not path.is_file():
        raise FileNotFoundError(f"dataset file {str(path)!r} does not exist")
    st = path.stat()
    return st.st_mtime_ns, st.st_size


def _build(files: dict, opts: JsonlOptions, tokenizer, backbone, progress: bool = False) -> JsonlTask:
    answer_optional = opts.model_answers > 0
    if answer_optional and backbone is None:
        raise ValueError("jsonl option model_answers needs the model (pass a backbone)")
    main = read_records(files["train"], answer_optional)
    if opts.split is not None:
        record_splits = _seeded_split(main, opts.split, opts.split_seed)
    elif files["validation"] or files["test"]:
        record_splits = {"train": main, **{s: read_records(files[s], answer_optional) for s in ("validation", "test") if files[s]}}
    else:
        record_splits = {s: main for s in ("train", "validation", "test")}
    template = _template_parts(tokenizer) if opts.chat_template else None
    limit = None if backbone is None else (backbone.max_positions, backbone.name)
    made: dict[int, list[Example]] = {}  # one tokenization per distinct record list
    for records in record_splits.values():
        if id(records) not in made:
            made[id(records)] = _examples(records, tokenizer, template, limit, opts.model_answers, backbone, progress)
    splits = {s: made[id(r)] for s, r in record_splits.items()}
    where = {s: [r.where for r in records] for s, records in record_splits.items()}
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    return JsonlTask(splits, where, name=f"jsonl:{Path(files['train']).name}", pad_id=pad)


def _seeded_split(records: list[Record], fractions, seed: int) -> dict[str, list[Record]]:
    """Contexts shuffled with ``seed`` and cut by ``fractions``; each split keeps file order."""
    contexts = list(dict.fromkeys(r.context for r in records))
    order = np.random.default_rng(seed).permutation(len(contexts))
    n_train = round(fractions[0] * len(contexts))
    n_val = round(fractions[1] * len(contexts))
    rank = {contexts[j]: i for i, j in enumerate(order)}
    which = {c: "train" if rank[c] < n_train else "validation" if rank[c] < n_train + n_val else "test" for c in contexts}
    return {s: [r for r in records if which[r.context] == s] for s in ("train", "validation", "test")}


def _template_parts(tokenizer) -> tuple[str, str]:
    """(text before the user turn's content, text after it up to the assistant's answer)."""
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            f"tokenizer {getattr(tokenizer, 'name_or_path', '')!r} has no chat template (jsonl option chat_template: true needs one)"
        )
    text = tokenizer.apply_chat_template([{"role": "user", "content": _SENTINEL}], tokenize=False, add_generation_prompt=True)
    if text.count(_SENTINEL) != 1:
        raise ValueError("the tokenizer's chat template does not render the user turn's content exactly once")
    prefix, suffix = text.split(_SENTINEL)
    return prefix, suffix


def _examples(records: list[Record], tokenizer, template, limit, model_answers: int, backbone, progress: bool = False) -> list[Example]:
    from tqdm.auto import tqdm

    # on a terminal only (disable=None): a bar left on a log line would run into an error message naming a line
    lines = tqdm(records, desc="tokenize lines", unit="line", disable=None if progress else True, leave=False)
    pieces = [_tokenize(r, tokenizer, template, limit, model_answers) for r in lines]
    missing = [i for i, p in enumerate(pieces) if p["answer"] is None]
    if missing:
        prompts = [pieces[i]["context"] + pieces[i]["question"] for i in missing]
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        for start in tqdm(range(0, len(missing), 16), desc="model answers (batches of 16)", disable=not progress):
            answers = greedy_generate(backbone.model, prompts[start : start + 16], model_answers, pad, eos_id=tokenizer.eos_token_id)
            for i, answer in zip(missing[start : start + 16], answers):
                pieces[i]["answer"] = answer
    union: dict[str, set[int]] = {}  # context text -> relevant positions of every question about it
    for r, p in zip(records, pieces):
        union.setdefault(r.context, set()).update(p["relevant"])
    return [
        Example(
            p["context"] + p["question"] + p["answer"],
            len(p["context"]),
            len(p["answer"]),
            relevant=p["relevant"],
            protected=p["protected"],
            relevant_any=p["relevant_any"] if p["relevant_any"] is not None else sorted(union[r.context]),
        )
        for r, p in zip(records, pieces)
    ]


def _tokenize(r: Record, tokenizer, template, limit, model_answers: int) -> dict:
    """Token ids of the context, question and answer of one record, and its span positions."""
    prefix, suffix = template if template is not None else ("", "")
    head = _ids(tokenizer, prefix, False)
    spans_needed = bool(r.relevant or r.protected or r.relevant_any)
    enc = tokenizer(
        r.context,
        add_special_tokens=template is None,
        return_special_tokens_mask=True,
        return_offsets_mapping=spans_needed and getattr(tokenizer, "is_fast", False),
    )
    if spans_needed and "offset_mapping" not in enc:
        raise ValueError(f"{r.where}: character spans need a fast tokenizer (offsets); this one is {type(tokenizer).__name__}")
    context = head + list(enc["input_ids"])
    question = _ids(tokenizer, r.question + suffix, False)
    answer = _ids(tokenizer, r.answer, False) if r.answer is not None else None
    for name, ids, text in (("context", context, r.context), ("question", question, r.question), ("answer", answer, r.answer)):
        if ids is not None and not ids:
            raise ValueError(f"{r.where}: {name} {text!r} tokenizes to no tokens (the {name} needs at least one)")
    _check_length(r, limit, len(context), len(question), len(answer) if answer is not None else model_answers)
    shift = len(head)

    def positions(spans, key):
        out = set()
        for s, e in spans:
            hit = [shift + i for i, (a, b) in enumerate(enc["offset_mapping"]) if b > a and a < e and b > s]
            if not hit:
                raise ValueError(f"{r.where}: {key} span [{s}, {e}] ({r.context[s:e]!r}) covers no token")
            out.update(hit)
        return sorted(out)

    special = [shift + i for i, flag in enumerate(enc["special_tokens_mask"]) if flag]
    protected = sorted(set(range(shift)) | set(special) | set(positions(r.protected, "protected")))
    relevant_any = positions(r.relevant_any, "relevant_any") if r.relevant_any is not None else None
    return {
        "context": context,
        "question": question,
        "answer": answer,
        "relevant": positions(r.relevant, "relevant"),
        "protected": protected,
        "relevant_any": relevant_any,
    }


def _ids(tokenizer, text: str, special: bool) -> list[int]:
    return list(tokenizer(text, add_special_tokens=special)["input_ids"]) if text else []


def _check_length(r: Record, limit, n_context: int, n_question: int, n_answer: int) -> None:
    if limit is None or limit[0] is None:
        return
    n_max, model = limit
    if n_context > n_max:
        raise ValueError(f"{r.where}: context of {n_context} tokens is longer than the {n_max} positions of model {model!r}")
    total = n_context + n_question + n_answer
    if total > n_max:
        raise ValueError(
            f"{r.where}: answer of {n_answer} tokens does not fit the {n_max} positions of model {model!r} "
            f"(context {n_context} + question {n_question} + answer {n_answer} = {total} tokens)"
        )


def spec_path(spec: str) -> str | None:
    """The file of a ``jsonl:PATH`` task spec, else None."""
    return spec[len(JSONL_PREFIX) :] if spec.startswith(JSONL_PREFIX) else None


def dumps_line(record: dict) -> str:
    """One JSONL line (UTF-8 text, no ASCII escaping)."""
    return json.dumps(record, ensure_ascii=False)
