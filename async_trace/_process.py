"""The process hop: a call handed to a process pool carries the caller's chain, symbolized.

``loop.run_in_executor(process_pool, func, *args)`` (wrapped in
:mod:`._capture`) hands the pool a :class:`ProcessHop` instead of ``func``.
It pickles as a call of ``_async_trace_process.rebuild`` with ``func`` and
the caller's chain as plain records (function names, file paths, line
numbers, root task names: no code objects, frames, locals or tasks), at most
:func:`max_records` of them. The worker rebuilds it as
``functools.partial(ctx.run, func)`` with the records in ``ctx``; its
``print_trace()`` and ``collect_async_trace()`` show them after its own frames
(:func:`._collect.append_remote`). An exception the call raises comes back
with the call's node as its origin, as for a call in an executor thread.
"""

from __future__ import annotations

import functools
import os
import pickle
import sys
from collections.abc import Callable
from types import BuiltinFunctionType, FunctionType
from typing import Any

import _async_trace_process as _hop

from ._chain import Node, ProcessNode, make_process
from ._collect import append_chain, append_remote
from ._config import settings
from ._failsafe import warn_internal
from ._frames import elided
from ._hooks import on_disable
from ._origins import record_hop_origin
from ._types import ProcessHopName, ThreadName, TraceFrame

__all__: list[str] = []


class ProcessHop(functools.partial):  # type: ignore[type-arg]
    """``func`` for a process pool: ``functools.partial(func)`` that pickles with the chain.

    Called in this process (it never is by a real pool) it is ``func``.
    """

    __slots__ = ("records",)

    records: tuple[_hop.Record, ...]

    def __new__(cls, func: Callable[..., Any], records: tuple[_hop.Record, ...]) -> ProcessHop:
        self = super().__new__(cls, func)
        self.records = records
        return self

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        return _hop.rebuild, (self.func, self.records)

    def __repr__(self) -> str:
        return f"{self.func!r} (with its async_trace chain)"


def max_records() -> int:
    """The most records a hop carries: ``max_depth + max_frames`` (320 by default)."""
    return settings.max_depth + settings.max_frames


def _mark(frame: TraceFrame, boundary: bool) -> tuple[int, int]:
    name = frame["name"]
    if frame.get("is_process"):
        return _hop.MARK_PROCESS, name.pid if isinstance(name, ProcessHopName) else 0
    if frame["is_executor"]:
        return _hop.MARK_EXECUTOR, 0
    if isinstance(name, ThreadName):
        return _hop.MARK_THREAD_ROOT, 0
    return (_hop.MARK_BOUNDARY if boundary else _hop.MARK_PLAIN), 0


#: The latest records and what they were made from: ``(parent, frames, creator_ref, pid,
#: inherited, limit, records)``. Calls made one after another from one place (a loop of
#: run_in_executor) share them. Replaced whole, never mutated; holds nodes (code objects
#: and weak references), no task. A root task renamed between such calls keeps its old name.
_last: tuple[Any, ...] = (None,) * 7


def _forget() -> None:
    """Drop the latest records (``disable_tracing()``): they hold the program's code objects."""
    global _last
    _last = (None,) * 7


on_disable(_forget)


def records_of(node: ProcessNode, loop: Any) -> tuple[_hop.Record, ...]:
    """The chain of ``node`` (and of the hop this process was reached by, if any) as records."""
    global _last
    inherited = _hop.CHAIN.get()
    limit = max_records()
    last = _last
    if (
        last[0] is node.parent
        and last[1] is node.frames
        and last[2] is node.creator_ref
        and last[3] == node.pid
        and last[4] is inherited
        and last[5] == limit
    ):
        return last[6]  # type: ignore[no-any-return]
    records = _records(node, loop, inherited, limit)
    _last = (node.parent, node.frames, node.creator_ref, node.pid, inherited, limit, records)
    return records


def _records(
    node: ProcessNode, loop: Any, inherited: tuple[_hop.Record, ...] | None, limit: int
) -> tuple[_hop.Record, ...]:
    frames: list[TraceFrame] = []
    boundaries = set(append_chain(frames, node, None, True, None, loop)[0])
    if inherited is not None:  # a worker handing a call on: its own parent's chain follows
        boundaries.update(append_remote(frames, inherited))
    out: list[_hop.Record] = []
    for i, frame in enumerate(frames):
        mark, pid = _mark(frame, i in boundaries)
        out.append((str(frame["name"]), frame["line"], frame["filename"], mark, pid))
    if len(out) > limit:
        # As a deep stack is cut at capture: the innermost records and a quarter from the outer end.
        keep_outer = limit // 4
        keep_inner = limit - keep_outer - 1
        dropped = len(out) - keep_inner - keep_outer
        marker: _hop.Record = (elided(dropped, "frame"), None, None, _hop.MARK_PLAIN, 0)
        out = [*out[:keep_inner], marker, *out[-keep_outer:]]
    return tuple(out)


def _by_reference(func: Any) -> bool:
    """Whether ``func`` is a function pickle saves by name: found by its module and qualified name.

    What pickle checks for a function, without pickling it (that costs several
    microseconds per call, a module lookup by import included).
    """
    kind = type(func)
    if kind is not FunctionType and kind is not BuiltinFunctionType:
        return False
    found: Any = sys.modules.get(getattr(func, "__module__", None) or "")
    for part in func.__qualname__.split("."):
        found = getattr(found, part, None)
    return found is func


def hop(loop: Any, node: Node, func: Any) -> tuple[Any, Callable[[Any], None] | None]:
    """``(what to hand the pool, a done callback for its future)``; ``(func, None)`` to go untraced.

    A function that cannot be pickled goes as it is, so the pool fails
    exactly as it does untraced. The callback records the call's node as the
    origin of the exception the call raises; added to the future before the
    caller can await it, it runs before the awaiting task resumes (the caller
    calls it at once for a future already done).
    """
    if not _by_reference(func):
        try:
            pickle.dumps(func)
        except Exception:  # noqa: BLE001 - the pool reports it, untouched
            return func, None
    try:
        process_node = make_process(node, os.getpid())
        call = ProcessHop(func, records_of(process_node, loop))
    except Exception as exc:  # noqa: BLE001 - never break the call
        warn_internal(exc, "capturing a process-pool call")
        return func, None
    return call, functools.partial(record_hop_origin, process_node)
