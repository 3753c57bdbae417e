"""Rendering another process's tasks: ``python -m async_trace ps | pstree``'s lines.

From the JSON-ready snapshot a remote process sends (``_dump.remote_snapshot``,
or 3.14's ``asyncio`` call graph), never from live objects.
"""

from __future__ import annotations

import os
from typing import Any, cast

from ._inapp import in_app
from ._render import entry_name, frame_text, plain, plural
from ._render_tree import tree_lines
from ._types import TaskTree, TraceFrame
from ._writer import Decorations, decorations

__all__: list[str] = []


def _where(loop: dict[str, Any]) -> str:
    name = loop.get("thread_name")
    if name is not None:
        return f"thread {name!r}"
    return f"thread {loop['thread_id']}" if loop.get("thread_id") is not None else "an unknown thread"


def pstree_lines(result: dict[str, Any], trees: list[TaskTree], *, ascii_only: bool = False) -> list[str]:
    """``pstree``'s lines: each loop's task tree (``trees``, as ``dump_tasks`` prints them), or the await graph."""
    pid = result["pid"]
    if result["source"] == "async_trace":
        loops = result["loops"]
        out = [f"Async task dump of process {pid}: {plural(len(loops), 'running event loop')}\n"]
        for data, tree in zip(loops, trees, strict=True):
            out.append(f"\nLoop {data['loop']['type']} in {_where(data['loop'])}:\n")
            out.extend(tree_lines(tree, ascii_only=ascii_only))
        return out
    graphs = result["await_graph"]
    out = [
        f"Await graph of process {pid} (each task under the task awaiting it; no creation origins): "
        f"{plural(len(graphs), 'event loop')}\n"
    ]
    for graph in graphs:
        out.append(f"\nLoop in {_where(graph)}:\n")
        out.extend(_await_tree(graph["tasks"], decorations(ascii_only)))
    return out


def remote_trace_frames(frames: list[dict[str, Any]]) -> tuple[TraceFrame, ...]:
    """The remote snapshot's frame dicts as :class:`TraceFrame` (no task objects there)."""
    # A snapshot from an older async-trace has no ``in_app``: decided here, from the same files.
    return tuple(
        cast(TraceFrame, {"is_process": False, "in_app": in_app(f.get("filename")), **f, "task": None}) for f in frames
    )


def _await_tree(tasks: list[dict[str, Any]], deco: Decorations) -> list[str]:
    tasks = sorted(tasks, key=by_name)
    by_id = {task["id"]: task for task in tasks}
    children: dict[int, list[tuple[dict[str, Any], list[dict[str, Any]]]]] = {}
    for task in tasks:
        for waiter in task["awaited_by"]:
            if waiter["id"] in by_id:
                children.setdefault(waiter["id"], []).append((task, waiter["frames"]))
    roots = [task for task in tasks if not any(w["id"] in by_id for w in task["awaited_by"])]
    shown: set[int] = set()
    out: list[str] = []

    def draw(top: dict[str, Any]) -> None:
        # (task, awaited at, lead, rest, the ids on the path down to it): an explicit stack.
        todo: list[tuple[dict[str, Any], list[dict[str, Any]], str, str, frozenset[int]]] = [
            (top, [], "", "", frozenset({top["id"]}))
        ]
        while todo:
            task, at, lead, rest, path = todo.pop()
            shown.add(task["id"])
            awaited = f" {deco.left} awaited at {frame_text(remote_trace_frames(at)[0])}" if at else ""
            out.append(f"{lead}{plain(str(task['name']))}{awaited}\n")
            kids = [k for k in children.get(task["id"], []) if k[0]["id"] not in path]
            detail = rest + (deco.rail if kids else deco.blank)
            out.extend(f"{detail}{deco.up} {frame_text(f)}\n" for f in remote_trace_frames(task["frames"]))
            for i in range(len(kids) - 1, -1, -1):
                kid, kid_at = kids[i]
                last = i == len(kids) - 1
                todo.append(
                    (
                        kid,
                        kid_at,
                        rest + (deco.last if last else deco.tee),
                        rest + (deco.blank if last else deco.rail),
                        path | {kid["id"]},
                    )
                )

    for task in roots:
        draw(task)
    for task in tasks:  # in a cycle of awaits only
        if task["id"] not in shown:
            draw(task)
    return out


def by_name(task: dict[str, Any]) -> tuple[str, int]:
    """Tasks in a stable order (asyncio keeps them in a set): by name, numbers in names in numeric order."""
    name = str(task["name"])
    digits = len(name) - len(name.rstrip("0123456789"))
    return (name[: len(name) - digits], int(name[len(name) - digits :] or -1))


def _ps_site(frames: list[dict[str, Any]]) -> str:
    for frame in frames:
        if frame["line"] is not None and frame["filename"]:
            return f"{frame['name']} {os.path.basename(frame['filename'])}:{frame['line']}"
    return frames[0]["name"] if frames else ""


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    rows = [[plain(str(cell)) for cell in row] for row in rows]  # a name with a newline keeps its row
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(row: list[str]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() + "\n"

    return [line(header), line(["-" * w for w in widths]), *map(line, rows)]


def _hex(value: int | None) -> str:
    return f"{value:#x}" if isinstance(value, int) else ""


def ps_lines(result: dict[str, Any]) -> list[str]:
    """``ps``'s lines: one row per task of every loop."""
    rows: list[list[str]] = []
    if result["source"] == "async_trace":
        header = [
            "thread",
            "task id",
            "name",
            "state",
            "origin",
            "created at",
            "suspended at",
            "parent",
            "parent id",
            "awaited by",
        ]
        for data in result["loops"]:
            thread = str(data["loop"].get("thread_name") or data["loop"].get("thread_id") or "?")
            tasks = data["tasks"]
            names = {task["id"]: entry_name(task["name"] or None) for task in tasks if task["id"] is not None}
            for task in tasks:
                parent = tasks[task["parent"]] if task["parent"] is not None else None
                awaiters = ", ".join(names.get(i, _hex(i)) for i in task.get("awaited_by", ()))
                rows.append(
                    [
                        thread,
                        _hex(task["id"]),
                        entry_name(task["name"] or None),
                        task["state"],
                        task["origin"],
                        _ps_site(task["created_at"]),
                        _ps_site(task["suspended_at"]),
                        entry_name(parent["name"] or None) if parent is not None else "",
                        _hex(parent["id"]) if parent is not None else "",
                        awaiters,
                    ]
                )
        return _table(header, rows)
    header = ["thread", "task id", "name", "suspended at", "awaited by", "awaiter id", "awaited at"]
    for graph in result["await_graph"]:
        thread = str(graph.get("thread_name") or graph.get("thread_id") or "?")
        names = {task["id"]: task["name"] for task in graph["tasks"]}
        for task in sorted(graph["tasks"], key=by_name):
            waiters = task["awaited_by"] or [None]
            for waiter in waiters:
                rows.append(
                    [
                        thread,
                        _hex(task["id"]),
                        task["name"],
                        _ps_site(task["frames"]),
                        names.get(waiter["id"], "?") if waiter else "",
                        _hex(waiter["id"]) if waiter else "",
                        _ps_site(waiter["frames"]) if waiter else "",
                    ]
                )
    return _table(header, rows)
