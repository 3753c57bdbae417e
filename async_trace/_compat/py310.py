"""Python 3.10: the base every later version's module starts from."""

from __future__ import annotations

import asyncio
import asyncio.coroutines
import asyncio.tasks
import gc
from collections.abc import Callable
from contextvars import Context
from types import FrameType
from typing import Any, Final

__all__: list[str] = []

HAS_CONTEXT_ARG: Final = False
HAS_NOTES: Final = False
HAS_CODE_POSITIONS: Final = False
HAS_MONITORING: Final = False
C_TASK_LISTS: Final = False

ASYNCIO_REGISTRY: Final[Any] = getattr(asyncio.tasks, "_all_tasks", None)
TASK_REGISTRIES: Final[tuple[Any, ...]] = tuple(
    registry
    for registry in (getattr(asyncio.tasks, name, None) for name in ("_all_tasks", "_scheduled_tasks", "_eager_tasks"))
    if registry is not None
)
EAGER_TASKS: Final[Any] = None
HAS_EAGER_TASKS: Final = False
frame_module: Final[Callable[[int], str | None] | None] = None


def task_context(task: Any) -> Context | None:
    """The ``contextvars.Context`` a task runs in (without entering it)."""
    ctx = getattr(task, "_context", None)  # the pure-Python Task
    if type(ctx) is Context:
        return ctx
    # 3.10/3.11's C Task does not expose its context, but reports it to the
    # garbage collector, first among its referents.
    for obj in gc.get_referents(task):
        if type(obj) is Context:
            return obj
    return None


def new_task_context(task: Any) -> Context | None:
    """The Context a task just built will run in, or ``None`` if it cannot be reached.

    Its first step was just scheduled with ``loop.call_soon`` (the constructor
    does that right before registering), so the last handle of the loop's
    ready queue holds the task's context.
    """
    loop = task.get_loop()
    ready = getattr(loop, "_ready", None)
    if not ready:
        return None
    handle = ready[-1]
    callback = getattr(handle, "_callback", None)
    if type(callback).__name__ != "TaskStepMethWrapper":
        return None
    ctx = getattr(handle, "_context", None)
    return ctx if type(ctx) is Context else None


def coro_of(task: Any) -> Any:
    """``task.get_coro()``, safe for any task: ``None`` where the task no longer holds its coroutine."""
    return task.get_coro()


def in_eager_first_step(task: Any, start: FrameType) -> bool:
    """Whether ``task`` runs its eager first step now (``start``: the frame that called its coroutine).

    No eager tasks before 3.12.
    """
    return False


def awaited_by(fut: Any) -> tuple[Any, ...]:
    """What asyncio's own bookkeeping says awaits ``fut`` (3.14+); before 3.14, nothing."""
    return ()


def work_item_fn(owner: Any) -> Any:
    """The function a ``concurrent.futures`` thread pool's work item ``owner`` runs."""
    return getattr(owner, "fn", None)


def add_note(exc: BaseException, text: str) -> None:
    """PEP 678's attribute, as its backports and error trackers read it (3.10 has no ``add_note``)."""
    notes = getattr(exc, "__notes__", None)
    if notes is None:
        exc.__notes__ = [text]  # type: ignore[attr-defined,unused-ignore]
    elif isinstance(notes, list):
        notes.append(text)


# asyncio's own predicate, as its debug-mode check uses it.
is_coroutine_function: Final[Callable[[Any], bool]] = asyncio.coroutines.iscoroutinefunction
