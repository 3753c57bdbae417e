"""Collection: read the ContextVar, walk the chain, build the trace dicts.

All the work deferred at capture time happens here, through :mod:`._frames`:
line numbers are decoded from instruction offsets, asyncio's own frames are
dropped and the event loop machinery (and anything above it) is cut off.
Also the origin of the code running now, for the integrations
(:func:`current_node`, :func:`origin_of_node`): the chain above the current
task, read from its node without walking the current stack.
"""

from __future__ import annotations

import asyncio
import asyncio.events
import sys
from types import FrameType
from typing import Any, Final

import _async_trace_process as _hop

from ._chain import (
    CURRENT,
    ElidedNode,
    ExecutorNode,
    Node,
    ProcessNode,
    RootNode,
    ServerNode,
    TaskNode,
    ThreadRootNode,
    stop_frame,
    task_name,
)
from ._compat import TASK_REGISTRIES, coro_of
from ._frames import UNKNOWN_LINE_TEXT, Resolved, elided, resolve, resolve_uncached, resolved_cache, resolved_get
from ._inapp import in_app, in_app_cache
from ._lineage import hop_node, is_own, node_of_task, running_node
from ._speedups import CORE
from ._stack import walk
from ._types import FrameList, ProcessHopName, ThreadName, TraceData, TraceFrame

__all__: list[str] = []

_get_running_loop: Final = asyncio.events._get_running_loop
_current_task: Final = asyncio.current_task
_get_current: Final = CURRENT.get

# --- which frames are shown -------------------------------------------------


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


_in_app_get: Final = in_app_cache.get


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


def _emit(out: list[TraceFrame], frames: Any, task: Any, is_executor: bool) -> None:
    """Append the shown frames of one (shared, immutable) hop."""
    append_frames(out, resolve(frames), task, is_executor)


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
        matches = [task for task in entry[1].get(id(node), ()) if is_own(node, coro_of(task))]
        return matches[0] if len(matches) == 1 else None


def registered_tasks() -> list[Any]:
    """Every live task asyncio knows of, of every loop (weak sets copied from any thread)."""
    out: list[Any] = []
    for registry in TASK_REGISTRIES:
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


def trace_from(start: FrameType | None) -> TraceData:
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
        if node is None or not is_own(node, coro):
            # An eager task built directly, in its first step; else a task no hook saw being built.
            node = running_node(task, coro, node)
        if node is None:
            # Created before tracing was on, or while it was off: the task is
            # the root of what we know.
            frames.append(_frame(task_name(task), None, None, task, False, len(frames)))
            node = None
    else:
        append_frames(frames, resolve_uncached(walk(start, None, remember=False)), None, False)
        if loop is None:
            # An executor function run in a context the program copied: the hop is the call's.
            node = hop_node(node, start) or node
    remote = _hop.CHAIN.get()
    # In a process-pool worker, the call itself (node None) is an executor call too.
    in_executor = loop is None and (type(node) is ExecutorNode or (node is None and remote is not None))
    # In a callback (no running task) the node's task is unknown: looked up among the loop's tasks.
    boundaries, _ = append_chain(frames, node, task, task is not None, task, loop)
    if remote is not None:
        boundaries.extend(append_remote(frames, remote))
    frames.boundaries = frozenset(boundaries)
    return {"frames": frames, "current_task": task, "in_executor": in_executor}


def append_remote(frames: list[TraceFrame], records: tuple[_hop.Record, ...]) -> list[int]:
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


def append_chain(
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
    The compiled core has its own copy of the task hops' part (the rest it
    hands to :func:`append_node`); ``py_append_chain`` stays this one.
    """
    boundaries: list[int] = []
    root = -1
    index: list[TaskIndex] = []
    append = frames.append
    while node is not None:
        kind = type(node)
        if kind is TaskNode:
            if not known:
                created = created_by(node, last_seen, loop, index)
            # _emit() inlined, dict literal and all: this runs once per task hop.
            hop = node.frames
            hit = resolved_get(id(hop))
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
        else:
            if kind is RootNode and not known:
                created = created_by(node, last_seen, loop, index)
            if append_node(frames, node, created):
                root = len(frames) - 1
        ref = node.creator_ref
        known = ref is not None
        created = ref() if known else None
        if created is not None:
            last_seen = created
        node = node.parent
    return boundaries, root


def created_by(node: Node, last_seen: Any, loop: Any, index: list[TaskIndex]) -> Any:
    """The live task ``node`` created, where the chain does not say: looked up in its loop.

    ``index`` holds the collection's one :class:`TaskIndex`, made on first use.
    """
    if not index:
        index.append(TaskIndex())
    return index[0].task_for(node, loop_of(last_seen) if last_seen is not None else loop)


def append_node(frames: list[TraceFrame], node: Node, created: Any) -> bool:
    """Append the frames of one node other than a task hop; whether it was the chain's root.

    ``created`` is the task the node belongs to (a root's), ``None`` if gone or unknown.
    """
    kind = type(node)
    if kind is ExecutorNode:
        _emit(frames, node.frames, None, True)
    elif kind is ServerNode:
        _emit(frames, node.frames, None, False)
    elif kind is ProcessNode:
        append_frames(frames, resolve(node.frames), None, False, node.pid)  # type: ignore[attr-defined]
    elif kind is RootNode:
        name = task_name(created) if created is not None else node.name  # type: ignore[attr-defined]
        frames.append(_frame(name or "<finished task>", None, None, created, False, len(frames)))
        return True
    elif kind is ThreadRootNode:
        frames.append(_frame(ThreadName(node.name), None, None, None, False, len(frames)))  # type: ignore[attr-defined]
        return True
    elif kind is ElidedNode:
        frames.append(_frame(elided(node.hops, "task hop"), None, None, None, False, len(frames)))  # type: ignore[attr-defined]
    # A PendingNode only lives in the context of the callback that
    # creates its task; there is nothing of it to show.
    return False


#: The Python definitions, the reference (tests compare the compiled ones with them).
py_append_chain: Final = append_chain
py_append_frames: Final = append_frames
if CORE is not None:
    CORE.setup_collect(
        resolved_cache,
        in_app_cache,
        in_app,
        resolve,
        _frame,
        created_by,
        append_node,
        append_frames,
    )
    append_chain = CORE.append_chain
    append_frames = CORE.append_frames


def current_node() -> tuple[Node, Any] | None:
    """The chain node of the running task or executor call, and the running task (or ``None``)."""
    node = _get_current()
    loop = _get_running_loop()
    if loop is None:
        # An executor function run in a context the program copied: the hop is the call's.
        node = hop_node(node, sys._getframe(1)) or node
    if node is None:
        return None
    task = _current_task(loop) if loop is not None else None
    coro = task.get_coro() if task is not None else None
    if task is not None and not is_own(node, coro):
        # An eager task built directly, in its first step; a task built where no hook saw it
        # (its creator's node); else created untraced.
        repaired = running_node(task, coro, node)
        if repaired is None:
            return None
        node = repaired
    return node, task


def origin_of_node(node: Node, task: Any) -> list[TraceFrame] | None:
    """The chain from ``node`` up, innermost first; ``None`` if it holds no line (a root task's)."""
    frames = chain_trace(node, task)[0]
    return frames if has_line(frames) else None


def has_line(frames: list[TraceFrame]) -> bool:
    return any(frame["line"] is not None for frame in frames)


def creation_site(frames: list[TraceFrame]) -> TraceFrame | None:
    """The innermost frame with a line: where the task was created, or the executor call made.

    ``None`` where the creation line is unknown (a task built where no hook saw
    it, :data:`._frames.UNKNOWN_LINE_TEXT`): the next line out is its creator's
    creation, not its own.
    """
    for frame in frames:
        if frame["line"] is not None:
            return frame
        if frame["name"] == UNKNOWN_LINE_TEXT:
            return None
    return None


def chain_trace(node: Node | None, created: Any) -> tuple[list[TraceFrame], list[int], int]:
    """The frames of ``node``'s chain, the indices of its task boundaries and of its root.

    ``created`` is the task ``node`` belongs to, ``None`` if gone or unknown.
    """
    frames: list[TraceFrame] = []
    boundaries, root = append_chain(frames, node, created, created is not None, created, _get_running_loop())
    return frames, boundaries, root
