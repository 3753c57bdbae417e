"""Rendering task trees and dumps: ``format_task_tree``'s lines, both styles and the grouped view.

From :class:`~async_trace.TaskTree` records only (nothing here looks at a live
task). Trees are rendered with an explicit stack, never by recursion: a chain
of tasks deeper than the recursion limit renders like any other.
"""

from __future__ import annotations

from typing import Any, Final

from ._config import check_library_frames, check_style
from ._render import FINISHED, STYLE_TABLE, StyleSpec, entry_name, fold, frame_text, plain, plural, traceback_frame
from ._types import LibraryFrames, Style, TaskInfo, TaskTree, TraceFrame
from ._writer import Decorations, decorations

__all__: list[str] = []


def _title(info: TaskInfo, quote: bool) -> str:
    if info.origin == "elided":
        return plain(str(info.name))
    extra = ", unknown origin" if info.origin == "unknown" else ""
    if info.name is None:
        return f"{FINISHED}{' (unknown origin)' if extra else ''}"
    if info.age is not None:  # known while a stall watch runs (docs/stalls.md)
        extra += f", {_duration(info.age)} old" + (f", idle {_duration(info.idle)}" if info.idle is not None else "")
    return f"{repr(info.name) if quote else entry_name(info.name)} ({info.state}{extra})"


def _duration(seconds: float) -> str:
    """``3 s``, ``2 min``, ``5 h``: a task's age or idleness, whole units (a census is a second apart)."""
    if seconds < 120:
        return f"{int(seconds)} s"
    if seconds < 7200:
        return f"{int(seconds // 60)} min"
    return f"{int(seconds // 3600)} h"


#: Awaiter names shown on one line, at most; then ``and N more``.
_MAX_AWAITERS_SHOWN: Final = 5


def _awaiter_note(info: TaskInfo, parent: TaskInfo | None, tree: TaskTree, quote: bool) -> str | None:
    """``'w-2, not its creator'``: who awaits ``info``, unless none or only its parent in the tree (creator).

    ``not its creator`` when the task has a creator in the tree (a live or
    finished parent) and no awaiter is it; a root or a task of unknown
    origin has no creator to compare with.
    """
    awaited_by = info.awaited_by
    if not awaited_by or (parent is not None and parent.id is not None and awaited_by == (parent.id,)):
        return None
    names = []
    for ident in awaited_by[:_MAX_AWAITERS_SHOWN]:
        found = tree.by_id(ident)
        name = found.name if found is not None and found.name is not None else f"<task {ident:#x}>"
        names.append(repr(name) if quote else plain(name))
    more = len(awaited_by) - len(names)
    if more:
        text = f"{', '.join(names)} and {more} more"
    elif len(names) > 1:
        text = f"{', '.join(names[:-1])} and {names[-1]}"
    else:
        text = names[0]
    if parent is not None and parent.origin != "elided" and parent.id not in awaited_by:
        text += ", not its creator"
    return text


def _arrows_entry(
    info: TaskInfo,
    parent: TaskInfo | None,
    tree: TaskTree,
    lead: str,
    rest: str,
    deco: Decorations,
    library_frames: LibraryFrames,
    out: list[str],
) -> None:
    """One entry's own lines (not its children's): ``lead`` starts its line, ``rest`` every line below it."""
    title = _title(info, quote=False)
    boundaries = [f for i, f in enumerate(info.created_at) if f["line"] is not None and (i == 0 or f["is_executor"])]
    if not boundaries and info.created_at:
        boundaries = [f for f in info.created_at if f["line"] is not None][:1]
    created = "".join(f" {deco.left} {frame_text(f)}" for f in boundaries)
    note = _awaiter_note(info, parent, tree, quote=False)
    awaited = f"  [awaited by {note}]" if note is not None else ""
    out.append(f"{lead}{title}{created}{awaited}\n")
    detail = rest + (deco.rail if info.children else deco.blank)
    out.extend(f"{detail}{deco.up} {frame_text(f)}\n" for f, _ in fold(info.suspended_at, library_frames, _FIRST, deco))
    for thread in info.executor_threads:
        out.append(f"{detail}executor thread {thread.name!r}:\n")
        out.extend(
            f"{detail}  {deco.up} {frame_text(f)}\n" for f, _ in fold(thread.frames, library_frames, _FIRST, deco)
        )


#: In a task tree the first frame of each list stays: the creation line, or where the task is suspended.
_FIRST: Final = (0,)


def _traceback_frames(frames: tuple[TraceFrame, ...], pad: str, library_frames: LibraryFrames) -> list[str]:
    lines: list[str] = []
    for frame, _ in reversed(fold(frames, library_frames, _FIRST)):
        bare = frame.copy()
        bare["task"] = None  # its own separator would repeat the title
        text = traceback_frame(bare)
        lines.extend(pad + line + "\n" for line in text.splitlines())
    return lines


def _traceback_entry(
    info: TaskInfo, parent: TaskInfo | None, tree: TaskTree, level: int, library_frames: LibraryFrames, out: list[str]
) -> None:
    """One entry's own lines (not its children's), indented two spaces per ``level``."""
    pad = "  " * level
    if info.origin == "elided":
        out.append(f"{pad}{plain(str(info.name))}\n")
    else:
        out.append(f"{pad}Task {_title(info, quote=True)}\n")
    note = _awaiter_note(info, parent, tree, quote=True)
    if note is not None:
        out.append(f"{pad}  Awaited by: {note}\n")
    if info.created_at:
        out.append(f"{pad}  Created at (most recent call last):\n")
        out.extend(_traceback_frames(info.created_at, pad + "  ", library_frames))
    if info.suspended_at:
        out.append(f"{pad}  {'Running' if info.state == 'running' else 'Suspended'} at (most recent call last):\n")
        out.extend(_traceback_frames(info.suspended_at, pad + "  ", library_frames))
    for thread in info.executor_threads:
        out.append(f"{pad}  Executor thread {thread.name!r} (most recent call last):\n")
        out.extend(_traceback_frames(thread.frames, pad + "  ", library_frames))


def _tree_body(tree: TaskTree, style: Style, deco: Decorations, library_frames: LibraryFrames, out: list[str]) -> None:
    """Every entry, depth first, from an explicit stack (no recursion: any depth renders)."""
    # (info, parent, lead, rest, level)
    todo: list[tuple[TaskInfo, TaskInfo | None, str, str, int]] = [
        (root, None, "", "", 0) for root in reversed(tree.roots)
    ]
    while todo:
        info, parent, lead, rest, level = todo.pop()
        if style == "arrows":
            _arrows_entry(info, parent, tree, lead, rest, deco, library_frames, out)
        else:
            _traceback_entry(info, parent, tree, level, library_frames, out)
        children = info.children
        for i in range(len(children) - 1, -1, -1):
            last = i == len(children) - 1
            todo.append(
                (
                    children[i],
                    info,
                    rest + (deco.last if last else deco.tee),
                    rest + (deco.blank if last else deco.rail),
                    level + 1,
                )
            )


def _site_key(frame: TraceFrame | None) -> tuple[str, str | None, int | None, bool] | None:
    return None if frame is None else (frame["name"], frame["filename"], frame["line"], frame["is_executor"])


def _groups(tree: TaskTree) -> list[tuple[int, TaskInfo]]:
    """``(count, first member)`` per group of live tasks, largest first, then in tree order.

    A group: the same state, creation site (the first ``created_at`` frame
    with a line; else the origin) and suspended site (the first
    ``suspended_at`` frame).
    """
    counts: dict[tuple[Any, ...], list[Any]] = {}
    for _, info in tree.walk():
        if info.state == "finished":
            continue
        created = next((f for f in info.created_at if f["line"] is not None), None)
        suspended = info.suspended_at[0] if info.suspended_at else None
        key = (info.state, None if created is not None else info.origin, _site_key(created), _site_key(suspended))
        found = counts.get(key)
        if found is None:
            counts[key] = [1, info]
        else:
            found[0] += 1
    order = sorted(counts.values(), key=lambda item: -item[0])  # stable: ties stay in tree order
    return [(count, info) for count, info in order]


def _group_line(count: int, info: TaskInfo, spec: StyleSpec) -> str:
    created = next((f for f in info.created_at if f["line"] is not None), None)
    suspended = info.suspended_at[0] if info.suspended_at else None
    if created is not None:
        origin = f"created at {spec.site(created)}"
    else:
        origin = "a root task" if info.origin == "root" else "origin unknown"
    where = f" at {spec.site(suspended)}" if suspended is not None else ""
    return spec.group_line.format(tasks=plural(count, "task"), state=info.state, where=where, origin=origin)


def tree_lines(
    tree: TaskTree,
    style: Style = "arrows",
    *,
    group: bool = False,
    ascii_only: bool = False,
    library_frames: LibraryFrames = "collapse",
) -> list[str]:
    """:func:`async_trace.format_task_tree`'s lines for ``tree``."""
    check_style(style)
    check_library_frames(library_frames)
    spec = STYLE_TABLE[style]
    count = tree.live_count
    if group:
        groups = _groups(tree)
        head = f"{plural(count, 'live task')} in {plural(len(groups), 'group')}"
        return [f"Task groups ({head}, largest first):\n", *(_group_line(n, info, spec) for n, info in groups)]
    out = [spec.tree_header.format(tasks=plural(count, "live task"))]
    _tree_body(tree, style, decorations(ascii_only), library_frames, out)
    return out


def dump_header(loops: int) -> str:
    return f"Async task dump: {plural(loops, 'running event loop')}\n"


def dump_loop_line(loop: Any, thread: str) -> str:
    return f"\nLoop {type(loop).__name__} at {id(loop):#x} in thread {thread!r}:\n"
