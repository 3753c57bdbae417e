"""Event loops: every fact about a loop's kind (stdlib or uvloop) and which thread runs it.

uvloop's ``Loop`` implements ``create_task``, ``run_in_executor`` and
``default_exception_handler`` in Cython, hides its task factory and thread id
from Python, and runs callbacks from C; ``uvloop.run()`` runs the program's
coroutine inside a ``wrapper()`` coroutine of its own. Every such fact is
here, and so is the registry of loops that made a root task while tracing was
on (:func:`note_loop`), which is how a loop running in C in another thread is
found (:func:`loop_thread`).
"""

from __future__ import annotations

import asyncio
import asyncio.base_events
import asyncio.events
import contextlib
import os
import sys
import threading
from typing import Any, Final
from weakref import WeakKeyDictionary

__all__: list[str] = []

#: uvloop's module: the hooks that patch ``uvloop.Loop`` watch for its import.
UVLOOP_MODULE: Final = "uvloop"
#: ``uvloop.run()`` runs the user's coroutine inside its own ``wrapper()`` coroutine: this file, that function.
UVLOOP_RUNNER_FILE: Final = os.sep + os.path.join("uvloop", "__init__.py")
UVLOOP_RUNNER_FUNCTION: Final = "wrapper"
#: ``uvloop.Loop``'s methods that make a server; it starts listening in C, no ``Server._start_serving`` of Python's.
UVLOOP_SERVER_METHODS: Final = ("create_server", "create_unix_server")
#: Where a stdlib loop keeps its task factory; uvloop keeps its own in C, out of Python's reach.
TASK_FACTORY_ATTR: Final = "_task_factory"
#: What ``loop_factory()`` returns for a loop whose task factory Python cannot read (uvloop's).
UNREADABLE: Final = object()
#: Task factories known to accept ``context=`` (asyncio's eager one, 3.12+).
CONTEXT_FACTORIES: Final = tuple(f for f in (getattr(asyncio, "eager_task_factory", None),) if f is not None)


def uvloop_loop_class() -> type | None:
    """``uvloop.Loop``, once uvloop is imported (the hooks patch it then); else ``None``."""
    uvloop = sys.modules.get(UVLOOP_MODULE)
    loop_cls = getattr(uvloop, "Loop", None) if uvloop is not None else None
    return loop_cls if isinstance(loop_cls, type) else None


def runs_in_c(loop: Any) -> bool:
    """Whether ``loop`` runs its callbacks from C (not a stdlib ``BaseEventLoop``: uvloop)."""
    return not isinstance(loop, asyncio.base_events.BaseEventLoop)


def loop_factory(loop: Any) -> Any:
    """``loop``'s task factory as the loop itself reads it, or :data:`UNREADABLE` (uvloop keeps it in C)."""
    return getattr(loop, TASK_FACTORY_ATTR, UNREADABLE)


#: Loops that created a root task while tracing was on (``asyncio.run``,
#: ``run_until_complete``, a loop in a thread), with the thread they did it
#: in. From 3.14 C tasks live in per-thread lists that Python cannot
#: enumerate, so this is how a dump finds a loop running in another thread
#: when no Python frame of it shows (uvloop runs its loop in C, and keeps its
#: thread id where Python cannot read it). Roots are rare: the hot path never
#: touches it.
_loops: Final[WeakKeyDictionary[Any, int]] = WeakKeyDictionary()


def note_loop(loop: Any) -> None:
    """``loop`` made a root task in this thread (see :data:`_loops`)."""
    with contextlib.suppress(TypeError):  # a loop type without weak references
        _loops[loop] = threading.get_ident()


def seen_loops() -> list[tuple[Any, int]]:
    """``(loop, thread id)`` for the loops :data:`_loops` holds (copied; retried if another thread changes it)."""
    for _ in range(100):
        try:
            return list(_loops.items())
        except RuntimeError:
            continue
    return []


def passes_context(loop: Any) -> bool:
    """Whether ``loop.create_task(coro, context=ctx)`` is safe to call.

    Only when the loop calls Task() itself, or its factory is asyncio's
    eager_task_factory: a factory written for 3.10 may not accept ``context=``.
    """
    factory = loop_factory(loop)
    if factory is UNREADABLE:  # not a BaseEventLoop (uvloop)
        try:
            factory = loop.get_task_factory()
        except Exception:  # noqa: BLE001 - an exotic loop: do not guess
            return False
    return factory is None or factory in CONTEXT_FACTORIES


def loop_thread(loop: Any) -> int | None:
    """The ``threading.get_ident()`` of the thread running ``loop`` now; ``None`` if not running or not known."""
    try:
        if not loop.is_running():
            return None
    except Exception:  # noqa: BLE001 - a broken third-party loop: not known
        return None
    ident = getattr(loop, "_thread_id", None)
    if isinstance(ident, int):
        return ident
    if loop is asyncio.events._get_running_loop():
        return threading.get_ident()
    for seen, thread in seen_loops():
        if seen is loop:
            return thread
    return None
