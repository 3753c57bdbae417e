"""Rendering traces: every line of text a trace, a note or a one-line path is printed as.

Traces (arrows and traceback styles), the exception note, the logging
one-line path and the integrations' one-line chain are all made here, from
plain data (trace dicts); task trees are rendered by :mod:`._render_tree`,
another process's snapshot by :mod:`._render_remote`, and the text is written
out by :mod:`._writer`. Nothing here looks at a live task except to ask its
name (:func:`task_label`).
"""

from __future__ import annotations

import linecache
import os
import re
from collections import deque
from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any, Final, cast

from ._chain import task_name
from ._config import check_library_frames, check_style
from ._inapp import classify, in_app
from ._types import FrameList, LibraryFrames, ProcessHopName, Style, ThreadName, TraceData, TraceFrame
from ._writer import ASCII, COLOUR, UNICODE, Decorations, decorations, dim, highlight

__all__: list[str] = []


# --- labels ----------------------------------------------------------------------


def task_label(task: Any) -> str:
    """A task's name as printed, quoted: ``'Task-3'`` (the one rule: :func:`async_trace._chain.task_name`)."""
    return repr(task_name(task))


def plain(text: str) -> str:
    """User text shown unquoted: as is if printable, else with its control characters escaped (one line)."""
    return text if text.isprintable() else repr(text)[1:-1]


#: What a finished task whose name is not known is called.
FINISHED: Final = "<finished task>"


def entry_name(name: str | None) -> str:
    """A tree entry's name, unquoted (``None``: a finished task whose name is not known)."""
    return FINISHED if name is None else plain(name)


# --- frames ----------------------------------------------------------------------

_basenames: dict[str, str] = {}


def short_path(filename: str, is_app: bool) -> str:
    """The program's own file as its basename, a library's by its package-relative path (``starlette/routing.py``)."""
    if not is_app:
        relative = classify(filename)[2]
        if relative is not None:
            return relative
    base = _basenames.get(filename)
    if base is None:
        base = _basenames[filename] = os.path.basename(filename)
    return base


def frame_text(frame: TraceFrame) -> str:
    """``name() at line N [file.py]`` (`` [EXECUTOR]`` for a hop), or the bare name of a line-less frame.

    A library frame (``in_app`` false) names its file by its package-relative path.
    """
    line = frame["line"]
    filename = frame["filename"]
    colour = COLOUR.get()
    if line is None or filename is None:
        name = frame["name"]
        # A task name is user text (a request's path, say): one line, no escape codes.
        text = f"thread {str(name)!r}" if isinstance(name, ThreadName) else plain(name)
        if colour and not frame.get("in_app", True):  # a collapsed run
            return dim(text)
    else:
        is_app = frame.get("in_app", True)
        path = plain(short_path(filename, is_app))
        name = plain(frame["name"])  # code made at run time may have any name and file name
        if colour and is_app:
            text = f"{highlight(name)}() at line {highlight(str(line))} [{highlight(path)}]"
        else:
            text = f"{name}() at line {line} [{path}]"
        if colour and not is_app:
            return dim(text + hop_mark(frame))
    return text + hop_mark(frame)


def hop_mark(frame: TraceFrame) -> str:
    if frame.get("is_process"):
        return f" {process_marker(frame)}"
    return " [EXECUTOR]" if frame["is_executor"] else ""


def process_marker(frame: TraceFrame) -> str:
    """``[PROCESS 12345]``: the id of the process the frame ran in, which made the process-pool call."""
    name = frame["name"]
    return f"[PROCESS {name.pid}]" if isinstance(name, ProcessHopName) and name.pid else "[PROCESS]"


# --- library frames ----------------------------------------------------------------


def _stays(frame: TraceFrame, index: int, boundaries: Container[int]) -> bool:
    """The program's own frames, line-less ones (root, markers) and those at a task or executor boundary."""
    return (
        frame.get("in_app", True)
        or frame["line"] is None
        or frame["task"] is not None
        or frame["is_executor"]
        or frame.get("is_process", False)
        or index in boundaries
    )


def library_marker(run: Sequence[TraceFrame], deco: Decorations = UNICODE) -> str:
    """``… 19 library frames (fastapi, starlette, uvicorn)``: the packages in alphabetical order."""
    packages = sorted({p for p in (classify(f["filename"])[1] for f in run if f["filename"]) if p is not None})
    named = f" ({', '.join(packages)})" if packages else ""
    return f"{deco.more} {plural(len(run), 'library frame')}{named}"


def fold(
    frames: Sequence[TraceFrame],
    library_frames: LibraryFrames,
    boundaries: Container[int] = (),
    deco: Decorations = UNICODE,
) -> list[tuple[TraceFrame, int]]:
    """``frames`` as shown: each with its index in ``frames``, ``-1`` for a collapsed run's marker.

    ``"collapse"``: each run of two or more consecutive library frames (never
    one that :func:`_stays`, so a run never spans a task boundary) becomes one
    line-less marker frame (:func:`library_marker`); a run of one frame stays.
    ``"hide"``: the runs are dropped. ``"show"``: every frame. Frames below a
    folded run are indented as many levels less as lines were removed; when
    nothing is folded the frames are returned as they are.
    """
    if library_frames == "show":
        return [(frame, i) for i, frame in enumerate(frames)]
    out: list[tuple[TraceFrame, int]] = []
    shift = 0
    i = 0
    count = len(frames)
    while i < count:
        frame = frames[i]
        if _stays(frame, i, boundaries):
            out.append((_shifted(frame, shift), i))
            i += 1
            continue
        end = i
        while end < count and not _stays(frames[end], end, boundaries):
            end += 1
        run = frames[i:end]
        if library_frames == "collapse" and len(run) == 1:
            out.append((_shifted(frame, shift), i))
        elif library_frames == "collapse":
            marker: TraceFrame = {
                "name": library_marker(run, deco),
                "line": None,
                "filename": None,
                "indent": frame["indent"] - shift,
                "task": None,
                "is_executor": False,
                "is_process": False,
                "in_app": False,
            }
            out.append((marker, -1))
            shift += len(run) - 1
        else:
            shift += len(run)
        i = end
    return out


def _shifted(frame: TraceFrame, shift: int) -> TraceFrame:
    if not shift:
        return frame
    moved = frame.copy()
    moved["indent"] = frame["indent"] - shift
    return moved


def arrows_frame(frame: TraceFrame, deco: Decorations = UNICODE) -> str:
    """``↑ name() at line N [file.py]``, indented two spaces per level."""
    return f"{'  ' * frame['indent']}{deco.up} {frame_text(frame)}\n"


def traceback_site(frame: TraceFrame) -> str:
    """``File "...", line N, in name`` (which editors and terminals link), or the bare name."""
    if frame["line"] is None or frame["filename"] is None:
        return frame["name"]
    if COLOUR.get() and frame.get("in_app", True):
        filename, line, name = highlight(frame["filename"]), highlight(str(frame["line"])), highlight(frame["name"])
        return f'File "{filename}", line {line}, in {name}'
    return f'File "{frame["filename"]}", line {frame["line"]}, in {frame["name"]}'


def traceback_frame(frame: TraceFrame, deco: Decorations = UNICODE) -> str:
    """One frame the way ``traceback`` prints it, plus the separator of its boundary.

    ``File "...", line N, in name``, the stripped source line read through
    ``linecache``, then, for a task boundary, ``--- task 'NAME' created here
    ---`` and, for an executor hop, ``--- executor thread started here ---``.
    """
    line = frame["line"]
    filename = frame["filename"]
    task = frame["task"]
    if line is None or filename is None:
        if task is not None:
            return f"  Root task {task_label(task)}\n"
        if isinstance(frame["name"], ThreadName):
            return f"  Root thread {str(frame['name'])!r}\n"
        if COLOUR.get() and not frame.get("in_app", True):  # a collapsed run
            return f"  {dim(frame['name'])}\n"
        return f"  {frame['name']}\n"
    dimmed = COLOUR.get() and not frame.get("in_app", True)
    text = f"  {dim(traceback_site(frame)) if dimmed else traceback_site(frame)}\n"
    source = linecache.getline(filename, line).strip()
    if source:
        text += f"    {dim(source) if dimmed else source}\n"
    if task is not None:
        text += f"  --- task {task_label(task)} created here ---\n"
    if frame["is_executor"]:
        text += "  --- executor thread started here ---\n"
    elif frame.get("is_process"):
        text += f"  --- process pool call made here {process_marker(frame)} ---\n"
    return text


def check_limit(limit: object) -> None:
    """``limit`` is ``None`` or an ``int``, as :mod:`traceback` takes it."""
    if limit is not None and not isinstance(limit, int):
        raise TypeError(f"limit must be an int or None, not {type(limit).__name__}")


#: What a hand-built frame dict may leave out, and what it then means.
_FRAME_DEFAULTS: Final[dict[str, Any]] = {
    "line": None,
    "filename": None,
    "task": None,
    "is_executor": False,
    "is_process": False,
}
#: Every key of a frame dict: a frame that has them all is rendered as it is.
_FRAME_KEYS: Final = frozenset(TraceFrame.__annotations__)


def frames_of(trace: object) -> list[TraceFrame]:
    """The frames of ``trace`` to render: a collected trace's as they are, a hand-built one's checked.

    A trace built by hand or read back from JSON (with the specification's six
    keys, or fewer) renders as long as each frame has a ``name``: a missing
    ``indent`` is the frame's position, ``in_app`` follows from ``filename``,
    the rest default to "nothing known". Anything else is a ``TypeError`` that
    says what was expected, not a ``KeyError`` from inside the renderer.
    """
    if not isinstance(trace, Mapping):
        raise TypeError(f"expected the trace dict collect_async_trace() returns, not {type(trace).__name__}")
    every = trace.get("frames")
    if type(every) is FrameList:
        return every  # collected: complete by construction
    if not isinstance(every, Sequence) or isinstance(every, (str, bytes)):
        raise TypeError(f"the trace's 'frames' must be a list of frame dicts, not {type(every).__name__}")
    out: list[TraceFrame] = []
    for i, frame in enumerate(every):
        if not isinstance(frame, Mapping) or "name" not in frame:
            what = type(frame).__name__ if not isinstance(frame, Mapping) else "a dict without 'name'"
            raise TypeError(f"frame {i} of the trace must be a frame dict with a 'name', not {what}")
        name = frame["name"]
        if type(frame) is dict and frame.keys() >= _FRAME_KEYS and isinstance(name, str):
            out.append(cast(TraceFrame, frame))
            continue
        full: dict[str, Any] = {**_FRAME_DEFAULTS, "indent": i, **frame}
        if not isinstance(name, str):
            full["name"] = str(name)
        if "in_app" not in frame:
            filename = full["filename"]
            full["in_app"] = in_app(filename if isinstance(filename, str) else None)
        out.append(cast(TraceFrame, full))
    return out


def limited(frames: list[TraceFrame], limit: int | None) -> list[TraceFrame]:
    """``traceback``'s ``limit``: N > 0 keeps the innermost N, N < 0 the outermost |N|."""
    if limit is None:
        return frames
    if limit >= 0:
        return list(islice(frames, limit))
    return list(deque(frames, maxlen=-limit))


# --- the style table -------------------------------------------------------------


@dataclass(frozen=True)
class StyleSpec:
    """How one style renders frames, boundaries and headers."""

    #: One frame (with its boundary separator, traceback style).
    frame: Callable[[TraceFrame, Decorations], str]
    #: Frames innermost first (arrows) or most recent call last (traceback).
    innermost_first: bool
    #: First line of a trace (``None``: none), and of an exception's note.
    trace_header: str | None
    note_header: str
    #: The task tree's first line, ``{tasks}`` being ``N live task(s)``.
    tree_header: str
    #: A site in the grouped view.
    site: Callable[[TraceFrame], str]
    #: A line of the grouped view, from ``tasks``, ``state``, ``where`` and ``origin``.
    group_line: str


#: The traceback style's fixed wording (documented in README.md; keep it stable).
TRACEBACK_HEADER: Final = "Async trace (most recent call last):\n"
#: Header of the arrows style when it stands under an exception.
ARROWS_HEADER: Final = "Async trace:\n"
#: Separator for a task boundary whose task is gone and whose name is not known.
GONE_SEPARATOR: Final = "  --- task created here ---\n"

STYLE_TABLE: Final[dict[Style, StyleSpec]] = {
    "arrows": StyleSpec(
        frame=arrows_frame,
        innermost_first=True,
        trace_header=None,
        note_header=ARROWS_HEADER,
        tree_header="Task tree ({tasks}):\n",
        site=frame_text,
        group_line="{tasks}  {state}{where}, {origin}\n",
    ),
    "traceback": StyleSpec(
        frame=traceback_frame,
        innermost_first=False,
        trace_header=TRACEBACK_HEADER,
        note_header=TRACEBACK_HEADER,
        tree_header="Task tree ({tasks}; most recent call last):\n",
        site=traceback_site,
        group_line="{tasks} ({state}){where}; {origin}\n",
    ),
}


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'s' if count != 1 else ''}"


# --- traces ----------------------------------------------------------------------


def trace_lines(
    trace: TraceData | Mapping[str, Any],
    limit: int | None,
    style: Style = "arrows",
    *,
    ascii_only: bool = False,
    library_frames: LibraryFrames = "collapse",
) -> list[str]:
    """:func:`async_trace.format_async_trace`'s lines."""
    check_style(style)
    check_library_frames(library_frames)
    check_limit(limit)
    spec = STYLE_TABLE[style]
    deco = decorations(ascii_only)
    every = frames_of(trace)
    shown, first = shown_frames(every, limit, library_frames, deco)
    out = [] if spec.trace_header is None else [spec.trace_header]
    if spec.innermost_first:
        out.extend(spec.frame(frame, deco) for frame, _ in shown)
        return out
    # Most recent call last, with a separator also at a boundary whose task is gone.
    gone = _gone_boundaries(every)
    for frame, i in reversed(shown):
        text = spec.frame(frame, deco)
        if i >= 0 and first + i in gone:
            text += GONE_SEPARATOR
        out.append(text)
    return out


def shown_frames(
    every: list[TraceFrame], limit: int | None, library_frames: LibraryFrames, deco: Decorations = UNICODE
) -> tuple[list[tuple[TraceFrame, int]], int]:
    """``limit``, then :func:`fold` (the boundaries from a :class:`FrameList`); and where in ``every`` it starts."""
    frames = limited(every, limit)
    first = 0 if limit is None or limit >= 0 else len(every) - len(frames)
    marks = getattr(every, "boundaries", None) or ()
    return fold(frames, library_frames, {b - first for b in marks}, deco), first


def _gone_boundaries(frames: list[TraceFrame]) -> frozenset[int]:
    """Indices of the boundaries (see :class:`FrameList`) whose task is gone: no ``task`` to name."""
    marks = getattr(frames, "boundaries", None)
    if not marks:
        return frozenset()
    return frozenset(i for i in marks if i < len(frames) and frames[i]["task"] is None)


# --- exception notes -------------------------------------------------------------


def exception_note(
    frames: list[TraceFrame],
    boundaries: list[int],
    root: int,
    from_executor: bool,
    name: str | None,
    style: Style,
    deco: Decorations = UNICODE,
    library_frames: LibraryFrames = "collapse",
) -> str | None:
    """An exception's origin chain as one note, or ``None`` if it holds no line (raised in a root task).

    ``boundaries`` and ``root`` index ``frames`` (innermost first);
    ``from_executor``: raised in an executor thread; ``name``: the raising
    task's name as recorded (for a task that is gone).
    """
    if all(frame["line"] is None for frame in frames):
        return None
    spec = STYLE_TABLE[style]
    lines = [spec.note_header]
    shown = fold(frames, library_frames, frozenset(boundaries), deco)
    if spec.innermost_first:
        lines.extend(spec.frame(frame, deco) for frame, _ in shown)
    else:
        innermost = boundaries[0] if boundaries and not from_executor else -1
        for frame, i in reversed(shown):
            if i >= 0 and i == root and frame["task"] is None:
                kind = "thread" if isinstance(frame["name"], ThreadName) else "task"
                lines.append(f"  Root {kind} {str(frame['name'])!r}\n")  # gone, but its name is known
                continue
            text = spec.frame(frame, deco)
            if i >= 0 and i in boundaries and frame["task"] is None:
                # The task is gone: its separator all the same, named if the record knows it.
                text += f"  --- task {name!r} created here ---\n" if i == innermost and name else GONE_SEPARATOR
            lines.append(text)
    return "".join(lines).rstrip("\n")


_ARROWS_NOTE_HEAD: Final = ARROWS_HEADER.rstrip("\n")
#: A collapsed run as the traceback style prints it, after the margin: ``… 19 library frames (...)``.
_TRACEBACK_RUN: Final = re.compile(rf"{UNICODE.more} \d+ library frames? ")


def ascii_notes(lines: list[str]) -> list[str]:
    """``traceback``'s lines with the decorations of our arrows-style notes in ASCII.

    Only inside an ``Async trace:`` block (a note's first line, after any
    exception group margin of spaces and ``|``) and only the leading ``↑`` of
    its frame lines (and the ``…`` of a collapsed run after it), and the
    ``…`` opening a line ``… N library frames`` of a traceback-style note:
    the exception's own text is left alone.
    """
    out: list[str] = []
    in_note = False
    for chunk in lines:
        fixed: list[str] = []
        for line in chunk.splitlines(keepends=True):
            body = line.lstrip(" |")
            if in_note and body.startswith(f"{UNICODE.up} "):
                at = len(line) - len(body)
                rest = line[at + len(UNICODE.up) :]
                if rest.startswith(f" {UNICODE.more} "):  # a collapsed run of library frames
                    rest = f" {ASCII.more}" + rest[1 + len(UNICODE.more) :]
                line = line[:at] + ASCII.up + rest
            elif _TRACEBACK_RUN.match(body):  # a traceback-style note's collapsed run (3.10: no notes yet)
                line = line[: len(line) - len(body)] + body.replace(UNICODE.more, ASCII.more, 1)
            else:
                in_note = body.rstrip("\n") == _ARROWS_NOTE_HEAD
            fixed.append(line)
        out.append("".join(fixed))
    return out


# --- one-line chains (OpenTelemetry attributes, Sentry) ----------------------------
