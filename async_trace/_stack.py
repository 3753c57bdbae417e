"""Stack walking: a frame and its callers as flat ``(code, lasti, ...)`` data, bounded, never frames.

The one walk every capture and collection uses. A hop's stack is kept as code
objects and instruction offsets only (see :mod:`._chain`'s ``Frames``): no
frame object, no locals, no line numbers (decoding those costs about 40% of a
walk on 3.11+; :mod:`._frames` resolves them when a trace is asked for).
Consecutive captures from one place share one tuple (:data:`_last`).
"""

from __future__ import annotations

import asyncio.events
import sys
from collections import deque
from collections.abc import Callable
from types import CodeType, FrameType
from typing import Final

from ._chain import _EMPTY, Frames
from ._config import settings
from ._hooks import on_disable
from ._speedups import CORE

__all__: list[str] = []

#: The frame a stdlib loop runs every callback and task step from.
HANDLE_RUN: Final = asyncio.events.Handle._run.__code__

#: The frames tuple of the latest capture. Consecutive spawns from the same
#: place (a loop of create_task, gather of many coroutines) share it: the
#: capture compares the stack against it instead of building a new tuple.
#: Threads race on it harmlessly: it is only ever replaced, never mutated.
_last: Frames = _EMPTY


def walk(frame: FrameType | None, stop: FrameType | None, *, remember: bool = True) -> Frames:
    """Flatten ``frame`` and its callers up to and including ``stop``.

    Without ``stop`` the walk stops at the event loop's ``Handle._run`` (where
    collection would cut it), else (uvloop runs callbacks from C; a thread)
    runs to the outermost frame; collection cuts it there. At most ``settings.max_frames``
    frames are kept: the innermost ones and a quarter from the outer end, with
    a ``(None, n)`` marker for the ``n`` in between. ``remember=False`` (for
    collection) leaves the capture cache alone.
    """
    global _last
    if stop is None:
        # A callback's stack (a protocol method, call_soon): collection cuts it
        # at the loop's Handle._run, so walking on to runpy would only cost.
        f = frame
        while f is not None and f.f_code is not HANDLE_RUN:
            f = f.f_back
        stop = f
    last = _last
    n = len(last)
    # Fastest path, for the usual one or two frames (asyncio.create_task and
    # the coroutine calling it): no loop.
    if frame is not None and n >= 2 and frame.f_code is last[0] and frame.f_lasti == last[1]:
        if frame is stop:
            if n == 2:
                return last
        elif n == 4:
            up = frame.f_back
            if up is stop and up is not None and up.f_code is last[2] and up.f_lasti == last[3]:
                return last
    i = 0
    f = frame
    # Fast path: the stack matches the previous capture.
    while f is not None and i < n and f.f_code is last[i] and f.f_lasti == last[i + 1]:
        i += 2
        f = None if f is stop else f.f_back
    if f is None:
        # The whole stack matched the previous capture, or a prefix of it.
        if i == n:
            return last
        prefix = last[:i]
        if remember:
            _last = prefix
        return prefix
    # Slow path: copy the matched prefix, walk the rest.
    out: list[CodeType | int | None] = list(last[:i])
    append = out.append
    remaining = settings.max_frames - i // 2
    while f is not None:
        append(f.f_code)
        append(f.f_lasti)
        if f is stop:
            break
        f = f.f_back
        remaining -= 1
        if remaining <= 0 and f is not None:
            return _walk_elided(out, f, stop)
    result = tuple(out)
    if remember:
        _last = result
    return result


def _walk_elided(head: list[CodeType | int | None], frame: FrameType | None, stop: FrameType | None) -> Frames:
    # Slow path for stacks deeper than max_frames: keep walking to the
    # boundary, remembering only the outermost frames.
    keep_outer = max(1, settings.max_frames // 4)
    cut = 2 * (settings.max_frames - keep_outer)
    tail: deque[tuple[CodeType | int | None, CodeType | int | None]] = deque(
        zip(head[cut::2], head[cut + 1 :: 2], strict=True), maxlen=keep_outer
    )
    del head[cut:]
    pushed = len(tail)
    while frame is not None:
        tail.append((frame.f_code, frame.f_lasti))
        pushed += 1
        if frame is stop:
            break
        frame = frame.f_back
    head.append(None)
    head.append(pushed - len(tail))
    for code, lasti in tail:
        head.append(code)
        head.append(lasti)
    return tuple(head)


#: The Python definition, the reference (tests compare the compiled one with it).
py_walk: Final = walk
#: The compiled one (:mod:`._speedups`), or ``None`` on the Python path.
c_walk: Final[Callable[..., Frames] | None] = None if CORE is None else CORE.walk
if CORE is not None:
    CORE.setup_walk(HANDLE_RUN, settings)
    walk = CORE.walk


def current_frame(depth: int) -> FrameType | None:
    """``sys._getframe(depth + 1)``, or ``None`` past the outermost frame."""
    try:
        return sys._getframe(depth + 1)
    except ValueError:
        return None


def _forget() -> None:
    """Drop the latest capture (``disable_tracing()``): it holds the program's code objects."""
    global _last
    _last = _EMPTY
    if CORE is not None:
        CORE.forget()


on_disable(_forget)
