"""Exceptions that carry their async origin: the public functions and their settings.

An exception's traceback shows the frames of the task it was raised in (and of
the tasks it travelled through by ``await``). The package adds the chain above
the raising task: the line that created it, the line that created its creator,
and so on to the root task, across executor hops; rendered like
:func:`async_trace.format_async_trace` (traceback style by default) and shown

- on 3.11+ as a PEP 678 note, added once per exception; on 3.10 the same lines
  follow the exception line wherever :mod:`traceback` formats it (the loop's
  exception handler, ``logging``, ``traceback.print_exc``, the top level);
- for a task destroyed while pending (no exception to annotate), as a
  ``task_trace:`` entry of the loop's default exception handler.

Where each part lives: which task raised it, :mod:`._origins` (recorded by
:mod:`._recorders`' strategy for this version); the note's text and adding it,
:mod:`._notes` (3.10: :mod:`._notes_py310`); when it is shown, the display
hooks of :mod:`._display`. Nothing of it runs on the path without exceptions.
"""

from __future__ import annotations

import sys
import traceback
from typing import TextIO

from . import _display, _recorders
from ._compat import HAS_NOTES
from ._config import check_library_frames, check_style, settings
from ._failsafe import warn_internal
from ._misuse import exception_error
from ._notes import family, note, trace_of
from ._notes_py310 import format_exception_lines
from ._origins import origin_of
from ._render import ascii_notes
from ._restyle import restyled_lines
from ._types import LibraryFrames, Style, TraceData
from ._writer import write

__all__ = ["exception_trace", "format_exception", "print_exception"]


def configure(
    *,
    style: Style | None = None,
    notes_on_exit: bool | None = None,
    record: bool | None = None,
    library_frames: LibraryFrames | None = None,
) -> None:
    """Set the notes' style and library frames, whether they are added eagerly and origins recorded (3.12+).

    ``record=False`` frees the ``sys.monitoring`` tool id at once (and
    ``True`` takes one again while the hooks are on); eager notes need it.

    Eager notes are in ``__notes__`` as soon as the exception leaves the task
    that raised it, so tools that read ``__notes__`` themselves (pytest's
    report, error trackers) show them. The cost: formatting the chain once
    per exception leaving a task; and ``pytest.raises(match=...)``, which
    matches notes too, sees it. Otherwise the note is added when
    :mod:`traceback`, the loop's exception handler or ``sys.excepthook``
    prints the exception.
    """
    if library_frames is not None:
        check_library_frames(library_frames)
        settings.library_frames = library_frames
    if style is not None:
        check_style(style)
        settings.note_style = style
    if notes_on_exit is not None:
        settings.eager_notes = bool(notes_on_exit)
    if record is not None:
        settings.record_origins = bool(record)
    _recorders.apply(_display.is_active())


def exception_trace(exc: BaseException) -> TraceData | None:
    """The async trace of the place where ``exc`` was raised, above the raising task.

    Returns:
        A :class:`TraceData` like :func:`collect_async_trace`'s without the
        frames the exception's own traceback shows: ``frames`` (innermost
        first) start at the line that created the task that raised ``exc``
        (for an executor function, at the coroutine line that handed it to the
        thread) and end at the root task; ``current_task`` is the raising task
        (``None`` once it is gone, and for an executor thread);
        ``in_executor`` is true for an exception raised in an executor thread.
        ``None`` when the origin is not known: not raised in a traced task, or
        on 3.10/3.11 (found when asked) when it cannot be told there: the
        raising task is no longer alive, or the exception came through an
        ``await`` of a coroutine that also runs as a task (docs/guarantees.md).

    Raises:
        TypeError: ``exc`` is not an exception (otherwise it never raises).
    """
    if (error := exception_error("exception_trace", exc)) is not None:
        raise error
    try:
        found = origin_of(exc)
        return trace_of(found) if found is not None else None
    except Exception as err:  # noqa: BLE001 - a debugging aid must not raise
        warn_internal(err, "finding an exception's origin")
        return None


def format_exception(
    exc: BaseException,
    *,
    style: Style | None = None,
    ascii_only: bool = False,
    library_frames: LibraryFrames | None = None,
) -> list[str]:
    """Format ``exc`` like :func:`traceback.format_exception`, with its async origin.

    Each exception of the chain (causes, contexts, and on 3.11+ the members of
    exception groups) whose origin is known is followed by its async trace
    (:func:`exception_trace`) where Python prints notes, right after its
    ``Type: message`` line. On 3.11+ the trace is added to ``__notes__``, once:
    an exception that already carries it keeps it there, in the style it was
    added with, and later prints show it too. The lines returned show it in
    the ``style`` and ``library_frames`` asked for, whichever it was added
    with (by printing, ``logging.exception()``, an earlier call); with
    neither given, as it was added.

    Args:
        exc: the exception.
        style: ``"traceback"`` (``File "...", line N`` lines, most recent call
            last) or ``"arrows"``; default: ``"traceback"``, or what
            ``python -m async_trace --style`` chose.
        ascii_only: the arrows-style trace's ``↑`` (and ``…``) as ``^`` (``...``)
            in the lines returned (a note already added keeps its text in
            ``__notes__``).
        library_frames: ``"collapse"``, ``"show"`` or ``"hide"``, as in
            :func:`format_async_trace`; default: what
            ``enable_tracing(library_frames=...)`` set (``"collapse"``). Like
            ``style``, it shapes a note when it is added.

    Returns:
        Lines, each ending in a newline, as :func:`traceback.format_exception`.

    Raises:
        TypeError: ``exc`` is not an exception.
        ValueError: an unknown ``style`` or ``library_frames``.
    """
    if (error := exception_error("format_exception", exc)) is not None:
        raise error
    chosen = settings.note_style if style is None else style
    check_style(chosen)
    if library_frames is not None:
        check_library_frames(library_frames)
    lines: list[str] | None = None
    try:
        if not HAS_NOTES:
            lines = format_exception_lines(exc, chosen, library_frames)
        else:
            for e in family(exc):
                note(e, chosen, library_frames)
            if style is not None or library_frames is not None:
                lines = restyled_lines(exc, chosen, library_frames)
    except Exception as err:  # noqa: BLE001 - fall back to the plain traceback
        warn_internal(err, "formatting an exception's origin")
    if lines is None:
        lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
    return ascii_notes(lines) if ascii_only else lines


def print_exception(
    exc: BaseException,
    *,
    file: TextIO | None = None,
    style: Style | None = None,
    ascii_only: bool = False,
    library_frames: LibraryFrames | None = None,
) -> None:
    """Print :func:`format_exception`'s lines to ``file`` (default: ``sys.stderr``).

    ASCII decorations when ``ascii_only`` or when the stream's encoding cannot
    encode ``↑``; never raises ``UnicodeEncodeError`` (what the stream cannot
    encode, such as the exception's own text, is backslash-escaped).

    Raises:
        TypeError: ``exc`` is not an exception.
        ValueError: an unknown ``style`` or ``library_frames``.
    """
    if (error := exception_error("print_exception", exc)) is not None:
        raise error
    check_style(settings.note_style if style is None else style)
    if library_frames is not None:
        check_library_frames(library_frames)
    out = sys.stderr if file is None else file
    write(
        lambda plain: format_exception(exc, style=style, ascii_only=plain, library_frames=library_frames),
        out,
        ascii_only=ascii_only,
        colour=False,  # the note is kept in __notes__: no escape codes there
    )
