"""Built-in task examples as JSONL lines (``rltr data export``), readable back as ``jsonl:FILE``.

Words are joined by single spaces; the question and the answer start with a space, so ``context +
question + answer`` is the example's full text. ``relevant``, ``relevant_any`` (when it differs from
``relevant``) and ``protected`` are character spans of the context words. Read back with the built-in
model's tokenizer (whitespace-split words), every line gives the same tokens, positions and tail as
the generated example: training or evaluating on the file equals doing so on the same examples.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from rltr.tasks.base import Example, Task
from rltr.tasks.jsonl import dumps_line
from rltr.tasks.vocab import words_of


def example_record(e: Example) -> dict:
    """One built-in example as a JSONL record (see the module docstring)."""
    words = words_of(e.input_ids)
    context_words = words[: e.context_len]
    starts, pos = [], 0
    for w in context_words:
        starts.append(pos)
        pos += len(w) + 1

    def spans(positions):
        return [[starts[p], starts[p] + len(context_words[p])] for p in sorted(positions)]

    n = len(words)
    record = {
        "context": " ".join(context_words),
        "question": " " + " ".join(words[e.context_len : n - e.n_answer]) if n - e.n_answer > e.context_len else "",
        "answer": " " + " ".join(words[n - e.n_answer :]),
        "relevant": spans(e.relevant),
    }
    assert e.relevant_any is not None, "Example.__post_init__ sets relevant_any"
    if sorted(e.relevant_any) != sorted(e.relevant):
        record["relevant_any"] = spans(e.relevant_any)
    if e.protected:
        record["protected"] = spans(e.protected)
    return record


def export_task(task: Task, n: int, out: str | Path, seed: int = 0, split: str = "test") -> Path:
    """Write ``task.examples(n, seed, split)`` to ``out`` (one JSON object per line), atomically: a failed
    export leaves no partial file."""
    if n < 1:
        raise ValueError(f"--n must be >= 1, got {n}")
    if task.kind != "tokens" or task.with_images:
        raise ValueError(
            f"task {task.name!r} gives {task.kind} inputs/outputs; JSONL export holds context/question/answer token examples only"
        )
    if task.generative:
        raise ValueError(
            f"task {task.name!r} is scored on generated output (its targets think aloud before the answer); "
            "JSONL export holds context/question/answer examples only"
        )
    lines = [dumps_line(example_record(e)) for e in task.examples(n, seed=seed, split=split)]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out
