"""Built-in tasks: a registry of :class:`~rltr.tasks.base.Task` classes (synthetic token tasks; digits images;
sentences) and datasets from files.

``get_task("retrieval", context_len=128)`` builds one; every example starts ``<bos> <task-tag>``.
``load_task("jsonl:data/qa.jsonl", backbone, chat_template=True)`` reads a JSONL file with the model's
tokenizer (:mod:`rltr.tasks.jsonl`); ``load_task`` also builds built-in tasks by name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rltr.tasks.base import Batch, Example, GenerativeTask, Task, collate, exact_match
from rltr.tasks.chain import Chain
from rltr.tasks.grid_questions import GRID_TASKS
from rltr.tasks.images import Digits
from rltr.tasks.instructed import InstructedRetrieval
from rltr.tasks.jsonl import JSONL_PREFIX, JsonlTask, load_jsonl, spec_path
from rltr.tasks.majority import Majority
from rltr.tasks.multihop import Multihop
from rltr.tasks.pool import ExamplePool
from rltr.tasks.prose import load_prose, prose_kind
from rltr.tasks.retrieval import Retrieval
from rltr.tasks.selective_copy import SelectiveCopy
from rltr.tasks.sentences import Sentences

_CLASSES: tuple[type[Task[Any, Any]], ...] = (
    Retrieval,
    SelectiveCopy,
    Majority,
    Multihop,
    InstructedRetrieval,
    Chain,
    Digits,
    Sentences,
    *GRID_TASKS,
)
TASKS: dict[str, type[Task[Any, Any]]] = {cls.name: cls for cls in _CLASSES}


def get_task(name: str, **kwargs) -> Task:
    """An instance of the task registered as ``name`` (ValueError naming the known ones otherwise)."""
    if name not in TASKS:
        if spec_path(name) is not None:
            raise ValueError(f"task {name!r} is a file: it is tokenized with a model's tokenizer, use load_task(spec, backbone)")
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}, or {JSONL_PREFIX}PATH (a JSONL file)")
    _check_kwargs(name, TASKS[name], kwargs)
    try:
        return TASKS[name](**kwargs)
    except TypeError as e:  # an option of the wrong type
        raise ValueError(f"task {name!r} options {kwargs!r}: {e}") from None


def _check_kwargs(name: str, cls: type[Task], kwargs: dict) -> None:
    """ValueError naming an option task ``name`` does not take, and the ones it does."""
    import inspect

    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    known = sorted(k for k, p in params.items() if k != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
    unknown = sorted(set(kwargs) - set(known))
    if unknown:
        raise ValueError(f"task {name!r} has no option {unknown[0]!r}; its options: {', '.join(known) or 'none'}")


def load_task(spec: str, backbone=None, **kwargs) -> Task:
    """A built-in task by name, or ``jsonl:PATH`` read with ``backbone``'s tokenizer (``kwargs``: its options)."""
    if prose_kind(spec) is not None:  # prose:KIND, real prose made at load time
        return load_prose(spec, backbone, **kwargs)
    path = spec_path(spec)
    if path is None:
        return get_task(spec, **kwargs)

    return load_jsonl(path, backbone, **kwargs)


def task_slug(spec: str) -> str:
    """A task spec as a run-folder name part: ``retrieval``; ``jsonl:data/qa.jsonl`` -> ``jsonl-qa``."""
    if spec.startswith("prose:"):
        return spec.replace(":", "-")
    path = spec_path(spec)
    if path is None:
        return spec
    stem = "".join(c if c.isalnum() or c in "_.-" else "_" for c in Path(path).stem)
    return f"jsonl-{stem or 'file'}"


__all__ = [
    "TASKS",
    "Batch",
    "ExamplePool",
    "Example",
    "GenerativeTask",
    "JsonlTask",
    "Task",
    "collate",
    "exact_match",
    "get_task",
    "load_task",
    "task_slug",
]
