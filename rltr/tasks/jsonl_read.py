"""Reading a JSONL dataset file: one example per line, checked field by field.

A line is a JSON object with ``context``, ``question`` and ``answer`` strings (the kvpress convention:
a context compressed once, a question asked of it; ``context + question + answer`` is the full text,
so put separators such as spaces or newlines in the strings themselves). Optional fields:

- ``relevant``: character spans ``[[start, end], ...]`` of ``context`` the answer depends on (the
  oracle reads them);
- ``relevant_any``: spans any question about this context may depend on (the query-agnostic oracle's
  limit); default: the union of ``relevant`` over every line with the same context;
- ``protected``: spans never reduced (e.g. an instruction or a task tag).

Other keys are ignored. Every error is one line naming the file, the line and the value.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

REQUIRED = ("context", "question", "answer")
SPAN_FIELDS = ("relevant", "relevant_any", "protected")


@dataclass
class Record:
    """One checked line. Spans are (start, end) character offsets into ``context``, end exclusive."""

    path: str
    line: int  # 1-based
    context: str
    question: str
    answer: str | None  # None: to be answered by the model itself (``model_answers``)
    relevant: list[tuple[int, int]] = field(default_factory=list)
    relevant_any: list[tuple[int, int]] | None = None
    protected: list[tuple[int, int]] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


def read_records(path: str | Path, answer_optional: bool = False) -> list[Record]:
    """Every non-blank line of ``path`` as a :class:`Record`. ``answer_optional``: a line may leave out
    ``answer`` (or give null). FileNotFoundError / ValueError naming the file, line and value."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"dataset file {str(path)!r} does not exist")
    records = []
    for number, raw in enumerate(path.read_bytes().split(b"\n"), start=1):
        where = f"{path}:{number}"
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"{where}: not UTF-8 text (byte 0x{raw[e.start]:02x} at column {e.start + 1})") from None
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{where}: not a JSON object ({e.msg} at column {e.colno}): {_clip(text)!r}") from None
        records.append(_record(obj, str(path), number, answer_optional))
    if not records:
        raise ValueError(f"{path}: no examples (the file is empty); expected one JSON object per line with {list(REQUIRED)}")
    return records


def _record(obj, path: str, line: int, answer_optional: bool) -> Record:
    where = f"{path}:{line}"
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: expected a JSON object with {list(REQUIRED)}, got {_clip(json.dumps(obj))!r}")
    for key in REQUIRED:
        value = obj.get(key)
        if key == "answer" and value is None and answer_optional:
            continue
        if key not in obj:
            hint = " (or set task_kwargs model_answers: N to answer with the full model's own N greedy tokens)" if key == "answer" else ""
            raise ValueError(f"{where}: missing field {key!r}{hint}; the line has {sorted(obj)}")
        if not isinstance(value, str):
            raise ValueError(f"{where}: field {key!r} must be a string, got {_clip(json.dumps(value))!r}")
    context = obj["context"]
    spans = {key: _spans(obj[key], key, where, len(context)) for key in SPAN_FIELDS if obj.get(key) is not None}
    return Record(
        path,
        line,
        context,
        obj["question"],
        obj.get("answer"),
        spans.get("relevant", []),
        spans.get("relevant_any"),
        spans.get("protected", []),
    )


def _spans(value, key: str, where: str, n_chars: int) -> list[tuple[int, int]]:
    """[[start, end], ...] with 0 <= start < end <= n_chars."""
    if not isinstance(value, list):
        raise ValueError(f"{where}: field {key!r} must be a list of [start, end] character spans, got {_clip(json.dumps(value))!r}")
    out = []
    for span in value:
        ok = isinstance(span, list) and len(span) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in span)
        if not ok or not 0 <= span[0] < span[1] <= n_chars:
            raise ValueError(
                f"{where}: {key} span {_clip(json.dumps(span))} must be [start, end] with 0 <= start < end <= "
                f"{n_chars} (the context's length in characters)"
            )
        out.append((span[0], span[1]))
    return out


def _clip(text: str, n: int = 60) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."
