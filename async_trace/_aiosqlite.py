"""aiosqlite's connection thread as an executor hop.

aiosqlite runs every call on a connection (``execute``, ``fetchall``,
``commit``, a cursor's calls ...) in one thread per connection, fed by a queue:
``Connection._execute`` wraps the call in a ``functools.partial`` and puts it
there, and the thread calls it in the thread's own context, where no chain
is: an SQL function of yours (``create_function``), an adapter, a converter or
a row factory running there, or an exception raised there, would name no task.

The hook is ``Connection._execute`` (a coroutine function), replaced by a
plain function (no coroutine of ours: no frame of ours on the stack) that
captures an :class:`ExecutorNode` at the first coroutine outside aiosqlite
awaiting the call (the line of yours that awaited ``execute``), and hands
aiosqlite the call wrapped in a frameless context call that runs it in a copy
of the task's context holding that node. Traces taken in the thread stop at
the thread's loop (``_connection_worker_thread``), as at a thread pool's. The
task tree does not list the thread: the call it runs is aiosqlite's
``partial`` around ours. Every fact about aiosqlite the package relies on is in
this module.
"""

from __future__ import annotations

import asyncio.events
import functools
import inspect
import os
import sys
from collections.abc import Callable
from contextvars import copy_context
from types import CodeType, FrameType
from typing import Any, Final

from ._capture import capture
from ._chain import CURRENT, ExecutorNode
from ._contexts import ContextCall
from ._failsafe import warn_internal
from ._frames import add_entry_code
from ._hooks import HookSet, Target

__all__: list[str] = []

#: The module holding ``Connection``.
MODULE: Final = "aiosqlite.core"
NAME: Final = "_execute"
#: How deep to look for the coroutine awaiting aiosqlite (its own calls nest two or three deep).
_MAX_OWN_FRAMES: Final = 8

_set_current: Final = CURRENT.set
#: Read by the wrapper: off turns a wrapper left inside someone else's patch into a pass-through.
_active = False


def connection_class() -> Any:
    """aiosqlite's ``Connection`` class, if ``aiosqlite.core`` is imported; else ``None``."""
    cls = getattr(sys.modules.get(MODULE), "Connection", None)
    return cls if isinstance(cls, type) and callable(vars(cls).get(NAME)) else None


def _package_dir() -> str | None:
    module = sys.modules.get(MODULE)
    filename = getattr(module, "__file__", None)
    return os.path.dirname(filename) + os.sep if isinstance(filename, str) else None


def _awaiting(frame: FrameType) -> FrameType:
    """The first frame from ``frame`` down that is not aiosqlite's: where the call was awaited."""
    own = _package_dir()
    if own is None:
        return frame
    found: FrameType | None = frame
    for _ in range(_MAX_OWN_FRAMES):
        if found is None:
            return frame
        if not found.f_code.co_filename.startswith(own):
            return found
        found = found.f_back
    return frame


def _make_execute(original: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap ``Connection._execute``: see above."""

    def _execute(self: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
        # A plain function returning aiosqlite's coroutine: no frame of ours stays on the stack.
        if _active and callable(fn):
            try:
                node = capture(ExecutorNode, asyncio.events._get_running_loop(), _awaiting(sys._getframe(1)))
                ctx = copy_context()
                ctx.run(_set_current, node)
                fn = ContextCall(ctx, fn)
            except Exception as exc:  # noqa: BLE001 - never break the call
                warn_internal(exc, "capturing an aiosqlite call")
        return original(self, fn, *args, **kwargs)

    functools.update_wrapper(_execute, original)
    mark = getattr(inspect, "markcoroutinefunction", None)  # 3.12+: answer as aiosqlite's coroutine function did
    if mark is not None:
        mark(_execute)
    _execute.__async_trace_wrapper__ = True  # type: ignore[attr-defined]  # our marker, on a function
    return _execute


def _targets() -> list[Target]:
    found = connection_class()
    return [] if found is None else [(found, NAME, _make_execute)]


def _on() -> None:
    global _active
    _active = True
    worker = getattr(getattr(sys.modules.get(MODULE), "_connection_worker_thread", None), "__code__", None)
    if isinstance(worker, CodeType):
        add_entry_code(worker, "function")  # the thread's loop, ``result = function()``: cut there


def _off() -> None:
    global _active
    _active = False


#: aiosqlite's connection-thread hop, once ``aiosqlite.core`` is imported, before or after us
#: (``_api.HOOK_SETS``).
HOOKS: Final = HookSet("aiosqlite", _targets, on=_on, off=_off, watch=(MODULE,))
