"""Python 3.14 and later: C tasks in per-thread lists, asyncio's own awaiter bookkeeping."""

from __future__ import annotations

import asyncio.base_events
import asyncio.coroutines
import asyncio.events
from collections.abc import Callable
from types import FrameType
from typing import Any, Final

from .py310 import TASK_REGISTRIES
from .py311 import HAS_CODE_POSITIONS, HAS_CONTEXT_ARG, HAS_NOTES, add_note
from .py312 import HAS_EAGER_TASKS, HAS_MONITORING, frame_module, new_task_context, task_context

__all__ = [
    "HAS_CODE_POSITIONS",
    "HAS_CONTEXT_ARG",
    "HAS_EAGER_TASKS",
    "HAS_MONITORING",
    "HAS_NOTES",
    "TASK_REGISTRIES",
    "add_note",
    "frame_module",
    "new_task_context",
    "task_context",
]

C_TASK_LISTS: Final = True
#: No Python registry: the C constructor registers tasks in the thread state's list.
ASYNCIO_REGISTRY: Final[Any] = None
#: Eager first steps are no longer tracked in a Python-visible set.
EAGER_TASKS: Final[Any] = None

_HANDLE_RUN: Final = asyncio.events.Handle._run.__code__


def coro_of(task: Any) -> Any:
    """``task.get_coro()`` (``None`` once a task finished in its first step)."""
    return task.get_coro()


def in_eager_first_step(task: Any, start: FrameType) -> bool:
    """Whether ``task`` runs its eager first step now, told from the frame that called its coroutine.

    A stdlib loop runs every later step from ``Handle._run``; an eager first
    step runs from the frame that built the task. (uvloop runs steps from C:
    no frame tells them apart there.)
    """
    return start.f_code is not _HANDLE_RUN and isinstance(task.get_loop(), asyncio.base_events.BaseEventLoop)


def awaited_by(fut: Any) -> tuple[Any, ...]:
    """What asyncio's own bookkeeping says awaits ``fut`` (``_asyncio_awaited_by``, as ``capture_call_graph`` reads)."""
    return tuple(getattr(fut, "_asyncio_awaited_by", None) or ())


def work_item_fn(owner: Any) -> Any:
    """The function a thread pool's work item runs: its ``task``, the ``(fn, args, kwargs)`` of WorkerContext."""
    task = getattr(owner, "task", None)
    return task[0] if type(task) is tuple and task else getattr(owner, "fn", None)


# 3.14 deprecates asyncio.iscoroutinefunction; asyncio's debug-mode check uses the private one.
is_coroutine_function: Final[Callable[[Any], bool]] = (
    getattr(asyncio.coroutines, "_iscoroutinefunction", None) or asyncio.coroutines.iscoroutinefunction
)
