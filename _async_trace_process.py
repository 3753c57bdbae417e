"""The worker side of async_trace's process hop, importable without the ``async_trace`` package.

A call that ``loop.run_in_executor`` hands to a process pool is pickled as a
call of :func:`rebuild` with the caller's chain in symbolized form (see
``async_trace._process``). Unpickling it in the worker imports this module
only: importing ``async_trace`` would turn tracing on there (its import
installs the hooks), and a worker that never asks for a trace must not get
them. The call is rebuilt as ``functools.partial(ctx.run, func)``, C calls
only, so the traceback concurrent.futures sends back shows no frame of ours.
"""

from __future__ import annotations

import contextvars
import functools
import sys
from collections.abc import Callable
from typing import Any, Final

__all__: list[str] = []

#: One frame of the parent's chain: ``(name, line, filename, mark, pid)``.
#: ``mark``: see the ``MARK_*`` constants; ``pid``: the process a process hop
#: was made from (``MARK_PROCESS``), else 0. Roots and elision markers have
#: ``line`` and ``filename`` ``None``.
Record = tuple[str, "int | None", "str | None", int, int]

MARK_PLAIN: Final = 0
#: The first frame of a task hop: the line that created a task.
MARK_BOUNDARY: Final = 1
#: The coroutine line that handed a call to an executor thread.
MARK_EXECUTOR: Final = 2
#: The coroutine line that handed a call to a process pool (``pid``: in which process).
MARK_PROCESS: Final = 3
#: A root frame named after a thread, not a task.
MARK_THREAD_ROOT: Final = 4

#: The chain of the process that made the call, innermost first; ``None``
#: outside a call that came through a traced process hop. Set in the
#: context the call runs in, so tasks and threads the call starts inherit it.
CHAIN: Final[contextvars.ContextVar[tuple[Record, ...] | None]] = contextvars.ContextVar(
    "async_trace.process_chain", default=None
)


class ProcessCall(functools.partial):  # type: ignore[type-arg]
    """``func`` run in a context holding the parent's chain: ``functools.partial(ctx.run, func)``.

    Defines no ``__call__``: calling it runs C code only, so an exception
    raised by ``func`` shows no frame of ours in its traceback.
    """

    __slots__ = ()

    @property
    def ctx(self) -> contextvars.Context:
        """The context the function runs in."""
        return self.func.__self__  # type: ignore[no-any-return,attr-defined]

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        # Sent on again (to a process pool of the worker's own): as it came.
        return rebuild, (self.args[0], self.ctx.get(CHAIN))

    def __repr__(self) -> str:
        return f"{self.args[0]!r} (in an async_trace process hop)"


def rebuild(func: Callable[..., Any], chain: tuple[Record, ...] | None) -> ProcessCall:
    """The call as the worker runs it (called by the unpickler, in the thread that then runs it)."""
    # A copy of the worker's context: what a pool initializer set stays visible.
    ctx = contextvars.copy_context()
    ctx.run(CHAIN.set, chain)
    core = sys.modules.get("async_trace._chain")
    if core is not None:
        # async_trace is loaded here (a forked worker inherits it with the
        # context of the thread that forked it): the call starts a new chain.
        ctx.run(core.CURRENT.set, None)
    return ProcessCall(ctx.run, func)
