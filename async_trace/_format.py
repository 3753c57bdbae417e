"""Formatting: trace dicts to lines of text (the README's arrow format)."""

from __future__ import annotations

import os
import sys
from collections import deque
from itertools import islice
from typing import TextIO

from ._types import TraceData, TraceFrame

__all__: list[str] = []


def format_frame(frame: TraceFrame) -> str:
    """``↑ name() at line N [file.py]``, indented two spaces per level."""
    pad = "  " * frame["indent"]
    line = frame["line"]
    filename = frame["filename"]
    if line is None or filename is None:
        text = f"{pad}↑ {frame['name']}"
    else:
        text = f"{pad}↑ {frame['name']}() at line {line} [{os.path.basename(filename)}]"
    if frame["is_executor"]:
        text += " [EXECUTOR]"
    return text + "\n"


def limited(frames: list[TraceFrame], limit: int | None) -> list[TraceFrame]:
    """``traceback``'s ``limit``: N > 0 keeps the innermost N, N < 0 the outermost |N|."""
    if limit is None:
        return frames
    if limit >= 0:
        return list(islice(frames, limit))
    return list(deque(frames, maxlen=-limit))


def format_trace_data(trace: TraceData, limit: int | None) -> list[str]:
    return [format_frame(frame) for frame in limited(trace["frames"], limit)]


def write(lines: list[str], file: TextIO | None) -> None:
    out = sys.stdout if file is None else file
    text = "".join(lines)
    try:
        out.write(text)
    except UnicodeEncodeError:
        # A stream that cannot encode the arrow (e.g. an ASCII console).
        out.write(text.replace("↑", "^"))
