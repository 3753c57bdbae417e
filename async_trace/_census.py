"""Task ages: when each live task was first seen, and since when its wait has not changed.

A census reads a loop's live tasks and notes, per task, the time it was first
seen alive and the time its wait last changed (the future it waits on, or the
point its coroutine is suspended at). The stall watchdog takes one for each
watched loop every ``discover_interval`` (1 s by default), from its own
thread: nothing runs per task created or per step, and a task that lives
less than the interval is mostly never seen. So both numbers are lower
bounds with the census's resolution: ``age``, how long the task has been
alive at least; ``idle``, how long at least it has waited on the same thing.
Without a running watch nothing is known (``None``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
import weakref
from typing import Any, Final

from ._compat import coro_of

__all__: list[str] = []

#: task -> [first seen, last change of its wait, its wait's signature] (``time.monotonic()``).
_seen: Final[weakref.WeakKeyDictionary[Any, list[Any]]] = weakref.WeakKeyDictionary()
_lock: Final = threading.Lock()


def _signature(task: Any) -> tuple[Any, int]:
    """What the task waits on now: the future (a weak reference: an id is reused once it is freed) and
    the suspension point of its coroutine."""
    waiter = getattr(task, "_fut_waiter", None)
    frame = getattr(coro_of(task), "cr_frame", None) if not task.done() else None
    ref: Any
    try:
        ref = weakref.ref(waiter) if waiter is not None else None
    except TypeError:  # a future-like object that cannot be weakly referenced
        ref = id(waiter)
    return (ref, frame.f_lasti if frame is not None else -1)


def _same(old: tuple[Any, int], new: tuple[Any, int]) -> bool:
    """Whether a task waits on the same thing as at the last census (a dead future is not the same)."""
    if old[1] != new[1]:
        return False
    before, now = old[0], new[0]
    if isinstance(before, weakref.ref) and isinstance(now, weakref.ref):
        held = before()
        return held is not None and held is now()
    return bool(before == now)


def take(loop: Any) -> None:
    """One census of ``loop``'s live tasks (any thread)."""
    now = time.monotonic()
    tasks: list[Any] = []
    for _ in range(10):
        try:
            tasks = list(asyncio.all_tasks(loop))
            break
        except RuntimeError:  # changed size while copied, in another thread: again
            continue
    with _lock:
        for task in tasks:
            try:
                signature = _signature(task)
                entry = _seen.get(task)
                if entry is None:
                    _seen[task] = [now, now, signature]
                elif not _same(entry[2], signature):
                    entry[1] = now
                    entry[2] = signature
            except TypeError:  # a Future-like object from a custom factory, not weakly referenceable
                continue


def ages(task: Any) -> tuple[float | None, float | None]:
    """``(age, idle)`` of ``task`` in seconds, as the censuses saw it; ``(None, None)`` if never seen."""
    if task is None:
        return None, None
    try:
        entry = _seen.get(task)
    except TypeError:
        return None, None
    if entry is None:
        return None, None
    now = time.monotonic()
    return now - entry[0], now - entry[1]


def prune(roots: tuple[Any, ...], min_age: float | None, min_idle: float | None) -> tuple[Any, ...]:
    """The ``TaskInfo`` trees keeping only the tasks at least that old / idle, and the entries above them.

    A task of unknown age or idleness does not match a limit. Iterative: a
    chain of tasks may be deeper than the recursion limit.
    """

    def matches(info: Any) -> bool:
        if min_age is not None and (info.age is None or info.age < min_age):
            return False
        return not (min_idle is not None and (info.idle is None or info.idle < min_idle))

    # Post-order over the trees: each entry after its children.
    order: list[Any] = []
    todo = list(roots)
    while todo:
        info = todo.pop()
        order.append(info)
        todo.extend(info.children)
    kept: dict[int, Any] = {}
    for info in reversed(order):
        children = tuple(kept[id(child)] for child in info.children if id(child) in kept)
        if children or matches(info):
            kept[id(info)] = dataclasses.replace(info, children=children) if children != info.children else info
    return tuple(kept[id(root)] for root in roots if id(root) in kept)
