"""The live task tree: every task of a loop under the task that created it.

``asyncio.all_tasks()`` gives the tasks; the chain node in each task's context
gives its parent: the creator recorded by the node (a weak reference, so a
parent that finished still has an identity), else the one live task whose
node is the parent node. A finished parent becomes a placeholder, hung under
its own parent found the same way from its node. Nothing here runs until
:func:`task_tree` is called.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
from types import CodeType, CoroutineType, FrameType, GeneratorType
from typing import Any, Final, TextIO

from . import _census
from ._chain import (
    ElidedNode,
    ExecutorNode,
    Node,
    PendingNode,
    RootNode,
    ServerNode,
    ThreadRootNode,
    is_adopted,
    stop_frame,
    task_name,
)
from ._collect import TaskIndex, append_frames
from ._compat import coro_of
from ._config import check_library_frames, check_style
from ._discovery import awaiter_edges, executor_threads
from ._failsafe import warn_internal
from ._frames import USER, elided, frame_kind, line_at, resolve, resolve_uncached
from ._lineage import task_node
from ._loops import loop_thread
from ._misuse import loop_error, tree_error
from ._render_tree import tree_lines
from ._stack import walk
from ._types import (
    ExecutorThread,
    LibraryFrames,
    Style,
    TaskInfo,
    TaskOrigin,
    TaskState,
    TaskTree,
    TraceFrame,
)
from ._writer import write

__all__ = ["format_task_tree", "print_task_tree", "task_tree"]


# --- building ---------------------------------------------------------------


class _Entry:
    """A :class:`TaskInfo` under construction (parents are found after all entries exist)."""

    __slots__ = (
        "awaiters",
        "children",
        "created_at",
        "id",
        "name",
        "origin",
        "spec",
        "state",
        "suspended_at",
        "task",
        "threads",
    )

    def __init__(self, name: str | None, task: Any, state: TaskState, origin: TaskOrigin) -> None:
        self.name = name
        self.task = task
        self.id = id(task) if task is not None else None
        self.state = state
        self.origin = origin
        self.created_at: list[TraceFrame] = []
        self.suspended_at: list[TraceFrame] = []
        self.threads: list[ExecutorThread] = []
        self.children: list[_Entry] = []
        #: Entries of the live tasks awaiting this one.
        self.awaiters: list[_Entry] = []
        #: ``(parent node, reference to its owner)``; ``None``: top level.
        self.spec: tuple[Node, Any] | None = None


def _state(task: Any, running: Any) -> TaskState:
    if task is running:
        return "running"
    if not task.done():
        return "pending"
    if task.cancelled():
        return "cancelled"
    # Not task.exception(): that would mark the exception retrieved.
    return "failed" if getattr(task, "_exception", None) is not None else "done"


def _hops(node: Node, created: Any) -> tuple[list[TraceFrame], tuple[Node, Any] | None]:
    """Frames from ``node`` up to the parent task's node, and ``(parent node, its owner's ref)``."""
    frames: list[TraceFrame] = []
    append_frames(frames, resolve(node.frames), created, False)
    ref = node.creator_ref
    parent = node.parent
    while type(parent) is ExecutorNode or type(parent) is PendingNode or type(parent) is ServerNode:
        if type(parent) is not ServerNode:
            # A server's line is not where its connections' tasks were created: on asyncio's own
            # loop it sits above the accepting task (``_accept_connection2``), passed over by
            # ``owner()``; on uvloop, right above the connection's. Left out on both alike.
            append_frames(frames, resolve(parent.frames), None, type(parent) is ExecutorNode)
        ref = parent.creator_ref
        parent = parent.parent
    # A chain that starts in a plain thread: the task is a top-level entry.
    return frames, (None if parent is None or type(parent) is ThreadRootNode else (parent, ref))


#: Finished asyncio-internal tasks passed over in a row, at most (a chain is bounded by max_depth anyway).
_MAX_INTERNAL_HOPS: Final = 10_000


def _internal(node: Node) -> bool:
    """Whether ``node`` is the node of a task running a coroutine of asyncio's own."""
    code = node.code
    return isinstance(code, CodeType) and frame_kind(code) != USER and code.co_name != "<module>"


def _running(task: Any, loop: Any) -> list[TraceFrame] | None:
    """Where the running task runs now: its thread's stack down to the task's coroutine frame.

    (A running coroutine reports no ``cr_await``.) ``None`` if its frame is not on that stack.
    """
    stop = stop_frame(coro_of(task))
    ident = loop_thread(loop)
    frame: FrameType | None
    frame = sys._getframe(1) if ident is None or ident == threading.get_ident() else sys._current_frames().get(ident)
    if frame is None or stop is None:
        return None
    out: list[TraceFrame] = []
    append_frames(out, resolve_uncached(walk(frame, stop, remember=False)), None, False)
    return out


def _suspended(task: Any) -> list[TraceFrame]:
    """The coroutine's ``await`` chain, innermost first, as trace frames."""
    shown: list[tuple[str, int | None, str]] = []
    coro = coro_of(task)
    kind = frame_kind
    user = USER
    for _ in range(1000):  # a cycle cannot happen, but a debugging aid must not hang
        if type(coro) is CoroutineType:
            frame = coro.cr_frame
            nxt = coro.cr_await
        elif type(coro) is GeneratorType:  # a generator-based coroutine (an awaitable's __await__)
            frame = coro.gi_frame
            nxt = coro.gi_yieldfrom
        else:  # an awaitable object: no frame, and none of its attributes are read
            break
        if frame is None:
            break
        code = frame.f_code
        if kind(code) == user:
            # A suspended frame's line, through collection's cache (f_lineno decodes the line table).
            shown.append((code.co_name, line_at(code, frame.f_lasti), code.co_filename))
        if nxt is None:
            break
        coro = nxt
    out: list[TraceFrame] = []
    append_frames(out, tuple(reversed(shown)), None, False)
    return out


class _Builder:
    def __init__(self, loop: Any) -> None:
        self.loop = loop
        self.running = asyncio.current_task(loop)
        self.entries: dict[tuple[str, int], _Entry] = {}
        self.order: list[_Entry] = []
        self.todo: list[_Entry] = []
        self._index: TaskIndex | None = None

    def build(self, tasks: list[Any]) -> list[_Entry]:
        for task in tasks:
            self.of_task(task)
        roots: list[_Entry] = []
        while self.todo:
            entry = self.todo.pop()
            spec = entry.spec
            parent = self.owner(*spec) if spec is not None else None
            if parent is None or parent is entry:
                roots.append(entry)
            else:
                parent.children.append(entry)
        self.attach_threads()
        self.attach_awaiters(tasks)
        return roots

    def of_task(self, task: Any) -> _Entry:
        key = ("t", id(task))
        entry = self.entries.get(key)
        if entry is not None:
            return entry
        node = task_node(task)
        if node is None:
            entry = _Entry(task_name(task), task, _state(task, self.running), "unknown")
        elif type(node) is RootNode:
            entry = _Entry(task_name(task), task, _state(task, self.running), "unknown" if is_adopted(node) else "root")
        else:
            entry = _Entry(task_name(task), task, _state(task, self.running), "traced")
            entry.created_at, entry.spec = _hops(node, task)
        if entry.state == "running":
            running = _running(task, self.loop)
            entry.suspended_at = running if running is not None else _suspended(task)
        elif not task.done():
            entry.suspended_at = _suspended(task)
        self.add(key, entry)
        return entry

    def add(self, key: tuple[str, int], entry: _Entry) -> None:
        self.entries[key] = entry
        self.order.append(entry)
        self.todo.append(entry)

    def owner(self, node: Node, ref: Any) -> _Entry | None:
        """The entry of the task that ran with ``node`` as its own (``ref`` refers to it, if known).

        A finished task of asyncio's own (``_accept_connection2``, in whose
        context a server's protocol callbacks run) gets no placeholder: its
        children hang under its creator, found the same way (a loop: such
        tasks can nest).
        """
        for _ in range(_MAX_INTERNAL_HOPS):
            task = ref() if ref is not None else None
            if task is None and ref is None:
                task = self.unique_owner(node)
            if task is not None:
                return self.of_task(task)
            key = ("r", id(ref)) if ref is not None else ("n", id(node))
            entry = self.entries.get(key)
            if entry is not None:
                return entry
            kind = type(node)
            if kind is RootNode:
                name = node.name  # type: ignore[attr-defined]
                entry = _Entry(name, None, "finished", "unknown" if is_adopted(node) else "root")
            elif kind is ElidedNode:
                entry = _Entry(elided(node.hops, "task hop"), None, "finished", "elided")  # type: ignore[attr-defined]
                if node.parent is not None:
                    entry.spec = (node.parent, node.creator_ref)
            else:
                created_at, spec = _hops(node, None)
                if _internal(node):
                    if spec is None:
                        return None
                    node, ref = spec
                    continue
                entry = _Entry(None, None, "finished", "traced")
                entry.created_at, entry.spec = created_at, spec
            self.add(key, entry)
            return entry
        return None

    def unique_owner(self, node: Node) -> Any:
        # A task created by a callback records no creator: the parent is the
        # one live task of this loop whose own node is the callback's.
        if self._index is None:
            self._index = TaskIndex()
        return self._index.task_for(node, self.loop)

    def attach_threads(self) -> None:
        for creator, (name, ident, frames) in executor_threads():
            entry = self.entries.get(("t", id(creator)))
            if entry is not None:
                entry.threads.append(ExecutorThread(name, ident, frames))

    def attach_awaiters(self, tasks: list[Any]) -> None:
        try:
            edges = awaiter_edges(tasks)
        except Exception as exc:  # noqa: BLE001 - private asyncio attributes changed: no edges, still a tree
            warn_internal(exc, "finding which tasks await which")
            return
        entries = self.entries
        for awaited_id, waiters in edges.items():
            entry = entries.get(("t", awaited_id))
            if entry is None:
                continue
            for waiter in waiters:
                found = entries.get(("t", id(waiter)))
                if found is not None and found is not entry and found.state in ("running", "pending"):
                    entry.awaiters.append(found)


_DIGITS: Final = "0123456789"


def _sort_key(entry: _Entry) -> tuple[Any, ...]:
    # By where it was created, then by name, numbers in names in numeric order
    # for names that differ only there ("conn-2" before "conn-10").
    where: tuple[str, int] = ("", 0)
    for frame in entry.created_at:
        if frame["line"] is not None:
            where = (frame["filename"] or "", frame["line"])
            break
    name = entry.name or ""
    return (entry.origin == "unknown", where, entry.state == "finished", name.rstrip(_DIGITS), len(name), name)


def _freeze(roots: list[_Entry]) -> tuple[TaskInfo, ...]:
    """The entries as TaskInfo trees, each list of children sorted (see :func:`_sort_key`).

    Children before parents, in one pass over a breadth-first order: a chain
    of live tasks can be deeper than the recursion limit.
    """
    order = sorted(roots, key=_sort_key)
    for entry in order:  # grows while it is walked: breadth first
        if len(entry.children) > 1:
            entry.children.sort(key=_sort_key)
        order.extend(entry.children)
    position = _tree_positions(order[: len(roots)])
    done: dict[int, TaskInfo] = {}
    for entry in reversed(order):
        age, idle = _census.ages(entry.task)
        done[id(entry)] = TaskInfo(
            name=entry.name,
            id=entry.id,
            state=entry.state,
            origin=entry.origin,
            task=entry.task,
            created_at=tuple(entry.created_at),
            suspended_at=tuple(entry.suspended_at),
            executor_threads=tuple(entry.threads),
            children=tuple([done.pop(id(c)) for c in entry.children]),
            awaited_by=_awaited_by(entry, position),
            age=age,
            idle=idle,
        )
    return tuple(done[id(root)] for root in order[: len(roots)])


def _tree_positions(roots: list[_Entry]) -> dict[int, int]:
    """``id(entry)`` -> its index in the tree's depth-first order (:meth:`TaskTree.walk`'s)."""
    position: dict[int, int] = {}
    todo = list(reversed(roots))
    while todo:
        entry = todo.pop()
        position[id(entry)] = len(position)
        todo.extend(reversed(entry.children))
    return position


def _awaited_by(entry: _Entry, position: dict[int, int]) -> tuple[int, ...]:
    if not entry.awaiters:
        return ()
    unique = {id(e): e for e in entry.awaiters}.values()
    return tuple(e.id for e in sorted(unique, key=lambda e: position.get(id(e), 0)) if e.id is not None)


def _all_tasks(loop: Any) -> list[Any]:
    # all_tasks() retries its copy of the scheduled tasks, not (3.12+) of the
    # eager ones, which another thread's loop may change meanwhile.
    for _ in range(10):
        try:
            return list(asyncio.all_tasks(loop))
        except RuntimeError:
            continue
    return []


def task_tree(
    loop: asyncio.AbstractEventLoop | None = None, *, min_age: float | None = None, min_idle: float | None = None
) -> TaskTree:
    """The live tasks of ``loop`` (default: the running loop) as a tree by creation parent.

    ``min_age`` / ``min_idle`` (seconds): only the tasks known to be at least
    that old / idle (:attr:`TaskInfo.age`, :attr:`TaskInfo.idle`, known while
    a stall watch runs), with the entries above them.

    Each task hangs under the task that created it; a parent that has
    finished still holds its children, as a ``"finished"`` entry hung under
    its own parent. Tasks created while tracing was off are top-level entries
    of ``"unknown"`` origin, after the roots. Children are ordered by where
    they were created, then by name. Safe to call from any thread (e.g. a
    watchdog); the tree is a snapshot.

    Raises:
        TypeError: ``loop`` is neither an event loop nor ``None``.
        RuntimeError: no ``loop`` given and no loop running in this thread.
    """
    if (error := loop_error("task_tree", loop)) is not None:
        raise error
    if loop is None:
        loop = asyncio.get_running_loop()
    # Thousands of new objects would trigger collections that each scan every
    # live task; a third of the time for 10,000 tasks. Collect later instead.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        builder = _Builder(loop)
        roots = builder.build(_all_tasks(loop))
        frozen = _freeze(roots)
    finally:
        if was_enabled:
            gc.enable()
    if min_age is not None or min_idle is not None:
        frozen = _census.prune(frozen, min_age, min_idle)
    return TaskTree(loop=loop, roots=frozen)


# --- formatting ---------------------------------------------------------------


def format_task_tree(
    tree: TaskTree | None = None,
    *,
    style: Style = "arrows",
    group: bool = False,
    ascii_only: bool = False,
    library_frames: LibraryFrames = "collapse",
) -> list[str]:
    """The lines of ``tree`` (default: :func:`task_tree` of the running loop), like ``pstree``.

    ``style="arrows"``: one line per task, ``name (state) ← creating line``
    (then ``  [awaited by NAME, not its creator]`` when a task other than its
    creator awaits it), its suspended frames as ``↑`` lines under it,
    children joined by tree branches. ``style="traceback"``: per task,
    ``Awaited by`` (as above), ``Created at`` and ``Suspended at`` blocks of
    ``File "...", line N, in name`` lines (most recent call last), children
    indented two spaces.

    ``group=True``: instead of the tree, one line per group of live tasks
    with the same state, creation site and suspended site, with its count,
    largest group first (for finding leaks: thousands of tasks stuck at one
    line).

    ``ascii_only=True``: the decorations in ASCII (``^``, ``<-``, ``|--``,
    `` `-- ``, ``|``) instead of ``↑ ← ├── └── │``. A task name with control
    characters (newline, tab) is shown with them escaped, on one line. Any
    depth renders (no recursion).

    ``library_frames``: ``"collapse"`` (the default), ``"show"`` or
    ``"hide"``, as in :func:`format_async_trace`, for each frame list of a
    task (its first frame, the creation line or where it is suspended,
    always stays).

    Raises:
        TypeError: ``tree`` is neither a :class:`TaskTree` nor ``None``.
        ValueError: an unknown ``style`` or ``library_frames``.
        RuntimeError: no ``tree`` given and no loop running in this thread.
    """
    if (error := tree_error("format_task_tree", tree)) is not None:
        raise error
    check_style(style)
    check_library_frames(library_frames)
    if tree is None:
        tree = task_tree()
    return tree_lines(tree, style, group=group, ascii_only=ascii_only, library_frames=library_frames)


def print_task_tree(
    tree: TaskTree | None = None,
    *,
    file: TextIO | None = None,
    style: Style = "arrows",
    group: bool = False,
    ascii_only: bool = False,
    library_frames: LibraryFrames = "collapse",
) -> None:
    """Print :func:`format_task_tree`'s lines to ``file`` (default: ``sys.stdout``, looked up at call time).

    ASCII decorations when ``ascii_only`` or when the stream's encoding cannot
    encode the Unicode ones; what else it cannot encode is backslash-escaped.

    Raises:
        TypeError: ``tree`` is neither a :class:`TaskTree` nor ``None``.
        ValueError: an unknown ``style`` or ``library_frames``.
        RuntimeError: no ``tree`` given and no loop running in this thread.
    """
    if (error := tree_error("print_task_tree", tree)) is not None:
        raise error
    check_style(style)
    check_library_frames(library_frames)
    if tree is None:
        tree = task_tree()
    shown = tree
    write(
        lambda plain: tree_lines(shown, style, group=group, ascii_only=plain, library_frames=library_frames),
        file,
        ascii_only=ascii_only,
    )
