"""Exception notes: the chain above the raising task as a PEP 678 note, added once per exception.

:func:`note` adds it (on 3.11+ when the exception is printed, and with eager
notes as it leaves its task; on 3.10 only eagerly, into a ``__notes__`` list);
the text leaves out the frames the exception's own traceback shows
(:func:`not_shown`), so a note never repeats the traceback. The origin it
starts from is :mod:`._origins`'.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Final, cast

from ._chain import creator_ref
from ._collect import chain_trace
from ._compat import add_note
from ._config import settings
from ._origins import Found, Provisional, Shown, is_hop, origin_of, record_of, store
from ._render import exception_note
from ._types import LibraryFrames, Style, TraceData, TraceFrame

__all__: list[str] = []

_tuple_new: Final = tuple.__new__


class OurNote(str):
    """A note this package added: ``__notes__`` tells it from the program's own by its type.

    Pickled and copied as a plain ``str``, so a process that never imported the
    package reads it back.
    """

    __slots__ = ()

    def __reduce__(self) -> tuple[type[str], tuple[str]]:
        return (str, (str(self),))


def trace_of(found: Found) -> TraceData:
    node, task, _ = found
    return {
        "frames": chain_trace(node, task)[0],
        "current_task": task,
        "in_executor": is_hop(node),
    }


#: Traceback entries read to find what a note need not repeat, at most.
_MAX_TB_ENTRIES: Final = 10_000


def _in_traceback(exc: BaseException) -> set[tuple[str, int | None, str]]:
    """``(filename, line, function)`` of every entry of ``exc``'s traceback."""
    out: set[tuple[str, int | None, str]] = set()
    tb = exc.__traceback__
    for _ in range(_MAX_TB_ENTRIES):
        if tb is None:
            break
        code = tb.tb_frame.f_code
        out.add((code.co_filename, tb.tb_lineno, code.co_name))
        tb = tb.tb_next
    return out


#: Notes leave out every frame the exception's traceback shows, wherever it is in the
#: chain, task boundaries too (the pytest plugin, while pytest formats a failure).
_shown_anywhere = False


@contextlib.contextmanager
def leaving_out_shown_frames() -> Iterator[None]:
    """While in it, notes leave out every chain frame the traceback shows (see ``_not_shown``)."""
    global _shown_anywhere
    before = _shown_anywhere
    _shown_anywhere = True
    try:
        yield
    finally:
        _shown_anywhere = before


def _without(
    frames: list[TraceFrame], boundaries: list[int], root: int, shown: set[tuple[str | None, int | None, str]]
) -> tuple[list[TraceFrame], list[int], int]:
    """The chain without every frame in ``shown``; each run left out is one marker line saying so."""
    kept: list[TraceFrame] = []
    kept_boundaries: list[int] = []
    kept_root = -1
    dropped = 0
    for i, frame in enumerate(frames):
        if frame["line"] is not None and (frame["filename"], frame["line"], frame["name"]) in shown:
            dropped += 1
            continue
        if dropped:
            kept.append(_shown_marker(dropped, len(kept)))
            dropped = 0
        if i in boundaries:
            kept_boundaries.append(len(kept))
        if i == root:
            kept_root = len(kept)
        kept.append(cast("TraceFrame", {**frame, "indent": len(kept)}))
    if dropped:
        kept.append(_shown_marker(dropped, len(kept)))
    return kept, kept_boundaries, kept_root


def _shown_marker(count: int, index: int) -> TraceFrame:
    unit = "frame" if count == 1 else "frames"
    return {
        "name": f"... {count} {unit} shown in the traceback above ...",
        "line": None,
        "filename": None,
        "indent": index,
        "task": None,
        "is_executor": False,
        "is_process": False,
        "in_app": True,
    }


def _not_shown(
    frames: list[TraceFrame], boundaries: list[int], root: int, exc: BaseException | None, early: bool = False
) -> tuple[list[TraceFrame], list[int], int]:
    """The chain without its innermost frames that ``exc``'s traceback already shows.

    An exception raised in an executor function and re-raised in the awaiting
    coroutine carries that coroutine's frames (the hop's) in its traceback,
    up to the task's own coroutine: the note starts after them. It stops at
    the first frame the traceback lacks, and at a task boundary (the line
    that created a task is news even when the traceback passes through it).
    ``early``: the exception has not been re-raised in the awaiting coroutine
    yet; the frame that awaits the call, which the traceback will show from
    then on, counts as shown.
    """
    if exc is None or (exc.__traceback__ is None and not early) or not frames:
        return frames, boundaries, root
    shown: set[tuple[str | None, int | None, str]] = set(_in_traceback(exc))
    if early:
        first = frames[0]
        shown.add((first["filename"], first["line"], first["name"]))
    if _shown_anywhere:
        return _without(frames, boundaries, root, shown)
    stops = set(boundaries)
    stops.add(root)
    skip = 0
    while skip < len(frames) and skip not in stops:
        frame = frames[skip]
        if (frame["filename"], frame["line"], frame["name"]) not in shown:
            break
        skip += 1
    if not skip:
        return frames, boundaries, root
    kept: list[TraceFrame] = [
        cast("TraceFrame", {**frame, "indent": frame["indent"] - skip}) for frame in frames[skip:]
    ]
    return kept, [b - skip for b in boundaries], root - skip


def note_for(
    found: Found,
    style: Style,
    exc: BaseException | None = None,
    library_frames: LibraryFrames | None = None,
    early: bool = False,
) -> str | None:
    """The chain as one note, or ``None`` if it holds no line (raised in a root task).

    With ``exc``, the frames its traceback already shows are left out (see :func:`_not_shown`).
    """
    node, task, name = found
    frames, boundaries, root = _not_shown(*chain_trace(node, task), exc, early)
    shown = settings.library_frames if library_frames is None else library_frames
    return exception_note(frames, boundaries, root, is_hop(node), name, style, library_frames=shown)


def note_text(exc: BaseException, style: Style, library_frames: LibraryFrames | None = None) -> str | None:
    found = origin_of(exc)
    return note_for(found, style, exc, library_frames) if found is not None else None


def note(
    exc: BaseException, style: Style, library_frames: LibraryFrames | None = None, early: bool = False
) -> str | None:
    """Add the note to ``exc`` unless it was added before (3.11+; on 3.10 only eagerly, to ``__notes__``).

    ``early``: an eager note for an executor call's exception, before it is
    re-raised in the awaiting coroutine (see :class:`Provisional`); a later
    call replaces that note with the final one. Returns the note added now, if any.
    """
    before = record_of(exc)
    if type(before) is Shown:
        return None
    found = origin_of(exc)
    if found is None:
        return None
    node, task, name = found
    ref = creator_ref(task) if task is not None else None
    text = note_for(found, style, exc, library_frames, early)
    if text is not None:
        text = OurNote(text)
    if early:
        store(exc, _tuple_new(Provisional, (node, ref, name, text)))
    else:
        store(exc, _tuple_new(Shown, (node, ref, name)))
    if type(before) is Provisional:
        _replace_note(exc, before.text, text)
    elif text is not None:
        _add_note(exc, text)
    return text


def _add_note(exc: BaseException, text: str) -> None:
    # An exception type refusing attributes refuses __notes__ too: no note then.
    with contextlib.suppress(Exception):
        add_note(exc, text)


def _replace_note(exc: BaseException, old: str | None, new: str | None) -> None:
    """Put ``new`` where the provisional note ``old`` is in ``__notes__`` (or add it, if ``old`` is not there)."""
    with contextlib.suppress(Exception):  # an exception whose __notes__ is not what PEP 678 says
        notes = getattr(exc, "__notes__", None)
        if isinstance(notes, list):
            for i, note in enumerate(notes):
                if note is old and old is not None:
                    if new is None:
                        del notes[i]
                    else:
                        notes[i] = new
                    return
    if new is not None:
        _add_note(exc, new)


def family(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, its causes and contexts, and the members of exception groups, once each."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        for other in (e.__cause__, e.__context__, *getattr(e, "exceptions", ())):
            if isinstance(other, BaseException):
                todo.append(other)
