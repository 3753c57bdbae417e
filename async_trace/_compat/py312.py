"""Python 3.12 and 3.13: ``sys.monitoring``, eager tasks, ``Task.get_context()``."""

from __future__ import annotations

import asyncio.tasks
import gc
import sys
from collections.abc import Callable
from contextvars import Context
from types import FrameType
from typing import Any, Final

from .py310 import C_TASK_LISTS, TASK_REGISTRIES, awaited_by, is_coroutine_function, work_item_fn
from .py311 import HAS_CODE_POSITIONS, HAS_CONTEXT_ARG, HAS_NOTES, add_note

__all__ = [
    "C_TASK_LISTS",
    "HAS_CODE_POSITIONS",
    "HAS_CONTEXT_ARG",
    "HAS_NOTES",
    "TASK_REGISTRIES",
    "add_note",
    "awaited_by",
    "is_coroutine_function",
    "work_item_fn",
]

HAS_MONITORING: Final = True
HAS_EAGER_TASKS: Final = True
ASYNCIO_REGISTRY: Final[Any] = getattr(asyncio.tasks, "_scheduled_tasks", None)
EAGER_TASKS: Final[Any] = getattr(asyncio.tasks, "_eager_tasks", None)
frame_module: Final[Callable[[int], str | None] | None] = getattr(sys, "_getframemodulename", None)


def task_context(task: Any) -> Context | None:
    """The ``contextvars.Context`` a task runs in (without entering it)."""
    get_context = getattr(task, "get_context", None)
    if get_context is None:  # a Future-like object from a custom factory
        return None
    ctx = get_context()
    return ctx if type(ctx) is Context else None


new_task_context: Final = task_context

#: 3.12's ``Task.get_coro()`` crashes the interpreter (a NULL return) for an eager task that
#: finished in its first step: its coroutine is already dropped (3.13 returns ``None``).
_GET_CORO_CRASHES: Final = sys.version_info[:2] == (3, 12)
_CORO_ATTRS: Final = ("cr_code", "gi_code")


def coro_of(task: Any) -> Any:
    """``task.get_coro()``, safe for any task: ``None`` where the task no longer holds its coroutine."""
    if _GET_CORO_CRASHES and task.done():
        # The coroutine, if still held, is the last coroutine among the task's references
        # (the C task visits its result before its coroutine).
        # Asked of the type: an instance's __getattr__ (the task's result or exception may be
        # any object of the program's) never runs.
        found = None
        for obj in gc.get_referents(task):
            kind = type(obj)
            if any(hasattr(kind, attr) for attr in _CORO_ATTRS):
                found = obj
        return found
    return task.get_coro()


def in_eager_first_step(task: Any, start: FrameType) -> bool:
    """Whether ``task`` runs its eager first step now: asyncio keeps such tasks in a set."""
    return EAGER_TASKS is not None and task in EAGER_TASKS
