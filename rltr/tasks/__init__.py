"""Built-in tasks: a registry of :class:`~rltr.tasks.base.Task` classes (synthetic token tasks; digits images; sentences).

``get_task("retrieval", context_len=128)`` builds one; every example starts ``<bos> <task-tag>``.
"""

from __future__ import annotations

from rltr.tasks.base import Batch, Example, Task, collate, exact_match
from rltr.tasks.images import Digits
from rltr.tasks.instructed import InstructedRetrieval
from rltr.tasks.majority import Majority
from rltr.tasks.multihop import Multihop
from rltr.tasks.retrieval import Retrieval
from rltr.tasks.selective_copy import SelectiveCopy
from rltr.tasks.sentences import Sentences

TASKS: dict[str, type[Task]] = {
    cls.name: cls for cls in (Retrieval, SelectiveCopy, Majority, Multihop, InstructedRetrieval, Digits, Sentences)
}


def get_task(name: str, **kwargs) -> Task:
    """An instance of the task registered as ``name`` (ValueError naming the known ones otherwise)."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    return TASKS[name](**kwargs)


__all__ = ["TASKS", "Batch", "Example", "Task", "collate", "exact_match", "get_task"]
