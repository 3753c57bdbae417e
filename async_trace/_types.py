"""The package's vocabulary: the public records and dict shapes, the option literals, the warning category.

A leaf: it imports nothing of the package, and every module may import it.
The task tree's records are frozen, slotted dataclasses, as asyncio's
``graph.py`` keeps its call-graph records.
"""

from __future__ import annotations

import asyncio
import contextvars
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

__all__ = [
    "LIBRARY_FRAMES",
    "STYLES",
    "AsyncTraceWarning",
    "ExecutorThread",
    "InternalErrors",
    "LibraryFrames",
    "Style",
    "TaskInfo",
    "TaskOrigin",
    "TaskState",
    "TaskTree",
    "TraceData",
    "TraceFrame",
]


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


@dataclass(frozen=True, slots=True)
class InternalErrors:
    """What :func:`async_trace.internal_errors` returns: the internal failures met and fallen back from."""

    #: How many, since the process started.
    count: int
    #: The latest, in one line (``"while capturing a task creation (RuntimeError: ...)"``); ``None`` before the first.
    last: str | None


class AsyncTraceWarning(RuntimeWarning):
    """Emitted once when async_trace meets an internal error and falls back.

    Filter it like any warning, e.g.
    ``warnings.simplefilter("ignore", async_trace.AsyncTraceWarning)``.
    """


# --- option literals ------------------------------------------------------------

#: How a trace is printed (``style=``).
Style = Literal["arrows", "traceback"]
STYLES: tuple[Style, ...] = ("arrows", "traceback")
#: How runs of library frames are printed (``library_frames=``).
LibraryFrames = Literal["collapse", "show", "hide"]
LIBRARY_FRAMES: tuple[LibraryFrames, ...] = ("collapse", "show", "hide")


# --- the task tree's records ----------------------------------------------------
#
# Slotted, immutable, equal and hashed by identity (``eq=False``: two snapshots of
# one task are two records; a value comparison of deep trees would recurse), with a
# short ``repr`` that never descends into children or frames.


#: ``running``: the loop's current task; ``pending``: waiting; ``done``,
#: ``failed``, ``cancelled``: finished, the task object still alive;
#: ``finished``: the task object is gone (known only as a parent).
TaskState = Literal["running", "pending", "done", "failed", "cancelled", "finished"]
#: ``root``: a task created outside any task (``asyncio.run``'s); ``traced``:
#: created by a traced task, callback or thread; ``unknown``: created while
#: tracing was off (or before it was on); ``elided``: stands for task hops
#: dropped by ``max_depth``.
TaskOrigin = Literal["root", "traced", "unknown", "elided"]


@dataclass(frozen=True, slots=True, eq=False)
class ExecutorThread:
    """A thread running an executor call (``run_in_executor``, ``to_thread``) for a task."""

    #: The thread's name and ``threading.get_ident()``.
    name: str
    ident: int
    #: Where it is now, innermost first, from the executor function on (no pool machinery).
    frames: tuple[TraceFrame, ...]

    def __repr__(self) -> str:
        return f"ExecutorThread(name={self.name!r}, ident={self.ident}, frames={len(self.frames)})"


@dataclass(frozen=True, slots=True, eq=False)
class TaskInfo:
    """One task of a :class:`TaskTree`, with the tasks it created as ``children``."""

    #: ``task.get_name()``; ``None`` for a finished task whose name is not known.
    name: str | None
    #: ``id(task)``; ``None`` once the task object is gone.
    id: int | None
    state: TaskState
    origin: TaskOrigin
    #: The task itself; ``None`` once it is gone. Holding the tree holds the tasks.
    task: asyncio.Task[Any] | None = field(repr=False)
    #: Where it was created, innermost first: the creating line (``task`` set on
    #: it), up the creator's stack; then, for a task created in an executor
    #: thread, the coroutine line that started the thread (``is_executor``).
    #: Empty for roots and tasks of unknown origin.
    created_at: tuple[TraceFrame, ...]
    #: Where it is suspended now (running: where it runs), innermost first,
    #: following the ``await`` chain of its coroutine (asyncio's frames dropped).
    suspended_at: tuple[TraceFrame, ...]
    #: Executor threads running a call made by this task, now.
    executor_threads: tuple[ExecutorThread, ...]
    children: tuple[TaskInfo, ...]
    #: The ``id`` of every live task of the same tree awaiting this one now,
    #: in tree order (see :meth:`TaskTree.by_id`). What each Python version
    #: can see is in docs/task-tree.md ("Who awaits whom").
    awaited_by: tuple[int, ...] = ()
    #: Seconds the task has been alive at least, and waited on the same thing at least,
    #: as a running stall watch's censuses saw it; ``None`` if none has (docs/stalls.md).
    age: float | None = None
    idle: float | None = None

    def __repr__(self) -> str:
        # Short: the frames and the whole subtree are one attribute away.
        ident = "None" if self.id is None else f"{self.id:#x}"
        return (
            f"TaskInfo(name={self.name!r}, id={ident}, state={self.state!r}, origin={self.origin!r}, "
            f"children={len(self.children)}, awaited_by={len(self.awaited_by)})"
        )

    def walk(self) -> list[tuple[int, TaskInfo]]:
        """``(depth, info)`` for this task and every task below it, depth first (this one is depth 0)."""
        out: list[tuple[int, TaskInfo]] = []
        todo: list[tuple[int, TaskInfo]] = [(0, self)]
        while todo:
            depth, info = todo.pop()
            out.append((depth, info))
            todo.extend((depth + 1, child) for child in reversed(info.children))
        return out


@dataclass(frozen=True, slots=True, eq=False)
class TaskTree:
    """The live tasks of one loop, by creation parent (see :func:`task_tree`)."""

    loop: asyncio.AbstractEventLoop = field(repr=False)
    #: Top-level entries: root tasks, then tasks of unknown origin.
    roots: tuple[TaskInfo, ...]
    #: ``by_id``'s index, made on first use.
    _index: dict[int, TaskInfo] | None = field(default=None, init=False, repr=False)

    def __repr__(self) -> str:
        # Short: the entries are one attribute away (and a deep tree would make a huge string).
        return f"TaskTree(loop={type(self.loop).__name__} at {id(self.loop):#x}, roots={len(self.roots)})"

    def walk(self) -> list[tuple[int, TaskInfo]]:
        """``(depth, info)`` for every entry, depth first; roots are depth 0."""
        return [item for root in self.roots for item in root.walk()]

    def find(self, name: str) -> TaskInfo | None:
        """The first entry named ``name``, or ``None``."""
        return next((info for _, info in self.walk() if info.name == name), None)

    def by_id(self, id: int) -> TaskInfo | None:
        """The entry of the live task whose ``id`` is ``id`` (as in :attr:`TaskInfo.awaited_by`), or ``None``."""
        index = self._index
        if index is None:
            index = {info.id: info for _, info in self.walk() if info.id is not None}
            object.__setattr__(self, "_index", index)
        return index.get(id)

    @property
    def live_count(self) -> int:
        """How many entries are live tasks (not finished placeholders)."""
        return sum(1 for _, info in self.walk() if info.state != "finished")


#: ``blocking``: code ran on the loop thread (CPU, a blocking call); ``waiting``: the loop
#: thread waited on a lock, event, thread or future of another thread; ``starved``: the
#: loop thread sat in its poll but did not get to run; ``gc``: mostly garbage collection.
StallKind = Literal["blocking", "waiting", "starved", "gc"]


@dataclass(frozen=True, slots=True, eq=False)
class StallThread:
    """A thread the blocked loop waited for, with where it was at the time."""

    #: The thread's name and ``threading.get_ident()``.
    name: str
    ident: int
    #: Its stack when the stall was sampled, innermost first (TraceFrame dicts with ``in_app``).
    frames: tuple[TraceFrame, ...]

    def __repr__(self) -> str:
        return f"StallThread(name={self.name!r}, ident={self.ident}, frames={len(self.frames)})"


@dataclass(frozen=True, slots=True, eq=False)
class StallReport:
    """One stall of an event loop: how long, where the loop thread was, and for which task."""

    #: Seconds the loop did not run: the gap between the heartbeats around the stall, less
    #: half a heartbeat interval (within ``interval / 2`` of the time the loop was blocked).
    #: For a report with ``ongoing`` set: the time so far.
    duration: float
    #: The threshold of the watch that reported it, in seconds.
    threshold: float
    kind: StallKind
    #: ``"module:function"`` of the innermost frame of the program's own code in ``stack``
    #: (else in ``chain``, else the innermost frame); ``"<starved>"`` for that kind and
    #: ``"<unknown>"`` when nothing was sampled. Low-cardinality: a metric label.
    source: str
    #: The loop thread's stack, sampled while the loop was blocked, innermost first, up to
    #: the running task's coroutine frame (or the callback's first frame); event loop and
    #: ``asyncio.run`` frames cut. Empty when no sample could be taken.
    stack: tuple[TraceFrame, ...]
    #: The task running on the loop then, ``None`` for a callback (or none running).
    task: asyncio.Task[Any] | None = field(repr=False)
    #: Its name (kept when the task is gone).
    task_name: str | None
    #: Where ``task`` was created, innermost first, to the root task: the frames
    #: :func:`async_trace.exception_trace` gives (the first is the line that created it).
    chain: tuple[TraceFrame, ...]
    #: For ``waiting``: the type of what the loop waited on (``"_thread.lock"``), if found.
    waiting_on: str | None
    #: For ``waiting``: the threads found holding it (or being waited for), with their stacks.
    waiting_for: tuple[StallThread, ...]
    #: True for the report made while the stall still lasted (see ``long_stall``).
    ongoing: bool
    #: The loop, and the name of the thread running it.
    loop: asyncio.AbstractEventLoop = field(repr=False)
    thread: str
    #: ``time.time()`` when the stall began (the last heartbeat before it).
    started: float
    #: Seconds of CPU the loop thread used from the sample to the end (``None`` where the
    #: platform cannot tell, or nothing was sampled): near ``duration`` for a CPU loop,
    #: near 0 for ``time.sleep`` or a wait.
    cpu_time: float | None
    #: Seconds the garbage collector ran during the stall (any thread).
    gc_time: float
    #: Stalls of the same ``source`` not reported (dedup, rate limit) since its last report.
    suppressed: int
    #: The ``contextvars.Context`` ``task`` runs in (``None`` without a task): what the request
    #: had set, read with ``context.get(var)`` (its tracing span, say: see ``async_trace.otel``).
    context: contextvars.Context | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        return (
            f"StallReport(duration={self.duration:.3f}, kind={self.kind!r}, source={self.source!r}, "
            f"task_name={self.task_name!r}, stack={len(self.stack)}, chain={len(self.chain)}, "
            f"ongoing={self.ongoing}, suppressed={self.suppressed})"
        )

    @property
    def trace(self) -> TraceData:
        """``stack`` then ``chain`` as one trace (indents renumbered), for ``format_async_trace`` and friends."""
        frames = FrameList()
        for frame in self.stack:
            frames.append({**frame, "indent": len(frames)})
        first = len(frames)
        for frame in self.chain:
            frames.append({**frame, "indent": len(frames)})
        frames.boundaries = frozenset([first]) if self.chain and self.chain[0]["line"] is not None else frozenset()
        return {"frames": frames, "current_task": self.task, "in_executor": False}


class StallStats(TypedDict):
    """One source's line of :func:`stall_summary`."""

    #: Stalls seen (reported or not) and how many were reported.
    count: int
    reported: int
    #: Their total and longest duration, seconds.
    total: float
    worst: float
    #: The kind of the latest.
    kind: StallKind
