"""Public data types: the trace dict shape and the warning category."""

from __future__ import annotations

import asyncio
from typing import Any, TypedDict

__all__ = ["AsyncTraceWarning", "TraceData", "TraceFrame"]


class TraceFrame(TypedDict):
    """One frame of an async trace, as returned in ``TraceData["frames"]``."""

    #: Bare function name, or the root task's name, or an elision marker.
    name: str
    #: Line number; ``None`` for the root frame and elision markers.
    line: int | None
    #: Full path of the source file; ``None`` where ``line`` is ``None``.
    filename: str | None
    #: Nesting level: 0 for the innermost frame, +1 per frame outwards.
    indent: int
    #: The task created at this line (task boundaries), or the root task.
    task: asyncio.Task[Any] | None
    #: True for the coroutine frame that handed work to an executor thread.
    is_executor: bool
    #: True for the coroutine frame, in another process, that handed this call to a
    #: process pool (the frames from it outwards ran there; their ``task`` is ``None``).
    is_process: bool
    #: False for a frame of the standard library or an installed package
    #: (``site-packages``, ``dist-packages``, ``<frozen ...>``), True for the
    #: program's own, after ``enable_tracing(in_app_include=, in_app_exclude=)``;
    #: True for the root frame and elision markers (they have no file).
    in_app: bool


class TraceData(TypedDict):
    """What :func:`async_trace.collect_async_trace` returns."""

    #: Innermost frame first.
    frames: list[TraceFrame]
    #: The task that asked, or ``None`` outside a task (executor thread, callback).
    current_task: asyncio.Task[Any] | None
    #: True when collected in an executor thread reached through a traced hop.
    in_executor: bool


class FrameList(list):  # type: ignore[type-arg]
    """The ``frames`` list of a collected trace: a ``list`` like any, that also knows its boundaries.

    ``boundaries`` holds the indices of the frames where a task was created
    (whether or not that task is still alive), so a renderer can mark a
    boundary whose task is gone; the frame dicts keep their eight documented
    keys. A copy or slice made by the caller is a plain list and loses the
    marks (renderers then mark only boundaries whose task is alive).
    """

    __slots__ = ("boundaries",)

    def __init__(self) -> None:
        super().__init__()
        self.boundaries: frozenset[int] = frozenset()


class ThreadName(str):
    """The ``name`` of a root frame that stands for a thread, not a task (a ``str`` like any name).

    A chain that starts in a thread no traced hop led to (a plain
    ``threading.Thread`` calling ``run_coroutine_threadsafe``) ends in a root
    frame named after that thread; renderers read this type to say "thread"
    where they would say "task". Internal: the frame dict's keys stay the seven
    documented ones.
    """

    __slots__ = ()


class ProcessHopName(str):
    """The ``name`` of a frame with ``is_process``, also holding ``pid`` (a ``str`` like any name).

    ``pid`` is the id of the process the call was made from: the process the
    frames from this one outwards ran in. Renderers read it for the
    ``[PROCESS pid]`` marker; internal, like :class:`ThreadName`.
    """

    pid: int

    def __new__(cls, name: str, pid: int = 0) -> ProcessHopName:
        self = super().__new__(cls, name)
        self.pid = pid
        return self


class AsyncTraceWarning(RuntimeWarning):
    """Emitted once when async_trace meets an internal error and falls back.

    Filter it like any warning, e.g.
    ``warnings.simplefilter("ignore", async_trace.AsyncTraceWarning)``.
    """
