"""One-line forms of a chain: the logging path and the integrations' chain line.

``worker ← sub_task ← main ← Task-1`` (:func:`path_line`, the logging
filter's ``%(async_trace)s``) and ``main (app.py:32) ← Task-1``
(:func:`chain_line`, OpenTelemetry's ``async_trace.chain`` and Sentry's
context), each bounded; every one-line wording is here.
"""

from __future__ import annotations

import os
from typing import Final

from ._frames import elided
from ._render import hop_mark, plain, shown_frames
from ._types import LibraryFrames, TraceData, TraceFrame
from ._writer import UNICODE, Decorations

__all__: list[str] = []


def hop_suffix(frame: TraceFrame) -> str:
    """`` [executor]``, `` [process 12345]`` or nothing: a hop's mark in the one-line forms."""
    return hop_mark(frame).lower()


def path_line(
    trace: TraceData,
    deco: Decorations = UNICODE,
    *,
    limit: int | None = None,
    library_frames: LibraryFrames = "show",
) -> str:
    """The logging one-line path, innermost first: ``worker ← sub_task ← main ← Task-1``."""
    shown, _ = shown_frames(trace["frames"], limit, library_frames, deco)
    parts = (plain(f["name"]) + hop_suffix(f) for f, _ in shown)
    return f" {deco.left} ".join(parts)


#: Between the parts of a one-line chain (what :func:`path_line` draws with Unicode decorations).
LEFT: Final = f" {UNICODE.left} "


def site_text(frame: TraceFrame) -> str:
    """``main (app.py:32)``, ``worker (app.py:9) [executor]``; a root or elision marker: its name."""
    name = plain(frame["name"])
    if frame["line"] is None or frame["filename"] is None:
        return name
    text = f"{name} ({plain(os.path.basename(frame['filename']))}:{frame['line']})"
    return text + hop_suffix(frame)


def chain_line(frames: list[TraceFrame], max_frames: int, max_length: int) -> str:
    """The chain in one line, innermost first, at most ``max_frames`` frames and ``max_length`` characters.

    Too many frames: the innermost three quarters and the outermost quarter,
    with ``... N frames elided ...`` between. Too long: the innermost frames
    that fit, the marker, and the outermost frame (the root); a line still too
    long is cut, ending in ``...``.
    """
    parts = [site_text(frame) for frame in frames]
    if len(parts) > max_frames:
        outer = max(1, max_frames // 4)
        inner = max(1, max_frames - outer - 1)
        parts = [*parts[:inner], elided(len(parts) - inner - outer, "frame"), *parts[len(parts) - outer :]]
    line = LEFT.join(parts)
    if len(line) <= max_length:
        return line
    last = parts[-1]
    budget = max_length - len(last) - 2 * len(LEFT) - len(elided(len(parts), "frame"))
    kept: list[str] = []
    used = 0
    for part in parts[:-1]:
        if used + len(part) + len(LEFT) > budget:
            break
        kept.append(part)
        used += len(part) + len(LEFT)
    if kept:
        line = LEFT.join([*kept, elided(len(parts) - len(kept) - 1, "frame"), last])
    return line if len(line) <= max_length else line[: max(0, max_length - 3)] + "..."
