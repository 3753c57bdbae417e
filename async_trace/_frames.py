"""Frames as shown: which are the program's, which the loop's machinery, and at which line each one is.

Collection (:mod:`._collect`), the task tree and the exception notes read a
hop's flat ``(code, lasti, ...)`` data (see :mod:`._stack`) through here:
:func:`frame_kind` says whether a code object is the program's own (``USER``),
asyncio's or ours to drop (``SKIP``), or the edge of the event loop or of a
worker thread where a trace stops (``CUT``); :func:`line_at` decodes a line
number from an instruction offset; :func:`resolve` does both for a whole hop,
cached by the (shared, immutable) tuple. Nothing here runs when a task is
created.
"""

from __future__ import annotations

import asyncio
import asyncio.base_events
import asyncio.runners
import asyncio.tasks
import concurrent.futures
import os
import threading
from types import CodeType, FrameType
from typing import Any, Final

from ._chain import Frames
from ._hooks import on_disable
from ._inapp import resolved_path
from ._loops import UVLOOP_RUNNER_FILE, UVLOOP_RUNNER_FUNCTION
from ._speedups import CORE
from ._stack import HANDLE_RUN

__all__: list[str] = []


USER, SKIP, CUT = 0, 1, 2
#: A function that started a loop running in C (uvloop's ``run_until_complete``,
#: called by the program itself or by a server's runner): shown when a trace
#: starts in it, else the event loop's edge (see :func:`note_loop_caller`).
LOOP_CALLER: Final = 3


def _dir_of(path: str | None) -> str:
    return os.path.dirname(os.path.abspath(path or "")) + os.sep


_PACKAGE_DIR: Final = _dir_of(__file__)
_ASYNCIO_DIR: Final = _dir_of(asyncio.__file__)
_FUTURES_DIR: Final = _dir_of(concurrent.futures.__file__)
_THREADING_FILE: Final = os.path.abspath(threading.__file__ or "")

#: Frames where the event loop or a worker thread starts running user code.
#: Everything from one of these outwards is machinery (or the program that
#: called asyncio.run), never part of a trace.
_ENTRY_POINTS: Final = {
    ("events.py", "_run"),
    ("base_events.py", "_run_once"),
    ("base_events.py", "run_forever"),
    ("base_events.py", "run_until_complete"),
    ("runners.py", "run"),
    ("thread.py", "run"),
    ("thread.py", "_worker"),
    ("process.py", "_process_worker"),  # a process pool's worker (forked: the parent's frames are above it)
    ("threading.py", "run"),
    ("threading.py", "_bootstrap_inner"),
    ("threading.py", "_bootstrap"),
}


# Keyed by id(code) with the code kept in the value and compared by identity:
# hashing a code object walks its bytecode on 3.12+.
_kind_cache: dict[int, tuple[CodeType, int]] = {}
_line_cache: dict[tuple[int, int], tuple[CodeType, int | None]] = {}
_CACHE_MAX: Final = 4096

#: The functions that started a C loop with a root task, by ``id`` (see :func:`note_loop_caller`).
_loop_callers: dict[int, CodeType] = {}
_LOOP_CALLERS_MAX: Final = 256


def note_loop_caller(frame: FrameType | None) -> None:
    """Remember the function that made a root task on a loop running in C (uvloop).

    Called with the frame that called ``loop.create_task`` for a root task
    (``asyncio.run``, ``run_until_complete``), not for stdlib loops: their
    ``run_until_complete`` / ``asyncio.Runner`` frames are the loop's edge
    already. A uvloop loop runs callbacks from C, so a hop captured in a
    callback walks on to the code that started the loop (uvicorn's runner on
    3.10, click, ``runpy``); its first function outside asyncio and us is
    where the loop was started, and collection cuts such a hop there. Roots
    are rare: this runs once per ``asyncio.run`` or so.
    """
    for _ in range(64):
        if frame is None:
            return
        code = frame.f_code
        kind = frame_kind(code)
        if kind == CUT:
            return  # asyncio.Runner, a Python run_until_complete: the edge is there already
        if kind != SKIP:
            if kind == USER and len(_loop_callers) < _LOOP_CALLERS_MAX:
                _loop_callers[id(code)] = code
                _kind_cache.pop(id(code), None)
            return
        frame = frame.f_back


def frame_kind(code: CodeType) -> int:
    cached = _kind_cache.get(id(code))
    if cached is not None and cached[0] is code:
        return cached[1]
    entry = entry_codes.get(id(code))
    if entry is not None and entry[0] is code:
        return CUT  # not cached: rare (once per worker frame shown)
    if _loop_callers.get(id(code)) is code:
        return LOOP_CALLER  # not cached: rare, and the registry can grow after a lookup
    filename = resolved_path(code.co_filename) if code.co_filename[:1] != "<" else code.co_filename
    if filename.startswith((_ASYNCIO_DIR, _FUTURES_DIR)) or filename == _THREADING_FILE:
        key = (os.path.basename(filename), code.co_name)
        kind = CUT if key in _ENTRY_POINTS else SKIP
    elif (
        filename.startswith(_PACKAGE_DIR)
        or code.co_name == "<module>"
        or (code.co_name == UVLOOP_RUNNER_FUNCTION and filename.endswith(UVLOOP_RUNNER_FILE))
    ):
        kind = SKIP
    else:
        kind = USER
    if len(_kind_cache) >= _CACHE_MAX:
        _kind_cache.clear()
    _kind_cache[id(code)] = (code, kind)
    return kind


def line_at(code: CodeType, lasti: int) -> int | None:
    key = (id(code), lasti)
    cached = _line_cache.get(key)
    if cached is not None and cached[0] is code:
        return cached[1]
    line: int | None = None
    if lasti >= 0:
        for start, end, lineno in code.co_lines():
            if lineno is not None and start <= lasti:
                line = lineno  # the last line starting at or before lasti
            if start <= lasti < end:
                break
    if line is None:
        line = code.co_firstlineno
    if len(_line_cache) >= _CACHE_MAX:
        _line_cache.clear()
    _line_cache[key] = (code, line)
    return line


#: Where a hop's creation line is unknown (``_chain.UNKNOWN_LINE``): a task no hook saw being built.
UNKNOWN_LINE_TEXT: Final = "... built here by asyncio.Task(...), line unknown ..."


def elision_marker(count: int) -> str:
    """The name a hop's ``(None, count)`` pair shows: ``count`` frames elided, or (-1) the unknown creation line."""
    return elided(count, "frame") if count >= 0 else UNKNOWN_LINE_TEXT


def elided(count: int, what: str) -> str:
    """The wording of an elision marker: ``... 3 frames elided ...``, ``... 1 task hop elided ...``."""
    unit = what if count == 1 else what + "s"
    return f"... {count} {unit} elided ..."


#: One hop's shown frames: ``(name, line, filename)``, innermost first; elision
#: markers have ``line`` None.
Resolved = tuple[tuple[str, "int | None", "str | None"], ...]


# Frame tuples are immutable and shared between sibling nodes, so what they
# resolve to is cached (by identity, the tuple kept in the value).
_resolved_cache: dict[int, tuple[Frames, Resolved]] = {}

#: For callers that inline a cache hit (collection, once per hop): the caches are cleared, never replaced.
resolved_get: Final = _resolved_cache.get
resolved_cache: Final = _resolved_cache
kind_get: Final = _kind_cache.get
line_get: Final = _line_cache.get


#: ``asyncio.run`` and ``asyncio.Runner.run`` (3.11+), by id (module-level codes: never freed).
_RUNNER_CODES: Final = frozenset(
    id(code)
    for code in (
        getattr(getattr(asyncio.runners, "run", None), "__code__", None),
        getattr(getattr(getattr(asyncio.runners, "Runner", None), "run", None), "__code__", None),
    )
    if code is not None
)
#: asyncio's functions that make a task (``ensure_future``, ``create_task``), by id.
_TASK_MAKERS: Final = frozenset(
    id(code)
    for code in (
        getattr(getattr(asyncio.tasks, "ensure_future", None), "__code__", None),
        getattr(getattr(asyncio.tasks, "_ensure_future", None), "__code__", None),
        getattr(getattr(asyncio.tasks, "create_task", None), "__code__", None),
        getattr(getattr(asyncio.base_events.BaseEventLoop, "create_task", None), "__code__", None),
    )
    if code is not None
)


def resolve_uncached(frames: Frames) -> Resolved:
    out: list[tuple[str, int | None, str | None]] = []
    append = out.append
    kind_get = _kind_cache.get
    line_get = _line_cache.get
    taken = False
    callback: bool | None = None  # None: no frame skipped yet
    for i in range(0, len(frames), 2):
        code: Any = frames[i]
        lasti: Any = frames[i + 1]
        if code is None:
            append((elision_marker(lasti), None, None))
            continue
        # frame_kind() and line_at(), their cache hits inlined: this runs for every shown frame.
        hit = kind_get(id(code))
        kind = hit[1] if hit is not None and hit[0] is code else frame_kind(code)
        if kind:
            if kind == CUT and (taken or code is HANDLE_RUN or (id(code) in _RUNNER_CODES and callback)):
                # The event loop: above it is the program that started it. A
                # hop captured in a callback (a protocol method) stops at
                # Handle._run even when all its frames were asyncio's own, and
                # on a loop running callbacks from C (uvloop), where no
                # Handle._run is, at asyncio.run's frames.
                break
            if kind != LOOP_CALLER:
                # Frames of asyncio's own before asyncio.run's, none of them making a task nor the
                # loop's: a callback run by a C loop. (asyncio.run making the main task, in a
                # thread a hop led to, shows the line that called it.)
                callback = kind == SKIP and callback is not False and id(code) not in _TASK_MAKERS
                if kind == CUT:
                    callback = False
                continue
            if taken:
                break  # where a C loop was started: the program that started it follows
        hit2 = line_get((id(code), lasti))
        line = hit2[1] if hit2 is not None and hit2[0] is code else line_at(code, lasti)
        append((code.co_name, line, code.co_filename))
        taken = True
    return tuple(out)


#: The Python definition, the reference (tests compare the compiled one with it).
py_resolve_uncached: Final = resolve_uncached
if CORE is not None:
    CORE.setup_resolve(_kind_cache, _line_cache, frame_kind, line_at, elision_marker, _RUNNER_CODES, _TASK_MAKERS)
    resolve_uncached = CORE.resolve_uncached


def _clear_caches() -> None:
    """Empty the kind, line and resolved-frames caches (``disable_tracing()``)."""
    _kind_cache.clear()
    _line_cache.clear()
    _resolved_cache.clear()


def resolve(frames: Frames) -> Resolved:
    """The frames of one hop as shown: asyncio's own dropped, cut at the event loop."""
    cached = _resolved_cache.get(id(frames))
    if cached is not None and cached[0] is frames:
        return cached[1]
    result = resolve_uncached(frames)
    if len(_resolved_cache) >= _CACHE_MAX:
        _resolved_cache.clear()
    _resolved_cache[id(frames)] = (frames, result)
    return result


#: Codes where a worker thread of a library's own pool starts running user code (anyio's
#: ``WorkerThread.run``), by id: ``(the code, the name of its local holding the call it runs)``.
#: Entry points, cut like the stdlib pool's; the task tree finds the call's context there.
entry_codes: Final[dict[int, tuple[CodeType, str]]] = {}


def add_entry_code(code: CodeType, call_local: str) -> None:
    """Cut traces at frames running ``code``, a library's worker-thread entry whose local ``call_local`` is the call."""
    entry_codes[id(code)] = (code, call_local)
    _kind_cache.pop(id(code), None)


#: id(code) -> (code, whether it is a method of an asyncio protocol): see :func:`protocol_method`.
protocol_cache: dict[int, tuple[CodeType, bool]] = {}
#: For callers that inline a cache hit (task creation): the cache is cleared, never replaced.
protocol_get: Final = protocol_cache.get
#: Codes of asyncio's own functions between a program's line and ``loop.create_task``: where a
#: creating frame is looked for, these are stepped over.
ASYNCIO_CREATORS: Final[dict[int, CodeType]] = {
    id(code): code
    for code in (
        getattr(getattr(asyncio.tasks, name, None), "__code__", None)
        for name in ("create_task", "ensure_future", "_ensure_future", "gather")
    )
    if code is not None
}


def creating_frame(frame: FrameType | None) -> FrameType | None:
    """The frame of the line that asked for a task: ``frame``, or the first caller past asyncio's own helpers."""
    for _ in range(8):
        if frame is None:
            return None
        found = ASYNCIO_CREATORS.get(id(frame.f_code))
        if found is None or found is not frame.f_code:
            return frame
        frame = frame.f_back
    return frame


def creating_code(frames: Frames) -> Any:
    """The code of a hop's creating line: its first frame's, past asyncio's own helpers (``None`` if none)."""
    for i in range(0, min(len(frames), 16), 2):
        code: Any = frames[i]
        found = ASYNCIO_CREATORS.get(id(code))
        if found is None or found is not code:
            return code
    return None


def protocol_method(frame: FrameType) -> bool:
    """Whether ``frame`` runs a method of an asyncio protocol (its ``self`` a ``BaseProtocol``), cached by code.

    A task such a method creates belongs to the protocol's connection (see
    :func:`._lineage.connection_parent`). Decided once per code object, from
    the first frame seen running it.
    """
    code = frame.f_code
    hit = protocol_cache.get(id(code))
    if hit is not None and hit[0] is code:
        return hit[1]
    answer = False
    if code.co_argcount and code.co_varnames[0] == "self":
        try:
            answer = isinstance(frame.f_locals.get("self"), asyncio.BaseProtocol)
        except Exception:  # noqa: BLE001 - a self whose class refuses isinstance(): not a protocol
            answer = False
    if len(protocol_cache) >= _CACHE_MAX:
        protocol_cache.clear()
    protocol_cache[id(code)] = (code, answer)
    return answer


def protocol_frames(frames: Frames, asker: FrameType) -> Frames:
    """A protocol-made task's creating frames: ``frames`` cut after the protocol methods from ``asker`` out.

    The connection asked for the task, whatever ran the protocol's method (a
    reader callback, or an earlier request's ``send()`` when requests are
    pipelined): the frames beyond the protocol's own are not its request's.
    """
    code = asker.f_code
    start = 0
    while start < len(frames) and start < 16 and frames[start] is not code:
        start += 2
    end = start
    frame: FrameType | None = asker
    while frame is not None and end < len(frames) and frames[end] is frame.f_code and protocol_method(frame):
        end += 2
        frame = frame.f_back
    return frames[:end] if start < end < len(frames) else frames


def _clear_protocol_cache() -> None:
    protocol_cache.clear()


on_disable(_clear_caches)
on_disable(_clear_protocol_cache)
