"""The public shell: the trace functions, ``enable_tracing()`` / ``disable_tracing()``, and the hook order.

Thin shells over collection (:mod:`._collect`) and rendering
(:mod:`._render`). :data:`HOOK_SETS` is the one place that says which hook
sets tracing switches, and in which order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final, TextIO

from . import _aiosqlite, _anyio, _asgiref, _capture, _direct_tasks, _display, _exceptions, _hooks, _inapp
from ._collect import trace_from
from ._config import check_library_frames, check_style, settings
from ._failsafe import warn_internal
from ._render import trace_lines
from ._stack import current_frame
from ._types import LibraryFrames, Style, TraceData
from ._writer import write

__all__ = [
    "collect_async_trace",
    "disable_tracing",
    "enable_tracing",
    "format_async_trace",
    "format_trace",
    "print_async_trace",
    "print_trace",
]


#: Every hook set tracing switches, in the order they are switched on (off in reverse): the
#: tracing wrappers first (the display hooks read the nodes they push), the libraries' thread hops
#: (anyio's worker threads, asgiref's sync_to_async, aiosqlite's connection thread), the registration
#: hook for tasks built directly, then the display hooks (and with them the origin recorder). The
#: command line adds its own set for child processes (:mod:`._children`).
HOOK_SETS: Final = (
    _capture.HOOKS,
    _anyio.HOOKS,
    _asgiref.HOOKS,
    _aiosqlite.HOOKS,
    _direct_tasks.HOOKS,
    _display.HOOKS,
)
for _hook_set in HOOK_SETS:
    _hooks.register(_hook_set)


def safe_collect(depth: int) -> TraceData:
    # depth counts frames between the caller of the public function and here.
    start = current_frame(depth + 1)
    try:
        return trace_from(start)
    except Exception as exc:  # noqa: BLE001 - a debugging aid must not raise
        warn_internal(exc, "collecting a trace")
        return {"frames": [], "current_task": None, "in_executor": False}


def collect_async_trace() -> TraceData:
    """Collect the async call trace of the code that calls it.

    Returns:
        A :class:`TraceData` dict: ``frames`` innermost first (the caller, its
        callers in the same task, then at each task boundary the line that
        created the task and that task's callers, across executor hops, up to
        a root frame named after the root task), ``current_task`` (``None``
        outside a task) and ``in_executor``. Fresh dicts; no frame objects or
        locals are referenced. Never raises: an internal error warns once
        (:class:`AsyncTraceWarning`) and returns an empty trace.
    """
    return safe_collect(1)


def format_async_trace(
    trace: TraceData | Mapping[str, Any],
    *,
    limit: int | None = None,
    style: Style = "arrows",
    ascii_only: bool = False,
    library_frames: LibraryFrames = "collapse",
) -> list[str]:
    """Format a trace from :func:`collect_async_trace` as lines of text.

    Args:
        trace: the dict to format.
        limit: as in :mod:`traceback`: ``N > 0`` keeps the innermost ``N``
            frames, ``N < 0`` the outermost ``|N|``; ``None`` keeps all.
        style: ``"arrows"`` (the default): ``↑ name() at line N [file.py]``,
            innermost first. ``"traceback"``: like a Python traceback, most
            recent call last, ``File "/path", line N, in name`` with the source
            line, and a separator line at each task boundary and executor hop.
        ascii_only: the arrows style's ``↑`` and the collapsed runs' ``…`` as
            ``^`` and ``...`` (the traceback style draws nothing else non-ASCII).
        library_frames: frames of the standard library and installed
            packages (``in_app`` false). ``"collapse"`` (the default): each run
            of two or more of them inside one task becomes one line,
            ``… N library frames (pkg, pkg)``. ``"hide"``: the runs are left
            out. ``"show"``: every frame. The frame at a task boundary or
            executor hop always stays. Applied after ``limit``.

    Returns:
        One string per frame, each ending in a newline (the traceback style
        starts with a header line, and a frame's string may hold several lines).

    Raises:
        ValueError: an unknown ``style`` or ``library_frames``.
    """
    return trace_lines(trace, limit, style, ascii_only=ascii_only, library_frames=library_frames)


def format_trace(
    *,
    limit: int | None = None,
    style: Style = "arrows",
    ascii_only: bool = False,
    library_frames: LibraryFrames = "collapse",
) -> list[str]:
    """Collect and format the async call trace of the caller.

    Same as ``format_async_trace(collect_async_trace(), limit=limit, style=style, ...)``.
    """
    return trace_lines(safe_collect(1), limit, style, ascii_only=ascii_only, library_frames=library_frames)


def print_async_trace(
    trace: TraceData | Mapping[str, Any],
    *,
    file: TextIO | None = None,
    limit: int | None = None,
    style: Style = "arrows",
    ascii_only: bool = False,
    library_frames: LibraryFrames = "collapse",
) -> None:
    """Print a trace from :func:`collect_async_trace` to ``file`` (default: ``sys.stdout``).

    ``limit``, ``style``, ``ascii_only`` and ``library_frames`` as in :func:`format_async_trace`;
    ASCII decorations too on a stream whose encoding cannot encode ``↑``.
    Never raises ``UnicodeEncodeError`` (what the stream cannot encode is
    backslash-escaped).
    """
    check_style(style)
    check_library_frames(library_frames)
    write(
        lambda plain: trace_lines(trace, limit, style, ascii_only=plain, library_frames=library_frames),
        file,
        ascii_only=ascii_only,
    )


def print_trace(
    *,
    file: TextIO | None = None,
    limit: int | None = None,
    style: Style = "arrows",
    ascii_only: bool = False,
    library_frames: LibraryFrames = "collapse",
) -> None:
    """Print the async call trace of the caller to ``file`` (default: ``sys.stdout``).

    Like ``traceback.print_stack()``, for asyncio: from the calling line back
    through every task creation point and executor hop to the root task.
    ``limit``, ``style``, ``ascii_only`` and ``library_frames`` as in :func:`print_async_trace`.
    """
    check_style(style)
    check_library_frames(library_frames)
    trace = safe_collect(1)
    write(
        lambda plain: trace_lines(trace, limit, style, ascii_only=plain, library_frames=library_frames),
        file,
        ascii_only=ascii_only,
    )


def enable_tracing(
    *,
    max_frames: int | None = None,
    max_depth: int | None = None,
    eager_notes: bool | None = None,
    record_origins: bool | None = None,
    in_app_include: Iterable[str] | None = None,
    in_app_exclude: Iterable[str] | None = None,
    library_frames: LibraryFrames | None = None,
) -> None:
    """Trace task creations and executor hops from now on (on after import).

    Idempotent and thread-safe.

    Args:
        max_frames: frames kept per hop (the creating task's stack at the
            creation line); deeper stacks keep the innermost three quarters
            and the outermost quarter, with an elision marker between.
            Default 64.
        max_depth: hops kept per chain; longer chains keep the innermost
            half and the outermost quarter, with an elision marker between.
            Default 256.
        eager_notes: add an exception's origin note to its ``__notes__``
            as the exception leaves the task (or executor function) that
            raised it, so that tools reading ``__notes__`` before anything
            prints it (Sentry and other error trackers, pytest's report) see
            it. Off by default: the note is added when the exception is
            printed. 3.12+: from the unwind hook, at no cost per task.
            3.10/3.11 (no unwind hook): from a done callback given to each
            task and executor future as it is created, a cost on every task
            created (see docs/guarantees.md); on 3.10 the note goes into an
            ``__notes__`` list. ``None`` keeps the current setting.
        record_origins: 3.12+: record which task an exception was raised
            in as it leaves that task (a ``sys.monitoring`` ``PY_UNWIND``
            callback, run for every frame any exception leaves: raising and
            catching costs about 1.3-1.9x; see docs/performance.md). Default
            ``True``. ``False`` frees the monitoring tool id and makes the
            exception path cost what it does untraced; origins are then found
            when the exception is printed (an exception whose raising task
            is gone by then, or caught deeper than the frame that awaited it,
            gets no note). Eager notes need it.
            ``None`` keeps the current setting.
        in_app_include: top-level package names whose frames are the
            program's own (``in_app`` true) although installed (your own
            package in ``site-packages``). ``None`` keeps the current list.
        in_app_exclude: top-level package names whose frames are library
            frames although in the program's tree (a vendored library): a
            file under a directory of that name, or a module file of that
            name. ``None`` keeps the current list.
        library_frames: how the exception notes the display hooks add show
            library frames (see :func:`format_async_trace`); default
            ``"collapse"``. ``None`` keeps the current setting.

    Raises:
        ValueError: a bound below its minimum (``max_frames >= 4``,
            ``max_depth >= 8``), eager notes asked for without recording,
            a name that is not an identifier or in both lists, an unknown
            ``library_frames``.
    """
    eager = settings.eager_notes if eager_notes is None else bool(eager_notes)
    record = settings.record_origins if record_origins is None else bool(record_origins)
    if eager and not record:
        raise ValueError("eager_notes=True needs record_origins=True: notes are added as origins are recorded")
    if library_frames is not None:
        check_library_frames(library_frames)
    if in_app_include is not None or in_app_exclude is not None:
        _inapp.configure(in_app_include, in_app_exclude)
    if max_frames is not None:
        if type(max_frames) is not int or max_frames < 4:
            raise ValueError(f"max_frames must be an int >= 4, got {max_frames!r}")
        settings.max_frames = max_frames
    if max_depth is not None:
        if type(max_depth) is not int or max_depth < 8:
            raise ValueError(f"max_depth must be an int >= 8, got {max_depth!r}")
        settings.max_depth = max_depth
    if eager_notes is not None or record_origins is not None:
        _exceptions.configure(notes_on_exit=eager, record=record)
    if library_frames is not None:
        _exceptions.configure(library_frames=library_frames)
    _hooks.enable()  # every hook set: the tracing wrappers, then the exception hooks


def disable_tracing() -> None:
    """Stop tracing and restore every patched asyncio attribute exactly.

    Tasks created while tracing is off show up as roots of their own traces.
    Idempotent and thread-safe.
    """
    _hooks.disable()
