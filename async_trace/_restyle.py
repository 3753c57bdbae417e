"""3.11+: an exception's traceback with its notes in the style asked now, whatever style they were added in.

A note is added once (:func:`._notes.note`) and kept in ``__notes__`` as it
was made: by the first print, ``logging.exception()``, an eager note, or an
earlier ``format_exception(style=...)``. :func:`restyled_lines` formats the
exception as :func:`traceback.format_exception` does and shows, in place of
each of our notes (an :class:`._notes.OurNote`), the note made again in the
style and library-frames setting asked for. ``__notes__`` is left as it is:
one note, no second.
"""

from __future__ import annotations

import contextlib
import traceback
from typing import Any, Final

from ._notes import OurNote, family, note_text
from ._types import LibraryFrames, Style

__all__: list[str] = []

#: Exceptions of one chain visited at most (causes, contexts, group members), as ``traceback`` bounds it.
_MAX_VISITED: Final = 100_000


def ours(exc: BaseException) -> list[OurNote]:
    """Our notes in ``exc.__notes__``."""
    notes: Any = None
    with contextlib.suppress(Exception):  # __notes__ as a property that raises: traceback's business
        notes = getattr(exc, "__notes__", None)
    return [n for n in notes if isinstance(n, OurNote)] if isinstance(notes, list) else []


def _wanted(exc: BaseException, style: Style, library_frames: LibraryFrames | None) -> dict[int, str]:
    """``id(note) -> text in the asked style`` for each of our notes in ``exc``'s chain."""
    out: dict[int, str] = {}
    for e in family(exc):
        added = ours(e)
        if not added:
            continue
        text = note_text(e, style, library_frames)
        if text is None:
            continue  # the origin is no longer known: the note as it was added
        for n in added:
            out[id(n)] = text
    return out


def swap(te: traceback.TracebackException, wanted: dict[int, str]) -> None:
    """Each ``TracebackException`` of the chain shows ``wanted``'s text for our notes (a new list; none is changed)."""
    todo = [te]
    seen: set[int] = set()
    while todo and len(seen) < _MAX_VISITED:
        t = todo.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        notes = getattr(t, "__notes__", None)
        if isinstance(notes, list) and any(id(n) in wanted for n in notes):
            t.__notes__ = [wanted.get(id(n), n) for n in notes]  # type: ignore[attr-defined,unused-ignore]
        for other in (t.__cause__, t.__context__, *(getattr(t, "exceptions", None) or ())):
            if isinstance(other, traceback.TracebackException):
                todo.append(other)


def restyled_lines(exc: BaseException, style: Style, library_frames: LibraryFrames | None) -> list[str]:
    """:func:`traceback.format_exception`'s lines for ``exc``, our notes shown in ``style``.

    Call after the notes were added (the lines show no note where none was added).
    """
    wanted = _wanted(exc, style, library_frames)
    te = traceback.TracebackException(type(exc), exc, exc.__traceback__, compact=True)
    if wanted:
        swap(te, wanted)
    return list(te.format())
