"""Formatting: trace dicts to lines of text, as arrows (the README's) or as a traceback."""

from __future__ import annotations

import linecache
import os
import sys
from collections import deque
from itertools import islice
from typing import Literal, TextIO

from ._types import TraceData, TraceFrame

__all__: list[str] = []


def frame_text(frame: TraceFrame) -> str:
    """``name() at line N [file.py]`` (`` [EXECUTOR]`` for a hop), or the bare name of a line-less frame."""
    line = frame["line"]
    filename = frame["filename"]
    if line is None or filename is None:
        text = frame["name"]
    else:
        base = _basenames.get(filename)
        if base is None:
            base = _basenames[filename] = os.path.basename(filename)
        text = f"{frame['name']}() at line {line} [{base}]"
    return text + " [EXECUTOR]" if frame["is_executor"] else text


_basenames: dict[str, str] = {}


def format_frame(frame: TraceFrame) -> str:
    """``↑ name() at line N [file.py]``, indented two spaces per level."""
    return f"{'  ' * frame['indent']}↑ {frame_text(frame)}\n"


def limited(frames: list[TraceFrame], limit: int | None) -> list[TraceFrame]:
    """``traceback``'s ``limit``: N > 0 keeps the innermost N, N < 0 the outermost |N|."""
    if limit is None:
        return frames
    if limit >= 0:
        return list(islice(frames, limit))
    return list(deque(frames, maxlen=-limit))


Style = Literal["arrows", "traceback"]
STYLES: tuple[Style, ...] = ("arrows", "traceback")


def check_style(style: object) -> None:
    """``ValueError`` unless ``style`` is one of :data:`STYLES`."""
    if style not in STYLES:
        raise ValueError(f"style must be one of {', '.join(map(repr, STYLES))}, not {style!r}")


#: The traceback style's fixed wording (documented in docs/usage.md; keep it stable).
TRACEBACK_HEADER = "Async trace (most recent call last):\n"


def format_traceback_frame(frame: TraceFrame) -> str:
    """One frame the way ``traceback`` prints it, plus the separator of its boundary.

    ``File "...", line N, in name`` (which editors and terminals link), the
    stripped source line read through ``linecache``, then, for a task
    boundary, ``--- task 'NAME' created here ---`` and, for an executor hop,
    ``--- executor thread started here ---``.
    """
    line = frame["line"]
    filename = frame["filename"]
    task = frame["task"]
    if line is None or filename is None:
        if task is not None:
            return f"  Root task {_task_label(task, frame['name'])}\n"
        return f"  {frame['name']}\n"
    text = f'  File "{filename}", line {line}, in {frame["name"]}\n'
    source = linecache.getline(filename, line).strip()
    if source:
        text += f"    {source}\n"
    if task is not None:
        text += f"  --- task {_task_label(task, None)} created here ---\n"
    if frame["is_executor"]:
        text += "  --- executor thread started here ---\n"
    return text


def _task_label(task: object, fallback: str | None) -> str:
    get_name = getattr(task, "get_name", None)
    name = get_name() if callable(get_name) else fallback
    return repr(str(name))


def format_trace_data(trace: TraceData, limit: int | None, style: Style = "arrows") -> list[str]:
    check_style(style)
    frames = limited(trace["frames"], limit)
    if style == "arrows":
        return [format_frame(frame) for frame in frames]
    return [TRACEBACK_HEADER, *(format_traceback_frame(frame) for frame in reversed(frames))]


def write(lines: list[str], file: TextIO | None) -> None:
    out = sys.stdout if file is None else file
    text = "".join(lines)
    try:
        out.write(text)
    except UnicodeEncodeError:
        # A stream that cannot encode the arrow (e.g. an ASCII console).
        out.write(text.replace("↑", "^"))
