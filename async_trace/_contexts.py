"""Calls run in a context: how a chain node travels into an executor thread.

A call handed to a thread pool runs as ``functools.partial(ctx.run, func)``
(what ``asyncio.to_thread`` builds) with the hop's node set in ``ctx``;
:class:`ContextCall` is that partial, made picklable. :func:`context_of_run`
reads the context back out of such a call (ours or asyncio's), for the
executor hook and for the discovery of executor threads.
"""

from __future__ import annotations

import concurrent.futures.thread
import functools
from collections.abc import Callable
from contextvars import Context
from types import CodeType, FrameType
from typing import Any, Final

from ._compat import work_item_fn
from ._frames import entry_codes

__all__: list[str] = []

#: ``concurrent.futures``' work item's ``run``: where a pool thread enters the call it was handed.
WORK_ITEM_RUN: Final[CodeType | None] = getattr(
    getattr(getattr(concurrent.futures.thread, "_WorkItem", None), "run", None), "__code__", None
)
#: Frames looked at for the entry of an executor call, at most (a debugging aid must not hang).
_MAX_FRAMES: Final = 10_000


def _unwrapped(func: Callable[..., Any]) -> Callable[..., Any]:
    return func


class ContextCall(functools.partial):  # type: ignore[type-arg]
    """``func`` run in ``ctx``, for an executor: ``functools.partial(ctx.run, func)``, made picklable.

    A ``functools.partial`` subclass that defines no ``__call__``: calling it
    runs C code only, so an exception raised by ``func`` shows no frame of
    ours in its traceback. A ``contextvars.Context`` cannot be pickled, so an
    executor that pickles its calls (a process pool, whatever the loop's
    default executor is) gets the bare function: such hops run untraced
    instead of failing.
    """

    __slots__ = ()

    def __new__(cls, ctx: Context, func: Callable[..., Any]) -> ContextCall:
        return super().__new__(cls, ctx.run, func)

    @property
    def ctx(self) -> Context:
        """The context the function runs in."""
        return self.func.__self__  # type: ignore[no-any-return,attr-defined]

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[Callable[..., Any]]]:
        return _unwrapped, (self.args[0],)

    def __repr__(self) -> str:
        return f"{self.args[0]!r} (in an async_trace context)"


def context_of_run(func: Any) -> Context | None:
    """The Context of ``functools.partial(ctx.run, ...)``, as asyncio.to_thread builds it."""
    kind = type(func)
    if kind is functools.partial or kind is ContextCall:
        target = func.func
        owner = getattr(target, "__self__", None)
        if type(owner) is Context and getattr(target, "__name__", None) == "run":
            return owner
    return None


def entered_call(frame: FrameType | None) -> FrameType | None:
    """The frame that entered the executor call running on ``frame``'s stack: a pool's work item, a library
    worker's entry (anyio's); ``None`` outside such a call."""
    for _ in range(_MAX_FRAMES):
        if frame is None:
            return None
        code = frame.f_code
        if code is WORK_ITEM_RUN:
            return frame
        entry = entry_codes.get(id(code))
        if entry is not None and entry[0] is code:
            return frame
        frame = frame.f_back
    return None


def call_context(frame: FrameType) -> Context | None:
    """The Context an executor call runs in, from the frame that entered it (see :func:`entered_call`)."""
    entry = entry_codes.get(id(frame.f_code))
    if entry is not None and entry[0] is frame.f_code:
        # A library's worker (anyio's WorkerThread.run: ``context.run(func, *args)``): the call is a local.
        return context_of_run(frame.f_locals.get(entry[1]))
    # Our ContextCall, or asyncio.to_thread's partial(ctx.run, ...), as the pool's work item holds it.
    return context_of_run(work_item_fn(frame.f_locals.get("self")))
