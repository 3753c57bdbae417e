"""Origins for the optional integrations (:mod:`async_trace.otel`, :mod:`async_trace.sentry`).

Stdlib only. The origin of the code running now is the chain *above* the
current task (or executor call): it starts at the line that created the task
(the coroutine line that made the executor call) and ends at the root, like
:func:`async_trace.exception_trace` for an exception. It is read from the
chain node in the current context, without walking the current stack.
"""

from __future__ import annotations

import asyncio
import asyncio.events
import os
from typing import Any, Final

from ._capture import adopt_inherited
from ._chain import CURRENT, Node, valid_for
from ._exceptions import chain_frames
from ._inapp import in_app
from ._render import hop_suffix, plain
from ._types import TraceFrame

__all__: list[str] = []

_get_running_loop: Final = asyncio.events._get_running_loop
_current_task: Final = asyncio.current_task
_get_current: Final = CURRENT.get

LEFT: Final = " ← "


def current_node() -> tuple[Node, Any] | None:
    """The chain node of the running task or executor call, and the running task (or ``None``)."""
    node = _get_current()
    if node is None:
        return None
    loop = _get_running_loop()
    task = _current_task(loop) if loop is not None else None
    coro = task.get_coro() if task is not None else None
    if task is not None and not valid_for(node, coro):
        # Built where no hook saw it (its creator's node); else created untraced.
        adopted = adopt_inherited(node, coro)
        if adopted is None:
            return None
        node = adopted
    return node, task


def origin_of_node(node: Node, task: Any) -> list[TraceFrame] | None:
    """The chain from ``node`` up, innermost first; ``None`` if it holds no line (a root task's)."""
    frames = chain_frames(node, task)[0]
    return frames if has_line(frames) else None


def has_line(frames: list[TraceFrame]) -> bool:
    return any(frame["line"] is not None for frame in frames)


def creation_site(frames: list[TraceFrame]) -> TraceFrame | None:
    """The innermost frame with a line: where the task was created, or the executor call made."""
    for frame in frames:
        if frame["line"] is not None:
            return frame
    return None


def frame_text(frame: TraceFrame) -> str:
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
    parts = [frame_text(frame) for frame in frames]
    if len(parts) > max_frames:
        outer = max(1, max_frames // 4)
        inner = max(1, max_frames - outer - 1)
        parts = [*parts[:inner], _elided(len(parts) - inner - outer), *parts[len(parts) - outer :]]
    line = LEFT.join(parts)
    if len(line) <= max_length:
        return line
    last = parts[-1]
    budget = max_length - len(last) - 2 * len(LEFT) - len(_elided(len(parts)))
    kept: list[str] = []
    used = 0
    for part in parts[:-1]:
        if used + len(part) + len(LEFT) > budget:
            break
        kept.append(part)
        used += len(part) + len(LEFT)
    if kept:
        line = LEFT.join([*kept, _elided(len(parts) - len(kept) - 1), last])
    return line if len(line) <= max_length else line[: max(0, max_length - 3)] + "..."


def _elided(count: int) -> str:
    return f"... {count} frame{'s' if count != 1 else ''} elided ..."


def is_library(filename: str) -> bool:
    """Whether ``filename`` belongs to the standard library or an installed package (``in_app`` false)."""
    return not in_app(filename)
