"""Collection: read the ContextVar, walk the chain, build the trace dicts.

All the work deferred at capture time happens here: line numbers are decoded
from instruction offsets, asyncio's own frames are dropped and the event loop
machinery (and anything above it) is cut off.
"""

from __future__ import annotations

import asyncio
import asyncio.events
import concurrent.futures
import os
import threading
from types import CodeType, FrameType
from typing import Any, Final

import _async_trace_process as _hop

from . import _anyio
from ._capture import adopt_inherited, in_first_step, walk
from ._chain import (
    CURRENT,
    ElidedNode,
    ExecutorNode,
    Frames,
    Node,
    ProcessNode,
    RootNode,
    TaskNode,
    ThreadRootNode,
    context_of,
    coro_of,
    stop_frame,
    task_name,
    valid_for,
)
from ._inapp import in_app, in_app_cache
from ._types import FrameList, ProcessHopName, ThreadName, TraceData, TraceFrame

__all__: list[str] = []

_get_running_loop: Final = asyncio.events._get_running_loop
_current_task: Final = asyncio.current_task

# --- which frames are shown -------------------------------------------------

USER, SKIP, CUT = 0, 1, 2
#: A function that started a loop running in C (uvloop's ``run_until_complete``,
#: called by the program itself or by a server's runner): shown when a trace
#: starts in it, else the event loop's edge (see :func:`note_loop_caller`).
LOOP_CALLER: Final = 3


def _dir_of(path: str | None) -> str:
    return os.path.dirname(os.path.abspath(path or "")) + os.sep


#: Bound at import: a tool that patches ``os.path.abspath`` to flag blocking calls on the loop
#: (blockbuster) must not break a trace printed there (a code object's absolute path: no I/O).
_abspath: Final = os.path.abspath
_PACKAGE_DIR: Final = _dir_of(__file__)
_ASYNCIO_DIR: Final = _dir_of(asyncio.__file__)
_FUTURES_DIR: Final = _dir_of(concurrent.futures.__file__)
_THREADING_FILE: Final = os.path.abspath(threading.__file__ or "")
#: ``uvloop.run()`` runs the user's coroutine inside its own ``wrapper()`` coroutine.
_UVLOOP_RUNNER: Final = os.sep + os.path.join("uvloop", "__init__.py")

#: Frames where the event loop or a worker thread starts running user code.
#: Everything from one of these outwards is machinery (or the program that
#: called asyncio.run), never part of a trace.
_ENTRY_POINTS: Final = {
    ("events.py", "_run"),
    ("base_events.py", "_run_once"),
    ("base_events.py", "run_forever"),
    ("base_events.py", "run_until_complete"),
    ("runners.py", "run"),
    ("thread.py", "run"),
    ("thread.py", "_worker"),
    ("process.py", "_process_worker"),  # a process pool's worker (forked: the parent's frames are above it)
    ("threading.py", "run"),
    ("threading.py", "_bootstrap_inner"),
    ("threading.py", "_bootstrap"),
}

#: Python's Handle._run: where the loop runs a callback (see resolve_uncached).
_HANDLE_RUN: Final = asyncio.events.Handle._run.__code__

# Keyed by id(code) with the code kept in the value and compared by identity:
# hashing a code object walks its bytecode on 3.12+.
_kind_cache: dict[int, tuple[CodeType, int]] = {}
_line_cache: dict[tuple[int, int], tuple[CodeType, int | None]] = {}
_CACHE_MAX: Final = 4096


#: The functions that started a C loop with a root task, by ``id`` (see :func:`note_loop_caller`).
_loop_callers: dict[int, CodeType] = {}
_LOOP_CALLERS_MAX: Final = 256


def note_loop_caller(frame: FrameType | None) -> None:
    """Remember the function that made a root task on a loop running in C (uvloop).

    Called with the frame that called ``loop.create_task`` for a root task
    (``asyncio.run``, ``run_until_complete``), not for stdlib loops: their
    ``run_until_complete`` / ``asyncio.Runner`` frames are the loop's edge
    already. A uvloop loop runs callbacks from C, so a hop captured in a
    callback walks on to the code that started the loop (uvicorn's runner on
    3.10, click, ``runpy``); its first function outside asyncio and us is
    where the loop was started, and collection cuts such a hop there. Roots
    are rare: this runs once per ``asyncio.run`` or so.
    """
    for _ in range(64):
        if frame is None:
            return
        code = frame.f_code
        kind = frame_kind(code)
        if kind == CUT:
            return  # asyncio.Runner, a Python run_until_complete: the edge is there already
        if kind != SKIP:
            if kind == USER and len(_loop_callers) < _LOOP_CALLERS_MAX:
                _loop_callers[id(code)] = code
                _kind_cache.pop(id(code), None)
            return
        frame = frame.f_back


def frame_kind(code: CodeType) -> int:
    cached = _kind_cache.get(id(code))
    if cached is not None and cached[0] is code:
        return cached[1]
    if _anyio.entry_codes.get(id(code)) is code:
        return CUT  # not cached: rare (once per anyio worker frame shown)
    if _loop_callers.get(id(code)) is code:
        return LOOP_CALLER  # not cached: rare, and the registry can grow after a lookup
    filename = _abspath(code.co_filename) if code.co_filename[:1] != "<" else code.co_filename
    if filename.startswith((_ASYNCIO_DIR, _FUTURES_DIR)) or filename == _THREADING_FILE:
        key = (os.path.basename(filename), code.co_name)
        kind = CUT if key in _ENTRY_POINTS else SKIP
    elif (
        filename.startswith(_PACKAGE_DIR)
        or code.co_name == "<module>"
        or (code.co_name == "wrapper" and filename.endswith(_UVLOOP_RUNNER))
    ):
        kind = SKIP
    else:
        kind = USER
    if len(_kind_cache) >= _CACHE_MAX:
        _kind_cache.clear()
    _kind_cache[id(code)] = (code, kind)
    return kind


def line_at(code: CodeType, lasti: int) -> int | None:
    key = (id(code), lasti)
    cached = _line_cache.get(key)
    if cached is not None and cached[0] is code:
        return cached[1]
    line: int | None = None
    if lasti >= 0:
        for start, end, lineno in code.co_lines():
            if lineno is not None and start <= lasti:
                line = lineno  # the last line starting at or before lasti
            if start <= lasti < end:
                break
    if line is None:
        line = code.co_firstlineno
    if len(_line_cache) >= _CACHE_MAX:
        _line_cache.clear()
    _line_cache[key] = (code, line)
    return line


def _frame(
    name: str,
    line: int | None,
    filename: str | None,
    task: Any,
    is_executor: bool,
    indent: int,
    is_process: bool = False,
) -> TraceFrame:
    return {
        "name": name,
        "line": line,
        "filename": filename,
        "indent": indent,
        "task": task,
        "is_executor": is_executor,
        "is_process": is_process,
        # in_app() with its cache hit inlined: this runs for every collected frame.
        "in_app": hit[0] if filename is not None and (hit := _in_app_get(filename)) is not None else in_app(filename),
    }


#: Where a hop's creation line is unknown (``_chain.UNKNOWN_LINE``): a task no hook saw being built.
UNKNOWN_LINE_TEXT: Final = "... built here by asyncio.Task(...), line unknown ..."


def _elided(count: int, what: str) -> str:
    unit = what if count == 1 else what + "s"
    return f"... {count} {unit} elided ..."


#: One hop's shown frames: ``(name, line, filename)``, innermost first; elision
#: markers have ``line`` None.
Resolved = tuple[tuple[str, "int | None", "str | None"], ...]

# Frame tuples are immutable and shared between sibling nodes, so what they
# resolve to is cached (by identity, the tuple kept in the value).
_resolved_cache: dict[int, tuple[Frames, Resolved]] = {}
_resolved_get: Final = _resolved_cache.get
_in_app_get: Final = in_app_cache.get


def resolve_uncached(frames: Frames) -> Resolved:
    out: list[tuple[str, int | None, str | None]] = []
    append = out.append
    kind_get = _kind_cache.get
    line_get = _line_cache.get
    taken = False
    for i in range(0, len(frames), 2):
        code: Any = frames[i]
        lasti: Any = frames[i + 1]
        if code is None:
            append((_elided(lasti, "frame") if lasti >= 0 else UNKNOWN_LINE_TEXT, None, None))
            continue
        # frame_kind() and line_at(), their cache hits inlined: this runs for every shown frame.
        hit = kind_get(id(code))
        kind = hit[1] if hit is not None and hit[0] is code else frame_kind(code)
        if kind:
            if kind == CUT and (taken or code is _HANDLE_RUN):
                # The event loop: above it is the program that started it. A
                # hop captured in a callback (a protocol method) stops at
                # Handle._run even when all its frames were asyncio's own.
                break
            if kind != LOOP_CALLER:
                continue
            if taken:
                break  # where a C loop was started: the program that started it follows
        hit2 = line_get((id(code), lasti))
        line = hit2[1] if hit2 is not None and hit2[0] is code else line_at(code, lasti)
        append((code.co_name, line, code.co_filename))
        taken = True
    return tuple(out)


def clear_caches() -> None:
    """Empty the kind, line and resolved-frames caches (``disable_tracing()``)."""
    _kind_cache.clear()
    _line_cache.clear()
    _resolved_cache.clear()


def resolve(frames: Frames) -> Resolved:
    """The frames of one hop as shown: asyncio's own dropped, cut at the event loop."""
    cached = _resolved_cache.get(id(frames))
    if cached is not None and cached[0] is frames:
        return cached[1]
    result = resolve_uncached(frames)
    if len(_resolved_cache) >= _CACHE_MAX:
        _resolved_cache.clear()
    _resolved_cache[id(frames)] = (frames, result)
    return result


def append_frames(out: list[TraceFrame], shown: Resolved, task: Any, is_executor: bool, pid: int = 0) -> None:
    """Append one hop's frames; the first real frame gets ``task``/``is_executor`` (``pid``: ``is_process``)."""
    for name, line, filename in shown:
        if line is None:  # an elision marker does not take the boundary
            out.append(_frame(name, None, None, None, False, len(out)))
            continue
        if pid:
            out.append(_frame(ProcessHopName(name, pid), line, filename, None, False, len(out), True))
            pid = 0
            continue
        out.append(_frame(name, line, filename, task, is_executor, len(out)))
        task = None
        is_executor = False


def _emit(out: list[TraceFrame], frames: Frames, task: Any, is_executor: bool) -> None:
    """Append the shown frames of one (shared, immutable) hop."""
    append_frames(out, resolve(frames), task, is_executor)


def node_of_task(task: Any) -> Node | None:
    """The chain node in ``task``'s context, or ``None``."""
    ctx = context_of(task)
    node = ctx.get(CURRENT) if ctx is not None else None
    return node if isinstance(node, Node) else None


class TaskIndex:
    """Fallback: the live task a node created, looked up among a loop's tasks.

    Used only where the chain does not say (a task created by a callback has
    no creator task): the one live task whose context holds the node and
    whose coroutine the node describes; ``None`` if there is not exactly one.
    Built once per collection, per loop, and only if needed.
    """

    __slots__ = ("_by_loop",)

    def __init__(self) -> None:
        self._by_loop: dict[int, tuple[Any, dict[int, list[Any]]]] = {}

    def task_for(self, node: Node, loop: Any) -> Any:
        if loop is None:
            return None
        entry = self._by_loop.get(id(loop))
        if entry is None or entry[0] is not loop:
            index: dict[int, list[Any]] = {}
            try:
                tasks = asyncio.all_tasks(loop)
            except RuntimeError:
                tasks = set()
            for task in tasks:
                found = node_of_task(task)
                if found is not None:
                    index.setdefault(id(found), []).append(task)
            entry = (loop, index)
            self._by_loop[id(loop)] = entry
        matches = [task for task in entry[1].get(id(node), ()) if valid_for(node, coro_of(task))]
        return matches[0] if len(matches) == 1 else None


#: asyncio's registries of live tasks, every loop's: 3.10/3.11 ``_all_tasks``;
#: 3.12+ ``_scheduled_tasks`` plus ``_eager_tasks`` (those in their first, eager step).
_REGISTRIES: Final = tuple(
    registry
    for registry in (getattr(asyncio.tasks, name, None) for name in ("_all_tasks", "_scheduled_tasks", "_eager_tasks"))
    if registry is not None
)


def registered_tasks() -> list[Any]:
    """Every live task asyncio knows of, of every loop (weak sets copied from any thread)."""
    out: list[Any] = []
    for registry in _REGISTRIES:
        for _ in range(100):
            try:
                out.extend(list(registry))
                break
            except RuntimeError:  # changed size while copied, in another thread: again
                continue
    return out


def loop_of(task: Any) -> Any:
    try:
        return task.get_loop()
    except Exception:  # noqa: BLE001 - a Future-like object without get_loop
        return None


def collect(start: FrameType | None) -> TraceData:
    """Build the trace for code running at ``start`` (see ``collect_async_trace``).

    Walking outwards, the task created at each task boundary is the creator
    recorded by the node below it (the running task for the innermost one).
    """
    loop = _get_running_loop()
    task = _current_task(loop) if loop is not None else None
    node = CURRENT.get()
    frames = FrameList()
    if task is not None:
        coro = task.get_coro()
        append_frames(frames, resolve_uncached(walk(start, stop_frame(coro), remember=False)), None, False)
        if node is None or not valid_for(node, coro):
            # An eager task built directly, in its first step; else a task no hook saw being built.
            node = in_first_step(task, coro, node) or adopt_inherited(node, coro)
        if node is None:
            # Created before tracing was on, or while it was off: the task is
            # the root of what we know.
            frames.append(_frame(task_name(task), None, None, task, False, len(frames)))
            node = None
    else:
        append_frames(frames, resolve_uncached(walk(start, None, remember=False)), None, False)
    remote = _hop.CHAIN.get()
    # In a process-pool worker, the call itself (node None) is an executor call too.
    in_executor = loop is None and (type(node) is ExecutorNode or (node is None and remote is not None))
    # In a callback (no running task) the node's task is unknown: looked up among the loop's tasks.
    boundaries, _ = chain_frames(frames, node, task, task is not None, task, loop)
    if remote is not None:
        boundaries.extend(remote_frames(frames, remote))
    frames.boundaries = frozenset(boundaries)
    return {"frames": frames, "current_task": task, "in_executor": in_executor}


def remote_frames(frames: list[TraceFrame], records: tuple[_hop.Record, ...]) -> list[int]:
    """Append the frames of another process's chain (a process hop's records); returns its boundaries."""
    boundaries: list[int] = []
    for name, line, filename, mark, pid in records:
        index = len(frames)
        if mark == _hop.MARK_PROCESS:
            frames.append(_frame(ProcessHopName(name, pid), line, filename, None, False, index, True))
            continue
        if mark == _hop.MARK_BOUNDARY:
            boundaries.append(index)
        shown = ThreadName(name) if mark == _hop.MARK_THREAD_ROOT else name
        frames.append(_frame(shown, line, filename, None, mark == _hop.MARK_EXECUTOR, index))
    return boundaries


def chain_frames(
    frames: list[TraceFrame], node: Node | None, created: Any, known: bool, last_seen: Any, loop: Any
) -> tuple[list[int], int]:
    """Append the frames of ``node``'s chain to ``frames``, innermost first.

    ``created`` is the task ``node`` belongs to (the task created at the
    next boundary outwards); ``known`` says whether ``created`` is known
    (``None`` may mean "finished"); ``last_seen`` is the latest task met,
    whose loop the fallback searches (else ``loop``). Walking outwards, the
    task created at each boundary is the creator recorded by the node below.

    Returns the indices of the task boundaries (whether or not their task is
    still alive) and of the root (-1 if the chain has no root: elided).
    """
    boundaries: list[int] = []
    root = -1
    index: TaskIndex | None = None
    append = frames.append
    while node is not None:
        kind = type(node)
        if (kind is TaskNode or kind is RootNode) and not known:
            if index is None:
                index = TaskIndex()
            created = index.task_for(node, loop_of(last_seen) if last_seen is not None else loop)
        if kind is TaskNode:
            # _emit() inlined, dict literal and all: this runs once per task hop.
            hop = node.frames
            hit = _resolved_get(id(hop))
            shown = hit[1] if hit is not None and hit[0] is hop else resolve(hop)
            boundary = True
            for name, line, filename in shown:
                i = len(frames)
                if line is None:  # an elision marker does not take the boundary
                    append(_frame(name, None, None, None, False, i))
                    continue
                if boundary:
                    boundaries.append(i)
                    boundary = False
                app = _in_app_get(filename)  # type: ignore[arg-type]
                append(
                    {
                        "name": name,
                        "line": line,
                        "filename": filename,
                        "indent": i,
                        "task": created,
                        "is_executor": False,
                        "is_process": False,
                        "in_app": app[0] if app is not None else in_app(filename),
                    }
                )
                created = None
        elif kind is ExecutorNode:
            _emit(frames, node.frames, None, True)
        elif kind is ProcessNode:
            append_frames(frames, resolve(node.frames), None, False, node.pid)  # type: ignore[attr-defined]
        elif kind is RootNode:
            name = task_name(created) if created is not None else node.name  # type: ignore[attr-defined]
            root = len(frames)
            frames.append(_frame(name or "<finished task>", None, None, created, False, root))
        elif kind is ThreadRootNode:
            root = len(frames)
            frames.append(_frame(ThreadName(node.name), None, None, None, False, root))  # type: ignore[attr-defined]
        elif kind is ElidedNode:
            frames.append(_frame(_elided(node.hops, "task hop"), None, None, None, False, len(frames)))  # type: ignore[attr-defined]
        # A PendingNode only lives in the context of the callback that
        # creates its task; there is nothing of it to show.
        ref = node.creator_ref
        known = ref is not None
        created = ref() if known else None
        if created is not None:
            last_seen = created
        node = node.parent
    return boundaries, root
