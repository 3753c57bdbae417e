"""Traces and task trees as JSON-ready data: Task objects become ``{"name", "id"}``."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from typing import Any, Final, TypedDict

from ._chain import task_name
from ._loops import loop_thread
from ._misuse import trace_error
from ._types import TaskOrigin, TaskState, TaskTree, TraceData, TraceFrame

__all__ = [
    "JSONExecutorThread",
    "JSONFrame",
    "JSONLoop",
    "JSONTask",
    "JSONTaskTree",
    "JSONTrace",
    "JSONTreeTask",
    "trace_to_dict",
    "trace_to_json",
    "tree_to_dict",
    "tree_to_json",
]


class JSONTask(TypedDict):
    name: str
    id: int


class JSONFrame(TypedDict):
    name: str
    line: int | None
    filename: str | None
    indent: int
    task: JSONTask | None
    is_executor: bool
    is_process: bool
    in_app: bool


class JSONTrace(TypedDict):
    frames: list[JSONFrame]
    current_task: JSONTask | None
    in_executor: bool


class JSONLoop(TypedDict):
    """The loop a :class:`JSONTaskTree` belongs to."""

    #: The loop's class name, e.g. ``"_UnixSelectorEventLoop"``.
    type: str
    #: ``id(loop)``.
    id: int
    #: The ident and name of the thread it runs in when converted (``None``: not running, or not known).
    thread_id: int | None
    thread_name: str | None


class JSONExecutorThread(TypedDict):
    """A :class:`~async_trace.ExecutorThread`: an executor thread working for a task."""

    name: str
    ident: int
    #: Where the thread is now, innermost first.
    frames: list[JSONFrame]


class JSONTreeTask(TypedDict):
    """One entry of :class:`JSONTaskTree`'s flat ``tasks`` list (a :class:`~async_trace.TaskInfo`)."""

    #: This entry's index in ``tasks``: unique in the tree, also for finished entries (``id`` ``None``).
    key: int
    #: The ``key`` of the entry it hangs under (its creator); ``None`` for a top-level entry.
    parent: int | None
    #: The keys of the entries under it, in the tree's order.
    children: list[int]
    #: 0 for a top-level entry, +1 per level down.
    depth: int
    name: str | None
    id: int | None
    state: TaskState
    origin: TaskOrigin
    #: Innermost first, as in :class:`~async_trace.TaskInfo`.
    created_at: list[JSONFrame]
    suspended_at: list[JSONFrame]
    executor_threads: list[JSONExecutorThread]
    #: The ``id``s of the live tasks of the tree awaiting this one now, in tree order
    #: (see :attr:`~async_trace.TaskInfo.awaited_by` for what each Python version sees).
    awaited_by: list[int]
    #: Seconds the task has been alive at least, and waited on the same thing at least, as a running
    #: stall watch's censuses saw it; ``None`` if none has (:attr:`~async_trace.TaskInfo.age`, ``idle``).
    age: float | None
    idle: float | None


class JSONTaskTree(TypedDict):
    """A :class:`~async_trace.TaskTree` as JSON-ready data (see :func:`tree_to_dict`)."""

    loop: JSONLoop
    #: How many entries are live tasks (not ``"finished"`` placeholders).
    live_count: int
    #: The keys of the top-level entries, in order.
    roots: list[int]
    #: Every entry, depth first (the order ``TaskTree.walk()`` and the printed tree use).
    tasks: list[JSONTreeTask]


def _task(task: Any) -> JSONTask | None:
    if task is None:
        return None
    return {"name": task_name(task), "id": id(task)}


def _frames(frames: Iterable[TraceFrame]) -> list[JSONFrame]:
    return [
        {
            "name": f["name"],
            "line": f["line"],
            "filename": f["filename"],
            "indent": f["indent"],
            "task": _task(f["task"]),
            "is_executor": f["is_executor"],
            "is_process": f.get("is_process", False),
            "in_app": f.get("in_app", True),
        }
        for f in frames
    ]


#: The frame keys :func:`trace_to_dict` reads (``is_process`` and ``in_app`` have defaults).
_REQUIRED: Final = ("name", "line", "filename", "indent", "task", "is_executor")


def trace_to_dict(trace: TraceData) -> JSONTrace:
    """The trace with every Task replaced by ``{"name": ..., "id": ...}``: JSON-ready.

    ``id`` is ``id(task)``, which tells tasks apart while they are alive.

    Raises:
        TypeError: ``trace`` is not a trace (a dict with ``frames``, each
            frame with the keys :class:`~async_trace.TraceFrame` requires).
    """
    if (error := trace_error("trace_to_dict", trace)) is not None:
        raise error
    try:
        frames = _frames(trace["frames"])
    except (KeyError, TypeError):
        # Which frame lacks what, found only when one does (logging converts a trace per record).
        error = trace_error("trace_to_dict", trace, _REQUIRED)
        if error is None:
            raise
        raise error from None
    return {
        "frames": frames,
        "current_task": _task(trace.get("current_task")),
        "in_executor": trace.get("in_executor", False),
    }


def trace_to_json(trace: TraceData, **dumps_kwargs: Any) -> str:
    """``json.dumps(trace_to_dict(trace), **dumps_kwargs)``.

    Raises:
        TypeError: ``trace`` is not a trace (as :func:`trace_to_dict`).
    """
    if (error := trace_error("trace_to_json", trace)) is not None:
        raise error
    try:
        data = trace_to_dict(trace)
    except TypeError:
        error = trace_error("trace_to_json", trace, _REQUIRED)
        if error is None:
            raise
        raise error from None
    return json.dumps(data, **dumps_kwargs)


def _loop(loop: Any) -> JSONLoop:
    ident = loop_thread(loop)
    name = None
    if ident is not None:
        name = next((t.name for t in threading.enumerate() if t.ident == ident), None)
    return {"type": type(loop).__name__, "id": id(loop), "thread_id": ident, "thread_name": name}


def tree_to_dict(tree: TaskTree) -> JSONTaskTree:
    """The tree as JSON-ready data: a flat, depth-first list of entries linked by ``key``.

    Each entry of ``tasks`` is a :class:`JSONTreeTask`: ``key`` (its index in
    ``tasks``), ``parent`` and ``children`` (keys), ``depth``, and the
    :class:`~async_trace.TaskInfo` fields with frames as :class:`JSONFrame`
    (a frame's ``task`` is ``{"name", "id"}``) and executor threads as
    :class:`JSONExecutorThread`, ``age`` and ``idle`` included (``None``
    without a running stall watch). ``roots`` are the top-level keys; ``loop``
    describes the loop (:class:`JSONLoop`).
    """
    tasks: list[JSONTreeTask] = []
    parents: list[JSONTreeTask] = []  # the entry at each depth on the way down
    roots: list[int] = []
    for depth, info in tree.walk():
        del parents[depth:]
        parent = parents[-1] if parents else None
        entry: JSONTreeTask = {
            "key": len(tasks),
            "parent": None if parent is None else parent["key"],
            "children": [],
            "depth": depth,
            "name": info.name,
            "id": info.id,
            "state": info.state,
            "origin": info.origin,
            "created_at": _frames(info.created_at),
            "suspended_at": _frames(info.suspended_at),
            "executor_threads": [
                {"name": t.name, "ident": t.ident, "frames": _frames(t.frames)} for t in info.executor_threads
            ],
            "awaited_by": list(info.awaited_by),
            "age": info.age,
            "idle": info.idle,
        }
        if parent is None:
            roots.append(entry["key"])
        else:
            parent["children"].append(entry["key"])
        tasks.append(entry)
        parents.append(entry)
    return {"loop": _loop(tree.loop), "live_count": tree.live_count, "roots": roots, "tasks": tasks}


def tree_to_json(tree: TaskTree, **dumps_kwargs: Any) -> str:
    """``json.dumps(tree_to_dict(tree), **dumps_kwargs)``."""
    return json.dumps(tree_to_dict(tree), **dumps_kwargs)
