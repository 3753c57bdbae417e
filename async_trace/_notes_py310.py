"""Python 3.10's notes: no PEP 678, so the note is printed where 3.11 prints notes.

On 3.10 the trace follows the exception line wherever :mod:`traceback`
formats it: the display hooks (:mod:`._display`) keep the note's text on the
``TracebackException`` and :func:`make_format_exception_only` prints it after
the exception line; :func:`format_exception_lines` formats a whole chain the
same way for ``async_trace.format_exception``. With eager notes the same text
is also in ``__notes__`` (what error trackers and the ``exceptiongroup``
backport read); a formatter that prints ``__notes__`` itself is detected by
the lines it wrote (:func:`printed`), so the note shows once.
"""

from __future__ import annotations

import functools
import traceback
from collections.abc import Callable, Iterator
from typing import Any, Final, cast

from ._config import settings
from ._notes import note, note_text
from ._restyle import ours, swap
from ._types import LibraryFrames, Style

__all__: list[str] = []


def note_text_py310(exc: BaseException, style: Style, library_frames: LibraryFrames | None = None) -> str | None:
    """3.10: the lines printed after the exception line; with eager notes, ``__notes__`` gets the same text."""
    if settings.eager_notes:
        text = note(exc, style, library_frames)  # also makes a provisional note final
        if text is not None:
            return text
    return note_text(exc, style, library_frames)


def printed(text: str, lines: list[str]) -> bool:
    """3.10: whether ``text`` is in ``lines`` already (a formatter that prints ``__notes__``: ``exceptiongroup``'s)."""
    return text in "".join(lines)


# traceback's own wording (its private _cause_message / _context_message), 3.10 to 3.13.
_CAUSE: Final = "\nThe above exception was the direct cause of the following exception:\n\n"
_CONTEXT: Final = "\nDuring handling of the above exception, another exception occurred:\n\n"


def _chain_order(exc: BaseException) -> list[tuple[str | None, BaseException]]:
    """``traceback``'s chain order: the earliest cause first, each with the message before it."""
    out: list[tuple[str | None, BaseException]] = []
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if e.__cause__ is not None:
            out.append((_CAUSE, e))
            e = e.__cause__
        elif e.__context__ is not None and not e.__suppress_context__:
            out.append((_CONTEXT, e))
            e = e.__context__
        else:
            out.append((None, e))
            e = None
    out.reverse()
    return out


def format_exception_lines(exc: BaseException, style: Style, library_frames: LibraryFrames | None) -> list[str]:
    # 3.10 has no notes: format each exception of the chain alone (with the
    # unwrapped format_exception_only, so the hook adds nothing) and put the
    # trace where 3.11 prints notes, right after the exception line.
    lines: list[str] = []
    for msg, e in _chain_order(exc):
        if msg is not None:
            lines.append(msg)
        text = note_text_py310(e, style, library_frames)
        te = traceback.TracebackException(type(e), e, e.__traceback__, compact=True)
        if text is not None:
            # A formatter that prints __notes__ (exceptiongroup's) shows the asked style too.
            swap(te, {id(n): text for n in ours(e)})
        if te.stack:
            lines.append("Traceback (most recent call last):\n")
            lines.extend(te.stack.format())
        only = list(_FORMAT_EXCEPTION_ONLY(te))
        lines.extend(only)
        if text is not None and not printed(text, only):
            lines.extend(line + "\n" for line in text.split("\n"))
    return lines


NOTE_ATTR: Final = "_async_trace_note"


def make_format_exception_only(original: Callable[..., Any]) -> Callable[..., Any]:
    # 3.10: the note, printed where 3.11 prints notes.
    @functools.wraps(original)
    def format_exception_only(self: Any) -> Iterator[str]:
        lines = list(original(self))
        yield from lines
        text = getattr(self, NOTE_ATTR, None)
        if text and not printed(text, lines):
            yield from (line + "\n" for line in text.split("\n"))

    format_exception_only.__async_trace_wrapper__ = True  # type: ignore[attr-defined]
    return format_exception_only


_TracebackException: Final = traceback.TracebackException
_FORMAT_EXCEPTION_ONLY: Final = cast(
    "Callable[[traceback.TracebackException], Iterator[str]]",
    vars(_TracebackException)["format_exception_only"],
)
