"""Calls run in a context: how a chain node travels into an executor thread.

A call handed to a thread pool runs as ``functools.partial(ctx.run, func)``
(what ``asyncio.to_thread`` builds) with the hop's node set in ``ctx``;
:class:`ContextCall` is that partial, made picklable. :func:`context_of_run`
reads the context back out of such a call (ours or asyncio's), for the
executor hook and for the discovery of executor threads.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextvars import Context
from typing import Any

__all__: list[str] = []


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
