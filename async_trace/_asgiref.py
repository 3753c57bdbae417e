"""asgiref's ``sync_to_async`` threads as executor hops.

``sync_to_async(f)(...)`` (Django's sync views, middleware and ORM calls
from async code) hands ``loop.run_in_executor`` a call that, in the worker
thread, enters a context of its own: ``context``, a copy of the awaiting
task's context taken in ``SyncToAsync.__call__``, entered with
``context.run``, so that the variables the function sets are copied back to
the task afterwards (``_restore_context``). In that copy the chain variable
holds the task's node: the hop the loop's executor hook pushed is outside it,
and the function would look like a frame of the task.

Two hooks put the hop inside, with no frame of ours on the stack while the
function runs (so none in its tracebacks):

- ``SyncToAsync.thread_handler`` is looked up by ``__call__`` right after it
  made ``context``, to build the call it hands the loop. The lookup goes
  through a descriptor of ours that returns asgiref's own bound method, and,
  when ``__call__`` looks it up, first captures an :class:`ExecutorNode` at the
  coroutine awaiting ``__call__`` (as anyio's hop does) and sets it in
  ``context``.
- ``asgiref.sync._restore_context`` copies the variables a context changed
  into the current one (after the call, in the task; in the thread, on entry;
  after ``async_to_sync``): wrapped, it copies them all as asgiref does except
  the chain variable, which stays each context's own.

A ``SyncToAsync`` given a ``context=`` of the caller's runs as before (no hop
mark): that context is the caller's to keep. Every fact about asgiref the
package relies on is in this module.
"""

from __future__ import annotations

import asyncio.events
import functools
import sys
from collections.abc import Callable
from contextvars import Context
from types import CodeType, FrameType
from typing import Any, Final

from ._capture import capture
from ._chain import CURRENT, ExecutorNode
from ._failsafe import warn_internal
from ._hooks import HookSet, Target

__all__: list[str] = []

#: The module holding ``SyncToAsync`` and ``_restore_context``.
MODULE: Final = "asgiref.sync"
CLASS: Final = "SyncToAsync"
RESTORE: Final = "_restore_context"
HANDLER: Final = "thread_handler"

_current_get: Final = CURRENT.get
_current_set: Final = CURRENT.set
#: Read by the wrappers: off turns a wrapper left inside someone else's patch into a pass-through.
_active = False


def sync_to_async_class() -> Any:
    """asgiref's ``SyncToAsync`` class, if ``asgiref.sync`` is imported; else ``None``."""
    cls = getattr(sys.modules.get(MODULE), CLASS, None)
    return cls if isinstance(cls, type) and "__call__" in vars(cls) else None


def _call_code() -> CodeType | None:
    """The code of asgiref's own ``SyncToAsync.__call__``, which looks ``thread_handler`` up."""
    cls = sync_to_async_class()
    method = vars(cls).get("__call__") if cls is not None else None
    code = getattr(method, "__code__", None)
    return code if isinstance(code, CodeType) else None


class _ThreadHandler:
    """The descriptor in place of ``SyncToAsync.thread_handler``: see above."""

    __slots__ = ("__async_trace_wrapper__", "__wrapped__", "call_code")

    def __init__(self, original: Callable[..., Any]) -> None:
        self.__wrapped__ = original
        self.__async_trace_wrapper__ = True
        self.call_code: CodeType | None = None

    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        bound = self.__wrapped__.__get__(obj, objtype)
        if _active and obj is not None:
            try:
                caller = sys._getframe(1)
                if self.call_code is None:
                    self.call_code = _call_code()
                if caller.f_code is self.call_code and getattr(obj, "context", None) is None:
                    _enter_hop(caller)
            except Exception as exc:  # noqa: BLE001 - never break the call
                warn_internal(exc, "capturing a sync_to_async call")
        return bound

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # Called through the class (``SyncToAsync.thread_handler(self, ...)``): asgiref's own function.
        return self.__wrapped__(*args, **kwargs)


def _enter_hop(call: FrameType) -> None:
    """Set the hop, captured at the coroutine awaiting ``SyncToAsync.__call__``, in the call's ``context``."""
    context = call.f_locals.get("context")
    if type(context) is not Context:
        return
    awaiting = call.f_back if call.f_back is not None else call
    node = capture(ExecutorNode, asyncio.events._get_running_loop(), awaiting)
    context.run(_current_set, node)


def _make_restore(original: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap ``asgiref.sync._restore_context``: see above."""

    def _restore_context(context: Any) -> Any:
        if not _active:
            return original(context)
        before = _current_get()
        try:
            return original(context)
        finally:
            try:
                if _current_get() is not before:
                    _current_set(before)
            except Exception as exc:  # noqa: BLE001 - the program's variables are restored: the rest is ours
                warn_internal(exc, "restoring a context after sync_to_async")

    functools.update_wrapper(_restore_context, original)
    _restore_context.__async_trace_wrapper__ = True  # type: ignore[attr-defined]  # our marker, on a function
    return _restore_context


def _targets() -> list[Target]:
    cls = sync_to_async_class()
    if cls is None:
        return []
    module = sys.modules[MODULE]
    targets: list[Target] = []
    # Both or neither: a hop set in the context must never be copied back to the task.
    if callable(vars(module).get(RESTORE)) and callable(vars(cls).get(HANDLER)):
        targets += [(module, RESTORE, _make_restore), (cls, HANDLER, _ThreadHandler)]
    return targets


def _on() -> None:
    global _active
    _active = True


def _off() -> None:
    global _active
    _active = False


#: asgiref's ``sync_to_async`` hop (a method and a module function, replaced and restored exactly),
#: once ``asgiref.sync`` is imported, before or after us (``_api.HOOK_SETS``).
HOOKS: Final = HookSet("asgiref", _targets, on=_on, off=_off, watch=(MODULE,))
