"""Discovery of live state in any thread: who awaits whom, executor threads, running loops.

Read by the task tree (:mod:`._tree`) and the dumps (:mod:`._dump`) when they
are asked for; nothing here runs on the capture path. Every reader tolerates
another thread changing what it reads (a debugging aid must not raise).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sys
import threading
from collections.abc import Callable
from types import CodeType, FrameType
from typing import Any, Final

from ._chain import CURRENT, ExecutorNode
from ._collect import append_frames, loop_of, registered_tasks
from ._compat import awaited_by
from ._contexts import call_context, entered_call
from ._failsafe import warn_internal
from ._frames import resolve_uncached
from ._loops import seen_loops
from ._stack import walk
from ._types import TraceFrame

__all__: list[str] = []

#: ``(thread name, thread ident, its frames innermost first)``: an ExecutorThread's fields.
ExecutorThreadData = tuple[str, int, tuple[TraceFrame, ...]]


# --- who awaits whom ------------------------------------------------------------
#
# Read from asyncio's private attributes, each through getattr with a default:
# ``task._fut_waiter`` (the future a pending task's coroutine waits on, every
# version), a gather's ``_GatheringFuture._children``, shield's callbacks (the
# closures hold the inner and outer futures), a TaskGroup's ``_on_task_done``
# callback on each of its tasks (its ``_parent_task``), and on 3.14+ asyncio's
# own bookkeeping, ``future._asyncio_awaited_by`` (what
# ``asyncio.capture_call_graph`` reads). Nothing found here is kept.

_GATHERING: Final[type | None] = getattr(asyncio.tasks, "_GatheringFuture", None)
_TASK_GROUP: Final[type | None] = getattr(asyncio, "TaskGroup", None)
_ON_TASK_DONE: Final[Any] = getattr(_TASK_GROUP, "_on_task_done", None)
#: Futures followed from one waiting task, at most (a debugging aid must not hang).
_MAX_FOLLOWED: Final = 10_000


def _nested_code(func: Any, name: str) -> CodeType | None:
    code = getattr(func, "__code__", None)
    for const in getattr(code, "co_consts", ()):
        if type(const) is CodeType and const.co_name == name:
            return const
    return None


#: shield()'s callbacks: on the outer future (holds ``inner``), on the inner one (holds ``outer``).
_SHIELD_OUTER_DONE: Final = _nested_code(asyncio.tasks.shield, "_outer_done_callback")
_SHIELD_INNER_DONE: Final = _nested_code(asyncio.tasks.shield, "_inner_done_callback")
#: asyncio.wait()'s callback on each awaited future (holds the ``waiter`` future its caller awaits).
_WAIT_COMPLETION: Final = _nested_code(getattr(asyncio.tasks, "_wait", None), "_on_completion")
#: ``functools.partial(_release_waiter, waiter)``: wait_for() on 3.10/3.11 (and asyncio's cancel-and-wait).
_RELEASE_WAITER: Final[Any] = getattr(asyncio.tasks, "_release_waiter", None)


def _callbacks(fut: Any) -> list[Any]:
    """The callables of ``fut``'s done callbacks (``(callback, context)`` pairs in asyncio)."""
    out = []
    for item in getattr(fut, "_callbacks", None) or ():
        out.append(item[0] if type(item) is tuple and item else item)
    return out


def _closure_value(func: Any, code: CodeType | None, name: str) -> Any:
    """The value of the free variable ``name`` of ``func`` if ``func`` runs ``code``, else ``None``."""
    if code is None or name not in code.co_freevars:
        return None
    index = code.co_freevars.index(name)
    if getattr(func, "__code__", None) is not code:
        return None
    cells = getattr(func, "__closure__", None) or ()
    if index >= len(cells):
        return None
    try:
        return cells[index].cell_contents
    except ValueError:  # an empty cell
        return None


def _tasks_reached(start: list[Any], expand: Callable[[Any], list[Any]]) -> list[Any]:
    """The tasks met walking from ``start``: a task is kept, any other future is replaced by ``expand(it)``.

    Bounded (``_MAX_FOLLOWED`` futures) and cycle-safe.
    """
    out: list[Any] = []
    seen: set[int] = set()
    todo = list(start)
    while todo and len(seen) < _MAX_FOLLOWED:
        fut = todo.pop()
        if id(fut) in seen:
            continue
        seen.add(id(fut))
        if isinstance(fut, asyncio.Task):
            out.append(fut)
        else:
            todo.extend(expand(fut))
    return out


def _inside(fut: Any) -> list[Any]:
    """What a task waiting on ``fut`` waits for through it: a gather's children, shield's inner future."""
    if _GATHERING is not None and isinstance(fut, _GATHERING):
        return list(getattr(fut, "_children", None) or ())
    inner = (_closure_value(callback, _SHIELD_OUTER_DONE, "inner") for callback in _callbacks(fut))
    return [future for future in inner if future is not None]


def _awaited_tasks(fut: Any) -> list[Any]:
    """The tasks a task waiting on ``fut`` (its ``_fut_waiter``) is awaiting through it.

    A task is itself; a gather's future, its children; shield's outer
    future, the inner one; any of these nested. Another future: none.
    """
    return _tasks_reached([fut], _inside)


def _registered_waiters(task: Any, waiting_on: dict[int, list[Any]]) -> list[Any]:
    """The tasks asyncio's 3.14+ bookkeeping says await ``task``, a waiting future resolved to its tasks."""

    def awaiting(fut: Any) -> list[Any]:  # a future standing between: whoever awaits it
        return [*awaited_by(fut), *waiting_on.get(id(fut), ())]

    return _tasks_reached(list(awaited_by(task)), awaiting)


def _callback_waiters(task: Any, waiting_on: dict[int, list[Any]]) -> list[Any]:
    """Awaiters found through ``task``'s done callbacks: its TaskGroup's parent; who awaits shield, wait, wait_for."""
    out: list[Any] = []
    for callback in _callbacks(task):
        group = getattr(callback, "__self__", None)
        if _TASK_GROUP is not None and isinstance(group, _TASK_GROUP):
            func = getattr(callback, "__func__", None)
            # 3.11: our wrapper records a failed child's origin (see _record_callbacks).
            if func is _ON_TASK_DONE or getattr(func, "__wrapped__", None) is _ON_TASK_DONE:
                parent = getattr(group, "_parent_task", None)
                if parent is not None:
                    out.append(parent)
            continue
        # A future the awaiter waits on, which this task's end completes.
        between = _closure_value(callback, _SHIELD_INNER_DONE, "outer")
        if between is None:
            between = _closure_value(callback, _WAIT_COMPLETION, "waiter")
        if between is None and type(callback) is functools.partial and callback.func is _RELEASE_WAITER:
            between = callback.args[0] if callback.args else None
        if between is not None:
            out.extend(waiting_on.get(id(between), ()))
    return out


def awaiter_edges(tasks: list[Any]) -> dict[int, list[Any]]:
    """``id(task)`` -> the tasks awaiting it now, for ``tasks`` (a loop's). May repeat a waiter."""
    edges: dict[int, list[Any]] = {}
    waiting_on: dict[int, list[Any]] = {}  # id(future) -> the tasks whose _fut_waiter it is
    for waiter in tasks:
        fut = getattr(waiter, "_fut_waiter", None)
        if fut is None:
            continue
        waiting_on.setdefault(id(fut), []).append(waiter)
        for awaited in _awaited_tasks(fut):
            edges.setdefault(id(awaited), []).append(waiter)
    for task in tasks:
        found = _registered_waiters(task, waiting_on)
        found += _callback_waiters(task, waiting_on)
        if found:
            edges.setdefault(id(task), []).extend(found)
    return edges


# --- executor threads ---------------------------------------------------------


def executor_threads() -> list[tuple[Any, ExecutorThreadData]]:
    """``(task that made the call, thread)`` for every thread running a traced executor call now."""
    names: dict[int | None, str] = {thread.ident: thread.name for thread in threading.enumerate()}
    out: list[tuple[Any, ExecutorThreadData]] = []
    me = threading.get_ident()
    for ident, top in sys._current_frames().items():
        if ident == me:
            continue
        try:
            found = _executor_call(top, ident, names)
        except Exception as exc:  # noqa: BLE001 - another thread's frames change under us: skip it
            warn_internal(exc, "reading an executor thread's stack")
            continue
        if found is not None:
            out.append(found)
    return out


def _executor_call(top: FrameType, ident: int, names: dict[int | None, str]) -> tuple[Any, ExecutorThreadData] | None:
    """``(task that made the call, thread)`` if the thread with frame ``top`` runs a traced executor call."""
    frame = entered_call(top)
    ctx = call_context(frame) if frame is not None else None
    node = ctx.get(CURRENT) if ctx is not None else None
    if type(node) is not ExecutorNode:
        return None
    creator = node.creator
    if creator is None:
        return None
    # The thread's frames down to the pool's, which collection cuts at.
    frames: list[TraceFrame] = []
    append_frames(frames, resolve_uncached(walk(top, frame, remember=False)), None, False)
    return creator, (names.get(ident, f"<thread {ident}>"), ident, tuple(frames))


def running_loops() -> list[asyncio.AbstractEventLoop]:
    """Every event loop running now, in any thread.

    Found through the live tasks' loops (asyncio's task registries: every
    task up to 3.13, only pure-Python tasks from 3.14, which keeps C tasks in
    per-thread lists), the loops that started a traced root task, and the
    ``run_forever`` frames on every thread's stack (loops started before
    tracing was on).
    """
    loops: dict[int, Any] = {}

    def add(loop: Any) -> None:
        if loop is not None and id(loop) not in loops and isinstance(loop, asyncio.AbstractEventLoop):
            with contextlib.suppress(Exception):  # a broken third-party loop: leave it out
                if loop.is_running() and not loop.is_closed():
                    loops[id(loop)] = loop

    add(asyncio.events._get_running_loop())
    for task in registered_tasks():
        add(loop_of(task))
    for loop, _ in seen_loops():
        add(loop)
    for loop, _ in _loops_on_stacks():
        add(loop)
    return list(loops.values())


_RUN_FOREVER: Final = frozenset({"run_forever", "_run_once"})


def _loops_on_stacks() -> list[tuple[Any, int]]:
    """``(loop, thread id)`` for every ``run_forever`` / ``_run_once`` frame of an event loop, in any thread."""
    found: list[tuple[Any, int]] = []
    for ident, top in sys._current_frames().items():
        frame: FrameType | None = top
        for _ in range(10_000):  # a debugging aid must not hang on a strange stack
            if frame is None:
                break
            if frame.f_code.co_name in _RUN_FOREVER:
                try:
                    owner = frame.f_locals.get("self")
                except Exception:  # noqa: BLE001 - another thread's frame changes under us
                    owner = None
                if isinstance(owner, asyncio.AbstractEventLoop):
                    found.append((owner, ident))
                    break
            frame = frame.f_back
    return found
