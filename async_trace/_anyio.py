"""anyio's worker threads as executor hops.

``anyio.to_thread.run_sync`` (and so Starlette's ``run_in_threadpool``,
FastAPI's plain ``def`` endpoints and dependencies) runs its function in
anyio's own ``WorkerThread``s, fed by a queue: no ``run_in_executor``. The
hook is the asyncio backend's ``run_sync_in_worker_thread`` classmethod,
replaced by a plain function (no coroutine of ours: an exception from the
thread never passes through a frame of ours) that captures an
:class:`ExecutorNode` at the coroutine awaiting ``to_thread.run_sync`` and
hands anyio the function wrapped in a frameless context call that runs it in a
copy of the task's context holding that node. anyio sets sniffio's current
library to ``None`` in the context it runs the function in; the copy does the
same, so the function sees exactly what it sees untraced. Every fact about anyio the
package relies on is in this module.
"""

from __future__ import annotations

import asyncio.events
import functools
import sys
from collections.abc import Callable
from contextvars import copy_context
from typing import Any, Final

from ._capture import capture
from ._chain import CURRENT, ExecutorNode
from ._contexts import ContextCall
from ._failsafe import warn_internal
from ._frames import add_entry_code
from ._hooks import HookSet, Target

__all__: list[str] = []

_set_current: Final = CURRENT.set
#: Read by the wrapper: off turns a wrapper left inside someone else's patch into a pass-through.
_active = False

#: The module holding anyio's asyncio backend.
MODULE: Final = "anyio._backends._asyncio"
NAME: Final = "run_sync_in_worker_thread"


def backend() -> Any:
    """anyio's asyncio backend class, if anyio's asyncio backend is imported; else ``None``."""
    module = sys.modules.get(MODULE)
    cls = getattr(module, "AsyncIOBackend", None) if module is not None else None
    return cls if isinstance(cls, type) and NAME in vars(cls) else None


def worker_run_code() -> Any:
    """The code of ``WorkerThread.run``: where an anyio worker thread starts running user code."""
    module = sys.modules.get(MODULE)
    run = getattr(getattr(module, "WorkerThread", None), "run", None)
    return getattr(run, "__code__", None)


def to_thread_code() -> Any:
    """The code of ``anyio.to_thread.run_sync``, whose caller is the awaiting coroutine."""
    module = sys.modules.get("anyio.to_thread")
    return getattr(getattr(module, "run_sync", None), "__code__", None)


def _make_run_sync_in_worker_thread(original: Any) -> Any:
    """Wrap anyio's ``AsyncIOBackend.run_sync_in_worker_thread`` (a classmethod): see above."""
    function: Callable[..., Any] = original.__func__

    def run_sync_in_worker_thread(cls: Any, func: Any, *args: Any, **kwargs: Any) -> Any:
        # A plain function returning anyio's coroutine: no frame of ours
        # stays on the stack while the thread runs, or in its tracebacks.
        if _active and callable(func):
            try:
                frame: Any = sys._getframe(1)
                if frame.f_code is to_thread_code() and frame.f_back is not None:
                    frame = frame.f_back  # the coroutine awaiting to_thread.run_sync
                node = capture(ExecutorNode, asyncio.events._get_running_loop(), frame)
                ctx = copy_context()
                ctx.run(_set_current, node)
                # What anyio does to the context it runs the function in.
                setter = getattr(sys.modules.get(MODULE), "set_current_async_library", None)
                if setter is not None:
                    ctx.run(setter, None)
                func = ContextCall(ctx, func)
            except Exception as exc:  # noqa: BLE001 - never break the hop
                warn_internal(exc, "capturing an anyio worker-thread call")
        return function(cls, func, *args, **kwargs)

    functools.update_wrapper(run_sync_in_worker_thread, function)
    run_sync_in_worker_thread.__wrapped__ = original  # type: ignore[attr-defined]
    wrapper = classmethod(run_sync_in_worker_thread)
    # A classmethod's own __wrapped__ is read-only (the function): the original is kept here.
    wrapper.__async_trace_wrapper__ = True  # type: ignore[attr-defined]
    wrapper.__async_trace_original__ = original  # type: ignore[attr-defined]
    return wrapper


def _targets() -> list[Target]:
    found = backend()
    return [] if found is None else [(found, NAME, _make_run_sync_in_worker_thread)]


def _on() -> None:
    global _active
    _active = True
    worker_run = worker_run_code()
    if worker_run is not None:
        add_entry_code(worker_run, "func")  # anyio's worker loop, ``context.run(func, *args)``: cut there


def _off() -> None:
    global _active
    _active = False


#: anyio's worker-thread hop (a classmethod, replaced and restored exactly), once anyio's asyncio
#: backend is imported, before or after us (``_api.HOOK_SETS``).
HOOKS: Final = HookSet("anyio", _targets, on=_on, off=_off, watch=(MODULE,))
