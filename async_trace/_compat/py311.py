"""Python 3.11: ``context=`` for tasks, PEP 678 notes."""

from __future__ import annotations

from typing import Final

from .py310 import (
    ASYNCIO_REGISTRY,
    C_TASK_LISTS,
    EAGER_TASKS,
    HAS_EAGER_TASKS,
    HAS_MONITORING,
    TASK_REGISTRIES,
    awaited_by,
    coro_of,
    frame_module,
    in_eager_first_step,
    is_coroutine_function,
    new_task_context,
    task_context,
    work_item_fn,
)

__all__ = [
    "ASYNCIO_REGISTRY",
    "C_TASK_LISTS",
    "EAGER_TASKS",
    "HAS_EAGER_TASKS",
    "HAS_MONITORING",
    "TASK_REGISTRIES",
    "awaited_by",
    "coro_of",
    "frame_module",
    "in_eager_first_step",
    "is_coroutine_function",
    "new_task_context",
    "task_context",
    "work_item_fn",
]

HAS_CONTEXT_ARG: Final = True
HAS_NOTES: Final = True
HAS_CODE_POSITIONS: Final = True


def add_note(exc: BaseException, text: str) -> None:
    exc.add_note(text)  # type: ignore[attr-defined,unused-ignore]  # 3.11+
