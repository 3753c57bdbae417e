"""The stall watchdog: which task (and which request) blocked the event loop.

One heartbeat per watched loop (a timer every ``interval``: a quarter of the
threshold) and one watchdog thread per :class:`StallWatch`. The loop side only
stores the time of each beat and, when two beats are further apart than
``interval + threshold``, the gap; nothing runs per callback or per task. The
watchdog thread wakes every ``interval``: when a loop's heartbeat is overdue
by half the threshold it samples the loop thread's stack *while the loop is
blocked* (``sys._current_frames()``), the loop's running task
(``asyncio.current_task(loop)``, readable from another thread on every
version) and that task's chain; when the loop's gap arrives (the loop ran
again) it reports. A loop still blocked after ``long_stall`` seconds is
reported once more while it lasts.

Kinds (:data:`StallKind`): ``blocking``, code running on the loop thread (a
CPU loop, ``time.sleep``, blocking I/O); ``waiting``, the loop thread waits on
a lock, event, thread or future another thread holds (with the threads found
holding it); ``starved``, the loop thread sat in its poll, ready, but did not
run (the GIL held by another thread, a short pause of the process); ``gc``,
the garbage collector ran for at least half the stall.

A pause of the whole process (SIGSTOP, a debugger stopping it, a VM paused)
shows as the watchdog thread itself waking late while the process used no
CPU: the stalls overlapping it are not reported. A debugger stopped in the
loop thread (``pdb``, ``debugpy``) is not a stall either. System suspend does
not advance ``time.monotonic()``.

Nothing here raises into the program: every failure is reported once through
``warn_internal`` and the watchdog carries on.
"""

from __future__ import annotations

import ast
import asyncio
import collections
import contextvars
import gc
import inspect
import linecache
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import CodeType, FrameType
from typing import Any, Final, Literal, TextIO, TypedDict

from . import _collect, _render
from ._capture import walk
from ._chain import coro_of, stop_frame, task_name, warn_internal
from ._discovery import loop_thread, running_loops
from ._inapp import in_app
from ._types import FrameList, TraceData, TraceFrame

__all__ = [
    "StallKind",
    "StallReport",
    "StallStats",
    "StallThread",
    "StallWatch",
    "format_stall_report",
    "print_stall_report",
    "reset_stall_summary",
    "stall_summary",
    "watch_stalls",
]

#: ``blocking``: code ran on the loop thread (CPU, a blocking call); ``waiting``: the loop
#: thread waited on a lock, event, thread or future of another thread; ``starved``: the
#: loop thread sat in its poll but did not get to run; ``gc``: mostly garbage collection.
StallKind = Literal["blocking", "waiting", "starved", "gc"]

#: The logger every report goes to (unless ``log=False``), at WARNING, the fields as ``extra``.
LOGGER_NAME: Final = "async_trace.stall"
logger: Final = logging.getLogger(LOGGER_NAME)

#: The environment variable that starts a watch of every loop when ``async_trace`` is imported.
ENV_THRESHOLD: Final = "ASYNC_TRACE_STALL_THRESHOLD"


# --- the records ---------------------------------------------------------------


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


# --- the summary ------------------------------------------------------------------

_SUMMARY_MAX: Final = 1000
#: Where the stalls of sources past ``_SUMMARY_MAX`` are counted.
OTHER_SOURCE: Final = "<other>"
_summary: dict[str, StallStats] = {}
_summary_lock = threading.Lock()


def stall_summary() -> dict[str, StallStats]:
    """Every stall seen since start (or :func:`reset_stall_summary`), per ``source``, worst total first.

    Counts stalls whether or not dedup or the rate limit kept them from being
    reported, for every watch of the process. Bounded: past 1000 sources, the
    rest are counted under ``"<other>"``. A fresh dict of fresh dicts.
    """
    with _summary_lock:
        items = [(source, StallStats(**stats)) for source, stats in _summary.items()]
    items.sort(key=lambda item: (-item[1]["total"], item[0]))
    return dict(items)


def reset_stall_summary() -> None:
    """Forget every stall :func:`stall_summary` counted."""
    with _summary_lock:
        _summary.clear()


def _count(source: str, duration: float, kind: StallKind, reported: bool) -> None:
    with _summary_lock:
        stats = _summary.get(source)
        if stats is None:
            if len(_summary) >= _SUMMARY_MAX:
                source = OTHER_SOURCE
                stats = _summary.get(source)
            if stats is None:
                stats = _summary[source] = StallStats(count=0, reported=0, total=0.0, worst=0.0, kind=kind)
        stats["count"] += 1
        stats["reported"] += int(reported)
        stats["total"] += duration
        stats["worst"] = max(stats["worst"], duration)
        stats["kind"] = kind


# --- garbage collection time --------------------------------------------------------

_gc_total = 0.0
_gc_started = 0.0
_gc_users = 0
_gc_lock = threading.Lock()


def _on_gc(phase: str, info: dict[str, Any]) -> None:
    global _gc_total, _gc_started
    if phase == "start":
        _gc_started = time.monotonic()
    elif _gc_started:
        _gc_total += time.monotonic() - _gc_started
        _gc_started = 0.0


def _gc_watch(on: bool) -> None:
    """Count garbage collection time while at least one watch runs (a callback per collection)."""
    global _gc_users
    with _gc_lock:
        _gc_users += 1 if on else -1
        if on and _gc_users == 1:
            gc.callbacks.append(_on_gc)
        elif not on and _gc_users == 0:
            while _on_gc in gc.callbacks:
                gc.callbacks.remove(_on_gc)


# --- reading the loop thread ---------------------------------------------------------

#: Modules whose functions wait for another thread: the frame that called into them is the waiter.
_WAIT_MODULES: Final = frozenset(
    {"threading", "queue", "concurrent.futures._base", "concurrent.futures.thread", "multiprocessing.synchronize"}
)
#: Modules of debuggers: a loop thread stopped in one of them is not stalled.
_DEBUGGER_PREFIXES: Final = ("bdb", "pdb", "pydevd", "_pydevd", "_pydev", "debugpy")
#: Method names that wait, on the object they are called on.
_WAIT_METHODS: Final = frozenset({"acquire", "wait", "wait_for", "join", "result", "get", "put", "exception"})
_LOCK_TYPES: Final = (
    type(threading.Lock()),
    type(threading.RLock()),
    threading.Condition,
    threading.Semaphore,
    threading.Event,
    threading.Barrier,
    threading.Thread,
)
_OWNER: Final = re.compile(r"owner=(\d+)")
_SELECTORS_FILE: Final = os.path.abspath(__import__("selectors").__file__ or "")
_RUN_ONCE: Final[CodeType] = getattr(asyncio.base_events.BaseEventLoop, "_run_once").__code__  # noqa: B009 - private
_HANDLE_RUN: Final = asyncio.events.Handle._run.__code__
_MAX_STACK: Final = 2000


def _module(frame: FrameType) -> str:
    name = frame.f_globals.get("__name__")
    return name if isinstance(name, str) else "?"


def _shown(top: FrameType | None, stop: FrameType | None) -> list[TraceFrame]:
    frames: list[TraceFrame] = []
    _collect.append_frames(frames, _collect.resolve_uncached(walk(top, stop, remember=False)), None, False)
    return frames


def _frames_to(top: FrameType, stop: FrameType | None) -> list[FrameType]:
    out: list[FrameType] = []
    frame: FrameType | None = top
    while frame is not None and len(out) < _MAX_STACK:
        out.append(frame)
        if frame is stop:
            break
        frame = frame.f_back
    return out


def _source_of(frames: list[FrameType]) -> str | None:
    """``module:function`` of the innermost frame of the program's own code, if any."""
    for frame in frames:
        code = frame.f_code
        if in_app(code.co_filename) and _collect.frame_kind(code) == _collect.USER:
            return f"{_module(frame)}:{code.co_name}"
    return None


_module_by_file: dict[str, str] = {}


def _module_of_file(filename: str) -> str:
    """The name of the loaded module whose file is ``filename`` (else the file's stem)."""
    found = _module_by_file.get(filename)
    if found is not None:
        return found
    for name, module in list(sys.modules.items()):
        if getattr(module, "__file__", None) == filename:
            found = name
            break
    else:
        found = os.path.splitext(os.path.basename(filename))[0]
    if len(_module_by_file) < 4096:
        _module_by_file[filename] = found
    return found


def _chain_source(chain: Iterable[TraceFrame]) -> str | None:
    for frame in chain:
        if frame["in_app"] and frame["filename"] is not None:
            return f"{_module_of_file(frame['filename'])}:{frame['name']}"
    return None


def _in_debugger(frames: list[FrameType]) -> bool:
    return any(_module(frame).startswith(_DEBUGGER_PREFIXES) for frame in frames)


def _idle(top: FrameType, base: CodeType | None) -> bool:
    """Whether the loop thread sits in the loop's poll (selectors), or in the C loop that called our beat."""
    code = top.f_code
    if code is _RUN_ONCE or os.path.abspath(code.co_filename) == _SELECTORS_FILE:
        return True
    return base is not None and code is base


# --- what the loop thread waits on ------------------------------------------------------


def _static(obj: Any, name: str) -> Any:
    """``obj.name`` without running any code of the program (no properties, no ``__getattr__``)."""
    value = inspect.getattr_static(obj, name)
    if hasattr(type(value), "__get__") and not isinstance(value, _LOCK_TYPES):
        raise AttributeError(name)  # a descriptor: calling it would run code
    return value


def _evaluate(node: ast.expr, frame: FrameType) -> Any:
    """A name or an attribute chain of the frame's scope, read statically; ``AttributeError`` if not that."""
    if isinstance(node, ast.Name):
        local = frame.f_locals
        if node.id in local:
            return local[node.id]
        if node.id in frame.f_globals:
            return frame.f_globals[node.id]
        raise AttributeError(node.id)
    if isinstance(node, ast.Attribute):
        return _static(_evaluate(node.value, frame), node.attr)
    raise AttributeError("not a name")


def _call_text(frame: FrameType) -> str | None:
    """The source of the expression the frame is evaluating now (3.11+), or of its line (3.10)."""
    code = frame.f_code
    lasti = frame.f_lasti
    if sys.version_info >= (3, 11) and lasti >= 0:
        positions = list(code.co_positions())
        index = lasti // 2
        if index < len(positions):
            line, end_line, col, end_col = positions[index]
            if line is not None and end_line is not None and col is not None and end_col is not None:
                lines = [linecache.getline(code.co_filename, n) for n in range(line, end_line + 1)]
                if lines and all(lines):
                    if len(lines) == 1:
                        return lines[0][col:end_col]
                    return lines[0][col:] + "".join(lines[1:-1]) + lines[-1][:end_col]
    text = linecache.getline(code.co_filename, frame.f_lineno).strip()
    return text or None


def _waited_object(frame: FrameType) -> Any:
    """The lock, event, thread or future the frame's current expression waits on, or ``None``."""
    text = _call_text(frame)
    if not text:
        return None
    text = text.strip()
    if text.startswith(("with ", "async with ")):
        text = text.split("with ", 1)[1].rstrip(":").split(" as ")[0]
    try:
        tree = ast.parse(text.rstrip(":"), mode="eval")
    except SyntaxError:
        try:
            tree = ast.parse(text.rstrip(":") + "\n", mode="exec")  # type: ignore[assignment]
        except SyntaxError:
            return None
    for node in ast.walk(tree):
        target: ast.expr | None = None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in _WAIT_METHODS:
            target = node.func.value
        elif isinstance(node, (ast.Name, ast.Attribute)):
            target = node
        if target is None:
            continue
        try:
            obj = _evaluate(target, frame)
        except Exception:  # noqa: BLE001 - not a plain name chain, or gone: not this one
            continue
        if isinstance(obj, _LOCK_TYPES) or _is_future(obj):
            return obj
    return None


def _is_future(obj: Any) -> bool:
    import concurrent.futures
    import queue

    return isinstance(obj, (concurrent.futures.Future, queue.Queue))


def _holds(frame: FrameType, obj: Any) -> bool:
    """Whether the frame's code refers to ``obj``: a local, ``self``'s attribute, or a global it names."""
    try:
        local = frame.f_locals
    except Exception:  # noqa: BLE001 - another thread's frame changes under us
        return False
    for value in list(local.values()):
        if value is obj:
            return True
    owner = local.get("self")
    attrs = getattr(owner, "__dict__", None)
    if type(attrs) is dict and any(value is obj for value in list(attrs.values())):
        return True
    if isinstance(owner, threading.Thread) and owner is obj:
        return True
    scope = frame.f_globals
    return any(scope.get(name) is obj for name in frame.f_code.co_names)


def _waiters_for(obj: Any, stacks: dict[int, FrameType], skip: set[int]) -> list[StallThread]:
    """The threads (other than ``skip``) that hold ``obj`` or that ``obj`` stands for."""
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    wanted: set[int] = set()
    if isinstance(obj, threading.Thread) and obj.ident is not None:
        wanted.add(obj.ident)
    elif isinstance(obj, type(threading.RLock())):
        match = _OWNER.search(repr(obj))
        if match and int(match.group(1)):
            wanted.add(int(match.group(1)))
    if not wanted:
        for ident, top in stacks.items():
            if ident in skip:
                continue
            if any(_holds(frame, obj) for frame in _frames_to(top, None)):
                wanted.add(ident)
    out: list[StallThread] = []
    for ident in sorted(wanted):
        found = stacks.get(ident)
        if found is None or ident in skip:
            continue
        out.append(StallThread(names.get(ident, f"<thread {ident}>"), ident, tuple(_shown(found, None))))
    return out


def _waiting(
    frames: list[FrameType], stacks: dict[int, FrameType], skip: set[int]
) -> tuple[bool, Any, list[StallThread]]:
    """``(waiting, what on, holders)`` for the loop thread's frames, innermost first."""
    in_wait_module = False
    index = 0
    while index < len(frames) and _module(frames[index]) in _WAIT_MODULES:
        in_wait_module = True
        index += 1
    candidates = [frames[index]] if index < len(frames) else []
    if in_wait_module and index > 0:
        # ``self`` of the outermost waiting primitive (Thread.join, Future.result, Event.wait).
        owner = frames[index - 1].f_locals.get("self")
        if isinstance(owner, _LOCK_TYPES) or _is_future(owner):
            return True, owner, _waiters_for(owner, stacks, skip)
    for frame in candidates:
        obj = _waited_object(frame)
        if obj is not None:
            return True, obj, _waiters_for(obj, stacks, skip)
    return in_wait_module, None, []


def _type_name(obj: Any) -> str | None:
    if obj is None:
        return None
    kind = type(obj)
    return f"{kind.__module__}.{kind.__qualname__}"


def _thread_cpu(ident: int | None) -> float | None:
    if ident is None:
        return None
    try:
        return time.clock_gettime(time.pthread_getcpuclockid(ident))
    except (AttributeError, OSError, ValueError, OverflowError):
        return None


# --- the sample ------------------------------------------------------------------------


@dataclass(slots=True)
class _Sample:
    """What the watchdog saw on the loop thread mid-stall."""

    key: float
    kind: StallKind
    source: str
    stack: tuple[TraceFrame, ...]
    task: Any
    task_name: str | None
    chain: tuple[TraceFrame, ...]
    waiting_on: str | None
    waiting_for: tuple[StallThread, ...]
    cpu_at: float | None
    debugger: bool = False
    ongoing_reported: bool = False


def _sample(loop: Any, ident: int | None, base: CodeType | None, key: float) -> _Sample | None:
    """The loop thread's stack, running task and its chain, now; ``None`` if the thread is not found."""
    if ident is None:
        return None
    stacks = sys._current_frames()
    top = stacks.get(ident)
    if top is None:
        return None
    cpu_at = _thread_cpu(ident)
    task = asyncio.current_task(loop)
    stop = stop_frame(coro_of(task)) if task is not None else None
    live = _frames_to(top, stop)
    if stop is not None and live[-1] is not stop:
        # The task's frame is not on the stack (it is between steps): a callback runs, not the task.
        task, stop = None, None
        live = _frames_to(top, None)
    stack = tuple(_shown(top, stop))
    chain: tuple[TraceFrame, ...] = ()
    if task is not None:
        frames: list[TraceFrame] = []
        _collect.chain_frames(frames, _collect.node_of_task(task), task, True, task, loop)
        chain = tuple(frames)
    name = task_name(task) if task is not None else None
    debugger = _in_debugger(live)
    kind: StallKind
    waiting_on: Any = None
    holders: list[StallThread] = []
    if _idle(top, base):
        kind = "starved"
        source = "<starved>"
    else:
        waiting, waiting_on, holders = _waiting(live, stacks, {ident, threading.get_ident()})
        kind = "waiting" if waiting else "blocking"
        source = _source_of(live) or _chain_source(chain) or _chain_source(stack) or _innermost(stack)
    return _Sample(
        key, kind, source, stack, task, name, chain, _type_name(waiting_on), tuple(holders), cpu_at, debugger
    )


def _innermost(stack: tuple[TraceFrame, ...]) -> str:
    for frame in stack:
        if frame["filename"] is not None:
            return f"{_module_of_file(frame['filename'])}:{frame['name']}"
    return "<unknown>"


# --- one watched loop --------------------------------------------------------------------


class _LoopState:
    """The heartbeat on one loop, and what the watchdog knows of it."""

    __slots__ = (
        "base",
        "based",
        "ctx",
        "gaps",
        "gc_mark",
        "handle",
        "ident",
        "interval",
        "last",
        "limit",
        "loop",
        "pid",
        "sample",
        "stopped",
    )

    def __init__(self, loop: Any, interval: float, threshold: float) -> None:
        self.loop = loop
        self.interval = interval
        #: A gap between two beats past this is a stall.
        self.limit = interval + threshold
        #: ``time.monotonic()`` of the last beat; ``None`` until the first (or after the loop stopped).
        self.last: float | None = None
        #: ``(previous beat, this beat)`` of each gap past ``limit``, appended by the loop thread.
        self.gaps: collections.deque[tuple[float, float]] = collections.deque(maxlen=16)
        self.handle: Any = None
        self.stopped = False
        #: The code that called our beat when it is not Python's ``Handle._run`` (a loop in C: uvloop).
        self.base: CodeType | None = None
        self.based = False
        self.ident: int | None = None
        self.sample: _Sample | None = None
        self.gc_mark = _gc_total
        self.pid = os.getpid()
        # Our own (empty) context: the beat never runs in, or copies, a context of the program's.
        self.ctx = contextvars.Context()

    def beat(self) -> None:
        if self.stopped:
            return
        now = time.monotonic()
        last = self.last
        self.last = now
        if last is not None and now - last > self.limit:
            self.gaps.append((last, now))
        if not self.based:
            self.based = True
            self.ident = threading.get_ident()
            caller = sys._getframe(1)
            self.base = None if caller.f_code is _HANDLE_RUN else caller.f_code
        self.handle = self.loop.call_later(self.interval, self.beat, context=self.ctx)

    def start(self, here: bool) -> None:
        """Arm the first beat: now if called on the loop's own thread, else through ``call_soon_threadsafe``."""
        if here:
            self.last = time.monotonic()
            self.ident = threading.get_ident()
            self.handle = self.loop.call_later(self.interval, self.beat, context=self.ctx)
        else:
            self.ident = loop_thread(self.loop)
            self.handle = self.loop.call_soon_threadsafe(self.beat, context=self.ctx)

    def stop(self) -> None:
        self.stopped = True
        handle = self.handle
        if handle is None:
            return
        try:
            if asyncio.events._get_running_loop() is self.loop:
                handle.cancel()
            elif not self.loop.is_closed():
                self.loop.call_soon_threadsafe(handle.cancel, context=self.ctx)
        except Exception:  # noqa: BLE001 - a loop closing under us: its timers go with it
            pass


# --- the watch -----------------------------------------------------------------------------


class StallWatch:
    """A running stall watchdog (see :func:`watch_stalls`); :meth:`stop` ends it. A context manager."""

    def __init__(
        self,
        threshold: float,
        loop: asyncio.AbstractEventLoop | None,
        on_stall: Callable[[StallReport], None] | None,
        *,
        log: bool,
        long_stall: float,
        dedup_interval: float,
        max_reports_per_minute: int,
        interval: float | None,
        discover_interval: float,
    ) -> None:
        self.threshold = threshold
        self.interval = interval if interval is not None else min(max(threshold / 4, 0.002), 0.5)
        self.loop = loop
        self.on_stall = on_stall
        self.log = log
        self.long_stall = long_stall
        self.dedup_interval = dedup_interval
        self.max_reports_per_minute = max_reports_per_minute
        self.discover_interval = discover_interval
        self._states: dict[int, _LoopState] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._stopped = False
        #: Source -> ``time.monotonic()`` of its last report, and stalls suppressed since.
        self._last_report: collections.OrderedDict[str, float] = collections.OrderedDict()
        self._suppressed: dict[str, int] = {}
        self._recent: collections.deque[float] = collections.deque()
        #: ``(start, end)`` windows when the whole process was paused.
        self._pauses: collections.deque[tuple[float, float]] = collections.deque(maxlen=8)
        #: How many pauses of the whole process were seen (no stall reported across them).
        self.pauses = 0
        self._thread: threading.Thread | None = None

    # -- public -------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop watching: the heartbeats are cancelled and the watchdog thread ends. Idempotent, any thread."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            states = list(self._states.values())
            self._states.clear()
        self._stop.set()
        for state in states:
            state.stop()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread() and thread.is_alive():
            thread.join(timeout=5)
        _gc_watch(False)
        _forget(self)

    @property
    def stopped(self) -> bool:
        """Whether :meth:`stop` was called."""
        return self._stopped

    def watched_loops(self) -> list[asyncio.AbstractEventLoop]:
        """The loops with a heartbeat now (a loop found by discovery is added within a second)."""
        with self._lock:
            return [state.loop for state in self._states.values() if state.last is not None]

    def __enter__(self) -> StallWatch:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        what = "every loop" if self.loop is None else f"{type(self.loop).__name__} at {id(self.loop):#x}"
        state = "stopped" if self._stopped else "running"
        return f"<StallWatch threshold={self.threshold} {what} {state}>"

    # -- starting ------------------------------------------------------------------------

    def _start(self) -> None:
        _gc_watch(True)
        if self.loop is not None:
            self._add(self.loop)
        else:
            self._discover()
        self._thread = threading.Thread(target=self._run, name="async_trace stall watchdog", daemon=True)
        self._thread.start()

    def _add(self, loop: Any) -> None:
        if loop.is_closed():
            return
        with self._lock:
            if self._stopped or id(loop) in self._states:
                return
            state = _LoopState(loop, self.interval, self.threshold)
            self._states[id(loop)] = state
        here = asyncio.events._get_running_loop() is loop
        try:
            state.start(here)
        except Exception as exc:  # noqa: BLE001 - a loop closing under us, a broken loop
            with self._lock:
                self._states.pop(id(loop), None)
            if not isinstance(exc, RuntimeError):
                warn_internal(exc, "starting the stall watchdog's heartbeat")

    def _discover(self) -> None:
        for loop in running_loops():
            self._add(loop)

    # -- the watchdog thread ------------------------------------------------------------------

    def _run(self) -> None:
        interval = self.interval
        last_wake = time.monotonic()
        last_cpu = time.process_time()
        next_discovery = last_wake + self.discover_interval
        failures = 0
        while not self._stop.wait(interval):
            try:
                now = time.monotonic()
                cpu = time.process_time()
                late = now - last_wake - interval
                if late > max(self.threshold / 2, 0.2) and cpu - last_cpu < 0.05 * (now - last_wake):
                    # The watchdog itself did not run, and neither did anything else: the process was
                    # paused (SIGSTOP, a debugger, a paused VM). No stall across it is the loop's doing.
                    self._pauses.append((last_wake, now))
                    self.pauses += 1
                    for state in self._snapshot():
                        state.sample = None
                last_wake, last_cpu = now, cpu
                if self.loop is None and now >= next_discovery:
                    next_discovery = now + self.discover_interval
                    self._discover()
                for state in self._snapshot():
                    self._check(state, now)
                failures = 0
            except Exception as exc:  # noqa: BLE001 - the watchdog must never take the program down
                warn_internal(exc, "watching for event loop stalls")
                failures += 1
                if failures > 100:
                    return

    def _snapshot(self) -> list[_LoopState]:
        with self._lock:
            return list(self._states.values())

    def _paused_during(self, start: float, end: float) -> bool:
        return any(p_start < end and start < p_end for p_start, p_end in self._pauses)

    def _check(self, state: _LoopState, now: float) -> None:
        loop = state.loop
        if state.pid != os.getpid() or loop.is_closed():
            with self._lock:
                self._states.pop(id(loop), None)
            return
        if not loop.is_running():
            state.last = None  # a stopped loop does not beat; its next run starts afresh
            state.sample = None
            state.gaps.clear()
            return
        while state.gaps:
            start, end = state.gaps.popleft()
            self._gap(state, start, end)
        last = state.last
        if last is None:
            return
        overdue = now - last - state.interval
        if overdue < self.threshold / 2:
            if state.sample is None:
                state.gc_mark = _gc_total
            return
        if self._paused_during(last, now):
            return
        sample = state.sample
        if sample is None or sample.key != last:
            sample = state.sample = _sample(loop, state.ident, state.base, last)
            if sample is None:
                return
        if overdue + state.interval / 2 >= self.long_stall and not sample.ongoing_reported and not sample.debugger:
            sample.ongoing_reported = True
            self._report(state, sample, now - last - state.interval / 2, last, ongoing=True)

    def _gap(self, state: _LoopState, start: float, end: float) -> None:
        sample = state.sample
        state.sample = None
        if self._paused_during(start, end):
            return
        if sample is not None and sample.key != start:
            sample = None
        if sample is not None and sample.debugger:
            return
        self._report(state, sample, end - start - state.interval / 2, start, ongoing=False, end=end)
        state.gc_mark = _gc_total

    # -- reporting ------------------------------------------------------------------------------

    def _report(
        self,
        state: _LoopState,
        sample: _Sample | None,
        duration: float,
        start: float,
        *,
        ongoing: bool,
        end: float | None = None,
    ) -> None:
        gc_time = max(0.0, _gc_total - state.gc_mark) if not ongoing else 0.0
        kind: StallKind = sample.kind if sample is not None else "blocking"
        if gc_time >= duration / 2:
            kind = "gc"
        source = sample.source if sample is not None else "<unknown>"
        cpu: float | None = None
        if sample is not None and sample.cpu_at is not None:
            now_cpu = _thread_cpu(state.ident)
            if now_cpu is not None:
                cpu = max(0.0, now_cpu - sample.cpu_at)
        names = {thread.ident: thread.name for thread in threading.enumerate()}
        wall_start = time.time() - (time.monotonic() - start)
        allowed, suppressed = self._admit(source)
        if not ongoing:
            _count(source, duration, kind, allowed)
        if not allowed:
            return
        report = StallReport(
            duration=duration,
            threshold=self.threshold,
            kind=kind,
            source=source,
            stack=sample.stack if sample is not None else (),
            task=sample.task if sample is not None else None,
            task_name=sample.task_name if sample is not None else None,
            chain=sample.chain if sample is not None else (),
            waiting_on=sample.waiting_on if sample is not None else None,
            waiting_for=sample.waiting_for if sample is not None else (),
            ongoing=ongoing,
            loop=state.loop,
            thread=names.get(state.ident, f"<thread {state.ident}>") if state.ident is not None else "?",
            started=wall_start,
            cpu_time=cpu,
            gc_time=gc_time,
            suppressed=suppressed,
        )
        self._emit(report)

    def _admit(self, source: str) -> tuple[bool, int]:
        """Whether a report of ``source`` goes out now (dedup, rate limit), and how many were held back."""
        now = time.monotonic()
        last = self._last_report.get(source)
        recent = self._recent
        while recent and now - recent[0] > 60.0:
            recent.popleft()
        if (last is not None and now - last < self.dedup_interval) or len(recent) >= self.max_reports_per_minute:
            if source in self._suppressed or len(self._suppressed) < _SUMMARY_MAX:
                self._suppressed[source] = self._suppressed.get(source, 0) + 1
            return False, 0
        self._last_report[source] = now
        self._last_report.move_to_end(source)
        while len(self._last_report) > _SUMMARY_MAX:
            self._last_report.popitem(last=False)
        recent.append(now)
        return True, self._suppressed.pop(source, 0)

    def _emit(self, report: StallReport) -> None:
        if self.log:
            try:
                log_report(report)
            except Exception as exc:  # noqa: BLE001
                warn_internal(exc, "logging a stall report")
        if self.on_stall is not None:
            try:
                self.on_stall(report)
            except Exception:  # the program's callback: its failure is logged, not raised
                logger.exception("async_trace: the on_stall callback raised")


#: Every running watch, so that a forked child can restart the ones watching every loop.
_watches: list[StallWatch] = []
_watches_lock = threading.Lock()


def _forget(watch: StallWatch) -> None:
    with _watches_lock:
        if watch in _watches:
            _watches.remove(watch)


def _after_fork() -> None:
    """In a forked child: the watchdog threads are gone; restart those of every loop (gunicorn workers)."""
    global _gc_users, _watches_lock, _summary_lock, _gc_lock
    _watches_lock = threading.Lock()
    _summary_lock = threading.Lock()
    _gc_lock = threading.Lock()
    old = list(_watches)
    _watches.clear()
    _gc_users = 0
    while _on_gc in gc.callbacks:
        gc.callbacks.remove(_on_gc)
    for watch in old:
        if watch.loop is not None or watch.stopped:
            continue
        try:
            watch_stalls(
                watch.threshold,
                on_stall=watch.on_stall,
                log=watch.log,
                long_stall=watch.long_stall,
                dedup_interval=watch.dedup_interval,
                max_reports_per_minute=watch.max_reports_per_minute,
                interval=watch.interval,
                discover_interval=watch.discover_interval,
            )
        except Exception as exc:  # noqa: BLE001
            warn_internal(exc, "restarting the stall watchdog in a forked process")


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def watch_stalls(
    threshold: float = 0.1,
    *,
    loop: asyncio.AbstractEventLoop | None = None,
    on_stall: Callable[[StallReport], None] | None = None,
    log: bool = True,
    long_stall: float = 10.0,
    dedup_interval: float = 60.0,
    max_reports_per_minute: int = 10,
    interval: float | None = None,
    discover_interval: float = 1.0,
) -> StallWatch:
    """Start watching ``loop`` (default: every running loop, in any thread, and loops started later) for stalls.

    A stall is the loop not running for ``threshold`` seconds or more. Each is
    reported once the loop runs again (and once more, with ``ongoing`` set,
    if it lasts ``long_stall`` seconds): to the ``async_trace.stall`` logger
    at WARNING (unless ``log=False``) and to ``on_stall`` (called in the
    watchdog thread; what it raises is logged). Per ``source``, one report per
    ``dedup_interval`` seconds, and at most ``max_reports_per_minute`` in all;
    what is held back is counted in the next report's ``suppressed`` and in
    :func:`stall_summary`.

    Args:
        threshold: seconds; stalls of ``threshold + interval`` or more are always
            reported, shorter ones never.
        loop: the loop to watch; ``None``: every running loop, found again every
            ``discover_interval`` seconds.
        on_stall: called with each :class:`StallReport`.
        log: whether reports go to the ``async_trace.stall`` logger.
        long_stall: seconds after which a stall still going is reported.
        dedup_interval: seconds between two reports of one ``source``.
        max_reports_per_minute: reports per minute across sources.
        interval: the heartbeat and watchdog period (default ``threshold / 4``).
        discover_interval: seconds between two searches for new loops (``loop=None``).

    Returns:
        The :class:`StallWatch`: ``stop()`` it, or use it as a context manager.

    Raises:
        ValueError: a threshold, interval or limit that is not positive.
    """
    for name, value in (
        ("threshold", threshold),
        ("long_stall", long_stall),
        ("discover_interval", discover_interval),
        ("interval", 1.0 if interval is None else interval),
    ):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
            raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")
    if not isinstance(dedup_interval, (int, float)) or not dedup_interval >= 0:
        raise ValueError(f"dedup_interval must be a number of seconds >= 0, not {dedup_interval!r}")
    if not isinstance(max_reports_per_minute, int) or max_reports_per_minute < 1:
        raise ValueError(f"max_reports_per_minute must be a positive int, not {max_reports_per_minute!r}")
    watch = StallWatch(
        float(threshold),
        loop,
        on_stall,
        log=log,
        long_stall=float(long_stall),
        dedup_interval=float(dedup_interval),
        max_reports_per_minute=max_reports_per_minute,
        interval=None if interval is None else float(interval),
        discover_interval=float(discover_interval),
    )
    with _watches_lock:
        _watches.append(watch)
    watch._start()
    return watch


# --- rendering -------------------------------------------------------------------------

_KIND_TEXT: Final[dict[str, str]] = {
    "blocking": "code running on the loop",
    "waiting": "waiting for another thread",
    "starved": "the loop was ready but did not run",
    "gc": "garbage collection",
}


def _seconds(value: float) -> str:
    return f"{value:.3f} s" if value < 10 else f"{value:.1f} s"


def headline(report: StallReport) -> str:
    """``Event loop blocked for 0.312 s (threshold 0.100 s): code running on the loop, in app:handler``."""
    verb = "blocked for" if not report.ongoing else "blocked, still, after"
    text = (
        f"Event loop {verb} {_seconds(report.duration)} (threshold {_seconds(report.threshold)}): "
        f"{_KIND_TEXT[report.kind]}, in {report.source}"
    )
    if report.task_name is not None:
        text += f", task {_render.plain(repr(report.task_name))}"
    return text


def _lines(
    report: StallReport, style: _render.Style, ascii_only: bool, library_frames: _render.LibraryFrames
) -> list[str]:
    out = [headline(report) + "\n"]
    if report.suppressed:
        more = "stall" if report.suppressed == 1 else "stalls"
        out.append(f"({report.suppressed} more {more} in {report.source} not reported since the last report)\n")
    trace = report.trace
    if trace["frames"]:
        out.extend(_render.trace_lines(trace, None, style, ascii_only=ascii_only, library_frames=library_frames))
    for thread in report.waiting_for:
        what = report.waiting_on or "it"
        out.append(f"Thread {_render.plain(repr(thread.name))} (holding {what}):\n")
        data: TraceData = {"frames": list(thread.frames), "current_task": None, "in_executor": False}
        out.extend(_render.trace_lines(data, None, style, ascii_only=ascii_only, library_frames=library_frames))
    return out


def format_stall_report(
    report: StallReport,
    *,
    style: _render.Style = "arrows",
    ascii_only: bool = False,
    library_frames: _render.LibraryFrames = "collapse",
) -> list[str]:
    """The lines of a stall report, each ending in ``"\\n"``.

    A headline (duration, threshold, kind, source, task), a line saying how
    many stalls of that source were held back (if any), then the blocking
    stack followed by the task's creation chain as one trace, in ``style``
    (``"arrows"``: innermost first; ``"traceback"``: most recent call last,
    ``Async trace (most recent call last):`` first), library runs folded per
    ``library_frames``; for ``waiting``, each thread found holding what the
    loop waited on, and its stack.

    Raises:
        ValueError: an unknown ``style`` or ``library_frames``.
    """
    _render.check_style(style)
    _render.check_library_frames(library_frames)
    lines = _lines(report, style, ascii_only, library_frames)
    return [_render.to_ascii(line) for line in lines] if ascii_only else lines


def print_stall_report(
    report: StallReport,
    *,
    file: TextIO | None = None,
    style: _render.Style = "arrows",
    ascii_only: bool = False,
    library_frames: _render.LibraryFrames = "collapse",
) -> None:
    """Print :func:`format_stall_report`'s lines to ``file`` (default ``sys.stderr``, looked up at call time)."""
    _render.check_style(style)
    _render.check_library_frames(library_frames)
    _render.write(
        lambda plain: _lines(report, style, plain, library_frames),
        sys.stderr if file is None else file,
        ascii_only=ascii_only,
    )


def log_report(report: StallReport) -> None:
    """Send ``report`` to the ``async_trace.stall`` logger at WARNING, its fields as ``extra``."""
    if not logger.isEnabledFor(logging.WARNING):
        return
    text = "".join(format_stall_report(report)).rstrip("\n")
    logger.warning(text, extra=log_fields(report))


def log_fields(report: StallReport) -> dict[str, Any]:
    """The ``extra`` of a stall's log record: ``stall_duration``, ``stall_kind``, ``stall_source``, ..."""
    return {
        "stall_duration": report.duration,
        "stall_threshold": report.threshold,
        "stall_kind": report.kind,
        "stall_source": report.source,
        "stall_task": report.task_name,
        "stall_ongoing": report.ongoing,
        "stall_suppressed": report.suppressed,
        "stall_report": report,
    }


# --- the environment variable ---------------------------------------------------------------

_DURATION: Final = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|us|µs)?\s*$")


def parse_duration(text: str) -> float:
    """``"100ms"``, ``"0.1s"``, ``"0.1"`` (seconds), ``"500us"`` -> seconds; ``ValueError`` otherwise."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"not a duration: {text!r} (examples: 100ms, 0.25s, 1)")
    value = float(match.group(1))
    unit = match.group(2) or "s"
    seconds = value / 1000 if unit == "ms" else value / 1_000_000 if unit in ("us", "µs") else value
    if not seconds > 0:
        raise ValueError(f"a stall threshold must be positive, not {text!r}")
    return seconds


#: The watch the environment variable (or the command line) started.
_env_watch: StallWatch | None = None


def start_from_environment() -> StallWatch | None:
    """Start a watch of every loop if ``ASYNC_TRACE_STALL_THRESHOLD`` is set (once per process)."""
    global _env_watch
    text = os.environ.get(ENV_THRESHOLD)
    if not text or (_env_watch is not None and not _env_watch.stopped):
        return _env_watch
    try:
        threshold = parse_duration(text)
    except ValueError as exc:
        sys.stderr.write(f"async_trace: {ENV_THRESHOLD}: {exc}; no stall watchdog\n")
        return None
    _env_watch = watch_stalls(threshold)
    return _env_watch
