"""Recording origins as exceptions unwind (3.12+): a ``sys.monitoring`` ``PY_UNWIND`` callback.

The strategy :mod:`._recorders` chooses where ``sys.monitoring`` exists. The
callback records on the exception the chain node of the first task it leaves
(the one that raised it), or of the executor hop in whose thread it was
raised. Every frame an exception leaves costs one call of it (about 0.12 us),
which returns after a flag test, a ContextVar read and an identity test unless
the frame is a task's coroutine. With eager notes it also adds the note then.
"""

from __future__ import annotations

import asyncio
import asyncio.events
import sys
from collections.abc import Callable
from types import CodeType, FrameType
from typing import Any, Final

from ._chain import CURRENT, ExecutorNode
from ._compat import HAS_MONITORING
from ._config import settings
from ._failsafe import warn_internal
from ._frames import USER, frame_kind
from ._lineage import own_in_first_step
from ._notes import note
from ._origins import CORO_FLAGS, NOT_FAILURES, Origin, Shown, make_origin, record_of, set_recording, store
from ._speedups import CORE

__all__: list[str] = []

_get_current: Final = CURRENT.get
_get_running_loop: Final = asyncio.events._get_running_loop
_current_task: Final = asyncio.current_task
_tuple_new: Final = tuple.__new__


def _on_unwind(code: CodeType, offset: int, exc: BaseException) -> None:
    """``PY_UNWIND``: record where ``exc`` was raised as it leaves the task's coroutine.

    Runs for every frame an exception leaves, in every thread, so the common
    cases return after a flag test, a ContextVar read and an identity test:
    a task's node holds the code of the task's coroutine, so leaving the
    task is leaving a frame of that code (in a recursion, maybe an inner
    one: the same task all the same). The first task left is the one that
    raised it; later ones see the record. In an executor thread the record
    is made at the first frame left, whose context holds the hop's node.
    An exception caught inside its task is never recorded: when it is
    printed there, the running task is its origin (see :func:`_caught_here`).
    """
    # Nothing may leave this callback: an exception raised here replaces the program's in flight.
    try:
        if code.co_flags & CORO_FLAGS:
            node = _get_current()
            if node is None or node.code is not code:
                return  # not leaving a traced task
            origin = record_of(exc)
            if origin is not None and (not settings.eager_notes or type(origin) is Shown):
                return  # recorded when it left an inner task
            if origin is None:
                if not isinstance(exc, Exception) or isinstance(exc, NOT_FAILURES):
                    return  # cancellation, exits, iteration: not failures
                loop = _get_running_loop()
                task = _current_task(loop) if loop is not None else None
                if task is not None:
                    node = own_in_first_step(task, node)
                store(exc, make_origin(node, task))
            if settings.eager_notes:
                note(exc, settings.note_style)
        elif (
            type(_get_current()) is ExecutorNode
            and record_of(exc) is None
            and isinstance(exc, Exception)
            and not isinstance(exc, NOT_FAILURES)
            and _leaves_the_call(sys._getframe(1))
        ):
            store(exc, _tuple_new(Origin, (_get_current(), None, None)))
            if settings.eager_notes:
                note(exc, settings.note_style, early=True)
    except Exception as err:  # noqa: BLE001 - never disturb the exception in flight
        warn_internal(err, "recording an exception's origin")


def _leaves_the_call(frame: FrameType) -> bool:
    """Whether the unwinding ``frame`` is the executor function's own: its caller is the pool's.

    Not a frame the function called and that caught its exception, nor a
    ``__del__`` the garbage collector ran in that thread (a ``ResourceWarning``
    turned error): those exceptions did not leave the call.
    """
    caller = frame.f_back
    return caller is None or frame_kind(caller.f_code) != USER


#: The callback registered: the compiled core's early returns in front of :func:`_on_unwind`, or it alone.
callback: Final[Callable[[CodeType, int, BaseException], Any]] = _on_unwind if CORE is None else CORE.on_unwind
if CORE is not None:
    CORE.setup_unwind(_on_unwind, CORO_FLAGS)

#: Ids sys.monitoring leaves unassigned (0 debugger, 1 coverage, 2 profiler, 5 optimizer).
_TOOL_IDS: Final = (4, 3)
_tool: int | None = None


def install() -> None:
    """Register the callback under a free tool id (none free: origins are found when printed)."""
    global _tool
    if not HAS_MONITORING or _tool is not None:
        return
    mon: Any = getattr(sys, "monitoring")  # noqa: B009 - not in 3.10's stubs
    for tool in _TOOL_IDS:
        if mon.get_tool(tool) is None:
            mon.use_tool_id(tool, "async_trace")
            break
    else:
        return  # every free id is taken: the task is found when printing
    mon.register_callback(tool, mon.events.PY_UNWIND, callback)
    mon.set_events(tool, mon.events.PY_UNWIND)
    _tool = tool
    set_recording(True)


def uninstall() -> None:
    """Unregister the callback and free the tool id."""
    global _tool
    if _tool is None:
        return
    set_recording(False)
    mon: Any = getattr(sys, "monitoring")  # noqa: B009
    mon.set_events(_tool, 0)
    mon.register_callback(_tool, mon.events.PY_UNWIND, None)
    mon.free_tool_id(_tool)
    _tool = None
