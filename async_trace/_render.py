"""The one renderer: every line of text async-trace prints, and the one writer.

Traces (arrows and traceback styles), task trees (both styles and the grouped
view), the dump's headers, the exception note, the logging one-line path and
``python -m async_trace ps|pstree``'s output are all made here, from plain
data (trace dicts, :class:`~async_trace.TaskTree` records, the remote
snapshot's dicts). Collection lives elsewhere; nothing here looks at a live
task except to ask its name (:func:`task_label`).

Decorations. The characters we draw ourselves come from a
:class:`Decorations` table, :data:`UNICODE` or :data:`ASCII`::

    ↑    ->  ^      (a frame, arrows style)
    ←    ->  <-     (a creating / awaiting line, and the logging path)
    …    ->  ...    (a run of collapsed library frames)
    ├──  ->  |--    (a child that has a sibling below it)
    └──  ->  `--    (the last child)
    │    ->  |      (the rail of a parent with children below)

:func:`write` picks :data:`ASCII` when asked (``ascii_only=True``) or when the
stream's encoding cannot encode the Unicode ones; user text the stream cannot
encode (task names, file names, source lines) is written with
``backslashreplace``: printing never raises ``UnicodeEncodeError``.

Trees are rendered with an explicit stack, never by recursion: a chain of
tasks deeper than the recursion limit renders like any other.
"""

from __future__ import annotations

import codecs
import contextvars
import linecache
import os
import re
import sys
from collections import deque
from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING, Any, Final, Literal, TextIO, cast

from ._chain import task_name
from ._inapp import classify, in_app
from ._types import FrameList, ProcessHopName, ThreadName, TraceData, TraceFrame

if TYPE_CHECKING:
    from ._tree import TaskInfo, TaskTree

__all__: list[str] = []

Style = Literal["arrows", "traceback"]
STYLES: tuple[Style, ...] = ("arrows", "traceback")


def check_style(style: object) -> None:
    """``ValueError`` unless ``style`` is one of :data:`STYLES`."""
    if style not in STYLES:
        raise ValueError(f"style must be one of {', '.join(map(repr, STYLES))}, not {style!r}")


LibraryFrames = Literal["collapse", "show", "hide"]
LIBRARY_FRAMES: tuple[LibraryFrames, ...] = ("collapse", "show", "hide")


def check_library_frames(library_frames: object) -> None:
    """``ValueError`` unless ``library_frames`` is one of :data:`LIBRARY_FRAMES`."""
    if library_frames not in LIBRARY_FRAMES:
        raise ValueError(
            f"library_frames must be one of {', '.join(map(repr, LIBRARY_FRAMES))}, not {library_frames!r}"
        )


# --- decorations ---------------------------------------------------------------


@dataclass(frozen=True)
class Decorations:
    """The characters drawn around user text."""

    #: Before a frame in the arrows style.
    up: str
    #: Before a creating line (trees), an awaiting line (pstree), between path parts (logging).
    left: str
    #: Branch to a child with siblings below it, to the last child, and the rail beside a parent's children.
    tee: str
    last: str
    rail: str
    #: Before the count of a run of collapsed library frames.
    more: str
    blank: str = "    "


UNICODE: Final = Decorations(up="↑", left="←", tee="├── ", last="└── ", rail="│   ", more="…")
ASCII: Final = Decorations(up="^", left="<-", tee="|-- ", last="`-- ", rail="|   ", more="...")

#: Every non-ASCII character we print ourselves, to its ASCII stand-in (the same as :data:`ASCII`'s).
ASCII_MAP: Final = {"↑": "^", "←": "<-", "├": "|", "└": "`", "│": "|", "─": "-", "…": "..."}
_TRANSLATE: Final = str.maketrans(ASCII_MAP)
_DECORATION_CHARS: Final = "".join(ASCII_MAP)


def decorations(ascii_only: bool) -> Decorations:
    return ASCII if ascii_only else UNICODE


def to_ascii(text: str) -> str:
    """``text`` with every decoration character replaced by its ASCII stand-in (:data:`ASCII_MAP`)."""
    return text.translate(_TRANSLATE)


# --- the writer ------------------------------------------------------------------

_encodes: dict[str, bool] = {}


def _encoding(out: object) -> str | None:
    encoding = getattr(out, "encoding", None)
    return encoding if isinstance(encoding, str) else None


def can_decorate(out: object) -> bool:
    """Whether ``out``'s encoding can encode the Unicode decorations (a stream without one: yes)."""
    encoding = _encoding(out)
    if encoding is None:
        return True
    found = _encodes.get(encoding)
    if found is None:
        try:
            _DECORATION_CHARS.encode(encoding)
            found = True
        except (UnicodeError, LookupError):
            found = False
        _encodes[encoding] = found
    return found


def _escaped(text: str, out: object) -> str:
    """``text`` with what ``out``'s encoding cannot encode written as backslash escapes."""
    encoding = _encoding(out) or "ascii"
    try:
        codecs.lookup(encoding)
    except LookupError:
        encoding = "ascii"
    return text.encode(encoding, "backslashreplace").decode(encoding)


# --- colour ------------------------------------------------------------------------

#: 3.13+ traceback colours: the file, line number and function name magenta; library frames dim.
MAGENTA: Final = "\x1b[35m"
DIM: Final = "\x1b[2m"
RESET: Final = "\x1b[0m"

#: Set by :func:`write` while it renders for a terminal; every ``format_*`` function renders plain.
_colour: Final = contextvars.ContextVar("async_trace_colour", default=False)


def can_colorize(out: object) -> bool:
    """Whether to colour what is written to ``out``: CPython 3.13's ``_colorize.can_colorize``, for ``out``.

    ``PYTHON_COLORS=0`` / ``=1`` decide first, then ``NO_COLOR`` (set: no
    colour), then ``FORCE_COLOR`` (set: colour), then ``TERM=dumb`` (no colour);
    otherwise colour only if ``out`` is a terminal. ``python -E`` ignores the
    variables. On Windows, only a console with virtual terminal support.
    """
    if sys.platform == "win32":
        try:
            import nt

            if not nt._supports_virtual_terminal():  # type: ignore[attr-defined]
                return False
        except (ImportError, AttributeError):
            return False
    env = os.environ
    if not sys.flags.ignore_environment:
        if env.get("PYTHON_COLORS") == "0":
            return False
        if env.get("PYTHON_COLORS") == "1":
            return True
        if "NO_COLOR" in env:
            return False
        if "FORCE_COLOR" in env:
            return True
        if env.get("TERM") == "dumb":
            return False
    isatty = getattr(out, "isatty", None)
    try:
        return bool(isatty()) if callable(isatty) else False
    except Exception:  # noqa: BLE001 - a closed or odd stream: no colour
        return False


def _hi(text: str) -> str:
    return f"{MAGENTA}{text}{RESET}"


def _dim(text: str) -> str:
    return f"{DIM}{text}{RESET}"


Lines = Sequence[str] | Callable[[bool], Sequence[str]]


def write(lines: Lines, file: TextIO | None, *, ascii_only: bool = False, colour: bool = True) -> None:
    """Write ``lines`` to ``file`` (default: ``sys.stdout``, looked up now); never ``UnicodeEncodeError``.

    ``lines`` is either the lines, or a renderer called with whether to use
    the ASCII decorations: true for ``ascii_only`` or when the stream cannot
    encode the Unicode ones. Given ready lines, such a stream gets them with
    every decoration character mapped (:func:`to_ascii`). What the stream
    still cannot encode is written as backslash escapes.

    A renderer writing to a terminal (:func:`can_colorize`) renders in colour,
    unless ``colour`` is false (text that is also kept, such as exception notes).
    """
    out = sys.stdout if file is None else file
    plain = ascii_only or not can_decorate(out)
    if callable(lines):
        token = _colour.set(True) if colour and can_colorize(out) else None
        try:
            rendered: Iterable[str] = lines(plain)
        finally:
            if token is not None:
                _colour.reset(token)
    else:
        rendered = map(to_ascii, lines) if plain else lines
    text = "".join(rendered)
    try:
        out.write(text)
    except UnicodeEncodeError:
        out.write(_escaped(text, out))


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
    colour = _colour.get()
    if line is None or filename is None:
        name = frame["name"]
        # A task name is user text (a request's path, say): one line, no escape codes.
        text = f"thread {str(name)!r}" if isinstance(name, ThreadName) else plain(name)
        if colour and not frame.get("in_app", True):  # a collapsed run
            return _dim(text)
    else:
        is_app = frame.get("in_app", True)
        path = plain(short_path(filename, is_app))
        name = plain(frame["name"])  # code made at run time may have any name and file name
        if colour and is_app:
            text = f"{_hi(name)}() at line {_hi(str(line))} [{_hi(path)}]"
        else:
            text = f"{name}() at line {line} [{path}]"
        if colour and not is_app:
            return _dim(text + _hop_mark(frame))
    return text + _hop_mark(frame)


def _hop_mark(frame: TraceFrame) -> str:
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
    return f"{deco.more} {_plural(len(run), 'library frame')}{named}"


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
    if _colour.get() and frame.get("in_app", True):
        return f'File "{_hi(frame["filename"])}", line {_hi(str(frame["line"]))}, in {_hi(frame["name"])}'
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
        if _colour.get() and not frame.get("in_app", True):  # a collapsed run
            return f"  {_dim(frame['name'])}\n"
        return f"  {frame['name']}\n"
    dim = _colour.get() and not frame.get("in_app", True)
    text = f"  {_dim(traceback_site(frame)) if dim else traceback_site(frame)}\n"
    source = linecache.getline(filename, line).strip()
    if source:
        text += f"    {_dim(source) if dim else source}\n"
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


def _plural(count: int, word: str) -> str:
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


def hop_suffix(frame: TraceFrame) -> str:
    """`` [executor]``, `` [process 12345]`` or nothing: a hop's mark in the one-line forms."""
    return _hop_mark(frame).lower()


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


# --- task trees ------------------------------------------------------------------


def _title(info: TaskInfo, quote: bool) -> str:
    if info.origin == "elided":
        return plain(str(info.name))
    extra = ", unknown origin" if info.origin == "unknown" else ""
    if info.name is None:
        return f"{FINISHED}{' (unknown origin)' if extra else ''}"
    if info.age is not None:  # known while a stall watch runs (docs/stalls.md)
        extra += f", {_duration(info.age)} old" + (f", idle {_duration(info.idle)}" if info.idle is not None else "")
    return f"{repr(info.name) if quote else entry_name(info.name)} ({info.state}{extra})"


def _duration(seconds: float) -> str:
    """``3 s``, ``2 min``, ``5 h``: a task's age or idleness, whole units (a census is a second apart)."""
    if seconds < 120:
        return f"{int(seconds)} s"
    if seconds < 7200:
        return f"{int(seconds // 60)} min"
    return f"{int(seconds // 3600)} h"


#: Awaiter names shown on one line, at most; then ``and N more``.
_MAX_AWAITERS_SHOWN: Final = 5


def _awaiter_note(info: TaskInfo, parent: TaskInfo | None, tree: TaskTree, quote: bool) -> str | None:
    """``'w-2, not its creator'``: who awaits ``info``, unless none or only its parent in the tree (creator).

    ``not its creator`` when the task has a creator in the tree (a live or
    finished parent) and no awaiter is it; a root or a task of unknown
    origin has no creator to compare with.
    """
    awaited_by = info.awaited_by
    if not awaited_by or (parent is not None and parent.id is not None and awaited_by == (parent.id,)):
        return None
    names = []
    for ident in awaited_by[:_MAX_AWAITERS_SHOWN]:
        found = tree.by_id(ident)
        name = found.name if found is not None and found.name is not None else f"<task {ident:#x}>"
        names.append(repr(name) if quote else plain(name))
    more = len(awaited_by) - len(names)
    if more:
        text = f"{', '.join(names)} and {more} more"
    elif len(names) > 1:
        text = f"{', '.join(names[:-1])} and {names[-1]}"
    else:
        text = names[0]
    if parent is not None and parent.origin != "elided" and parent.id not in awaited_by:
        text += ", not its creator"
    return text


def _arrows_entry(
    info: TaskInfo,
    parent: TaskInfo | None,
    tree: TaskTree,
    lead: str,
    rest: str,
    deco: Decorations,
    library_frames: LibraryFrames,
    out: list[str],
) -> None:
    """One entry's own lines (not its children's): ``lead`` starts its line, ``rest`` every line below it."""
    title = _title(info, quote=False)
    boundaries = [f for i, f in enumerate(info.created_at) if f["line"] is not None and (i == 0 or f["is_executor"])]
    if not boundaries and info.created_at:
        boundaries = [f for f in info.created_at if f["line"] is not None][:1]
    created = "".join(f" {deco.left} {frame_text(f)}" for f in boundaries)
    note = _awaiter_note(info, parent, tree, quote=False)
    awaited = f"  [awaited by {note}]" if note is not None else ""
    out.append(f"{lead}{title}{created}{awaited}\n")
    detail = rest + (deco.rail if info.children else deco.blank)
    out.extend(f"{detail}{deco.up} {frame_text(f)}\n" for f, _ in fold(info.suspended_at, library_frames, _FIRST, deco))
    for thread in info.executor_threads:
        out.append(f"{detail}executor thread {thread.name!r}:\n")
        out.extend(
            f"{detail}  {deco.up} {frame_text(f)}\n" for f, _ in fold(thread.frames, library_frames, _FIRST, deco)
        )


#: In a task tree the first frame of each list stays: the creation line, or where the task is suspended.
_FIRST: Final = (0,)


def _traceback_frames(frames: tuple[TraceFrame, ...], pad: str, library_frames: LibraryFrames) -> list[str]:
    lines: list[str] = []
    for frame, _ in reversed(fold(frames, library_frames, _FIRST)):
        bare = frame.copy()
        bare["task"] = None  # its own separator would repeat the title
        text = traceback_frame(bare)
        lines.extend(pad + line + "\n" for line in text.splitlines())
    return lines


def _traceback_entry(
    info: TaskInfo, parent: TaskInfo | None, tree: TaskTree, level: int, library_frames: LibraryFrames, out: list[str]
) -> None:
    """One entry's own lines (not its children's), indented two spaces per ``level``."""
    pad = "  " * level
    if info.origin == "elided":
        out.append(f"{pad}{plain(str(info.name))}\n")
    else:
        out.append(f"{pad}Task {_title(info, quote=True)}\n")
    note = _awaiter_note(info, parent, tree, quote=True)
    if note is not None:
        out.append(f"{pad}  Awaited by: {note}\n")
    if info.created_at:
        out.append(f"{pad}  Created at (most recent call last):\n")
        out.extend(_traceback_frames(info.created_at, pad + "  ", library_frames))
    if info.suspended_at:
        out.append(f"{pad}  {'Running' if info.state == 'running' else 'Suspended'} at (most recent call last):\n")
        out.extend(_traceback_frames(info.suspended_at, pad + "  ", library_frames))
    for thread in info.executor_threads:
        out.append(f"{pad}  Executor thread {thread.name!r} (most recent call last):\n")
        out.extend(_traceback_frames(thread.frames, pad + "  ", library_frames))


def _tree_body(tree: TaskTree, style: Style, deco: Decorations, library_frames: LibraryFrames, out: list[str]) -> None:
    """Every entry, depth first, from an explicit stack (no recursion: any depth renders)."""
    # (info, parent, lead, rest, level)
    todo: list[tuple[TaskInfo, TaskInfo | None, str, str, int]] = [
        (root, None, "", "", 0) for root in reversed(tree.roots)
    ]
    while todo:
        info, parent, lead, rest, level = todo.pop()
        if style == "arrows":
            _arrows_entry(info, parent, tree, lead, rest, deco, library_frames, out)
        else:
            _traceback_entry(info, parent, tree, level, library_frames, out)
        children = info.children
        for i in range(len(children) - 1, -1, -1):
            last = i == len(children) - 1
            todo.append(
                (
                    children[i],
                    info,
                    rest + (deco.last if last else deco.tee),
                    rest + (deco.blank if last else deco.rail),
                    level + 1,
                )
            )


def _site_key(frame: TraceFrame | None) -> tuple[str, str | None, int | None, bool] | None:
    return None if frame is None else (frame["name"], frame["filename"], frame["line"], frame["is_executor"])


def _groups(tree: TaskTree) -> list[tuple[int, TaskInfo]]:
    """``(count, first member)`` per group of live tasks, largest first, then in tree order.

    A group: the same state, creation site (the first ``created_at`` frame
    with a line; else the origin) and suspended site (the first
    ``suspended_at`` frame).
    """
    counts: dict[tuple[Any, ...], list[Any]] = {}
    for _, info in tree.walk():
        if info.state == "finished":
            continue
        created = next((f for f in info.created_at if f["line"] is not None), None)
        suspended = info.suspended_at[0] if info.suspended_at else None
        key = (info.state, None if created is not None else info.origin, _site_key(created), _site_key(suspended))
        found = counts.get(key)
        if found is None:
            counts[key] = [1, info]
        else:
            found[0] += 1
    order = sorted(counts.values(), key=lambda item: -item[0])  # stable: ties stay in tree order
    return [(count, info) for count, info in order]


def _group_line(count: int, info: TaskInfo, spec: StyleSpec) -> str:
    created = next((f for f in info.created_at if f["line"] is not None), None)
    suspended = info.suspended_at[0] if info.suspended_at else None
    if created is not None:
        origin = f"created at {spec.site(created)}"
    else:
        origin = "a root task" if info.origin == "root" else "origin unknown"
    where = f" at {spec.site(suspended)}" if suspended is not None else ""
    return spec.group_line.format(tasks=_plural(count, "task"), state=info.state, where=where, origin=origin)


def tree_lines(
    tree: TaskTree,
    style: Style = "arrows",
    *,
    group: bool = False,
    ascii_only: bool = False,
    library_frames: LibraryFrames = "collapse",
) -> list[str]:
    """:func:`async_trace.format_task_tree`'s lines for ``tree``."""
    check_style(style)
    check_library_frames(library_frames)
    spec = STYLE_TABLE[style]
    count = tree.live_count
    if group:
        groups = _groups(tree)
        head = f"{_plural(count, 'live task')} in {_plural(len(groups), 'group')}"
        return [f"Task groups ({head}, largest first):\n", *(_group_line(n, info, spec) for n, info in groups)]
    out = [spec.tree_header.format(tasks=_plural(count, "live task"))]
    _tree_body(tree, style, decorations(ascii_only), library_frames, out)
    return out


# --- dumps -----------------------------------------------------------------------


def dump_header(loops: int) -> str:
    return f"Async task dump: {_plural(loops, 'running event loop')}\n"


def dump_loop_line(loop: Any, thread: str) -> str:
    return f"\nLoop {type(loop).__name__} at {id(loop):#x} in thread {thread!r}:\n"


# --- python -m async_trace ps | pstree -----------------------------------------------


def _where(loop: dict[str, Any]) -> str:
    name = loop.get("thread_name")
    if name is not None:
        return f"thread {name!r}"
    return f"thread {loop['thread_id']}" if loop.get("thread_id") is not None else "an unknown thread"


def pstree_lines(result: dict[str, Any], trees: list[TaskTree], *, ascii_only: bool = False) -> list[str]:
    """``pstree``'s lines: each loop's task tree (``trees``, as ``dump_tasks`` prints them), or the await graph."""
    pid = result["pid"]
    if result["source"] == "async_trace":
        loops = result["loops"]
        out = [f"Async task dump of process {pid}: {_plural(len(loops), 'running event loop')}\n"]
        for data, tree in zip(loops, trees, strict=True):
            out.append(f"\nLoop {data['loop']['type']} in {_where(data['loop'])}:\n")
            out.extend(tree_lines(tree, ascii_only=ascii_only))
        return out
    graphs = result["await_graph"]
    out = [
        f"Await graph of process {pid} (each task under the task awaiting it; no creation origins): "
        f"{_plural(len(graphs), 'event loop')}\n"
    ]
    for graph in graphs:
        out.append(f"\nLoop in {_where(graph)}:\n")
        out.extend(_await_tree(graph["tasks"], decorations(ascii_only)))
    return out


def remote_frames(frames: list[dict[str, Any]]) -> tuple[TraceFrame, ...]:
    """The remote snapshot's frame dicts as :class:`TraceFrame` (no task objects there)."""
    # A snapshot from an older async-trace has no ``in_app``: decided here, from the same files.
    return tuple(
        cast(TraceFrame, {"is_process": False, "in_app": in_app(f.get("filename")), **f, "task": None}) for f in frames
    )


def _await_tree(tasks: list[dict[str, Any]], deco: Decorations) -> list[str]:
    tasks = sorted(tasks, key=by_name)
    by_id = {task["id"]: task for task in tasks}
    children: dict[int, list[tuple[dict[str, Any], list[dict[str, Any]]]]] = {}
    for task in tasks:
        for waiter in task["awaited_by"]:
            if waiter["id"] in by_id:
                children.setdefault(waiter["id"], []).append((task, waiter["frames"]))
    roots = [task for task in tasks if not any(w["id"] in by_id for w in task["awaited_by"])]
    shown: set[int] = set()
    out: list[str] = []

    def draw(top: dict[str, Any]) -> None:
        # (task, awaited at, lead, rest, the ids on the path down to it): an explicit stack.
        todo: list[tuple[dict[str, Any], list[dict[str, Any]], str, str, frozenset[int]]] = [
            (top, [], "", "", frozenset({top["id"]}))
        ]
        while todo:
            task, at, lead, rest, path = todo.pop()
            shown.add(task["id"])
            awaited = f" {deco.left} awaited at {frame_text(remote_frames(at)[0])}" if at else ""
            out.append(f"{lead}{plain(str(task['name']))}{awaited}\n")
            kids = [k for k in children.get(task["id"], []) if k[0]["id"] not in path]
            detail = rest + (deco.rail if kids else deco.blank)
            out.extend(f"{detail}{deco.up} {frame_text(f)}\n" for f in remote_frames(task["frames"]))
            for i in range(len(kids) - 1, -1, -1):
                kid, kid_at = kids[i]
                last = i == len(kids) - 1
                todo.append(
                    (
                        kid,
                        kid_at,
                        rest + (deco.last if last else deco.tee),
                        rest + (deco.blank if last else deco.rail),
                        path | {kid["id"]},
                    )
                )

    for task in roots:
        draw(task)
    for task in tasks:  # in a cycle of awaits only
        if task["id"] not in shown:
            draw(task)
    return out


def by_name(task: dict[str, Any]) -> tuple[str, int]:
    """Tasks in a stable order (asyncio keeps them in a set): by name, numbers in names in numeric order."""
    name = str(task["name"])
    digits = len(name) - len(name.rstrip("0123456789"))
    return (name[: len(name) - digits], int(name[len(name) - digits :] or -1))


def _ps_site(frames: list[dict[str, Any]]) -> str:
    for frame in frames:
        if frame["line"] is not None and frame["filename"]:
            return f"{frame['name']} {os.path.basename(frame['filename'])}:{frame['line']}"
    return frames[0]["name"] if frames else ""


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    rows = [[plain(str(cell)) for cell in row] for row in rows]  # a name with a newline keeps its row
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(row: list[str]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() + "\n"

    return [line(header), line(["-" * w for w in widths]), *map(line, rows)]


def _hex(value: int | None) -> str:
    return f"{value:#x}" if isinstance(value, int) else ""


def ps_lines(result: dict[str, Any]) -> list[str]:
    """``ps``'s lines: one row per task of every loop."""
    rows: list[list[str]] = []
    if result["source"] == "async_trace":
        header = [
            "thread",
            "task id",
            "name",
            "state",
            "origin",
            "created at",
            "suspended at",
            "parent",
            "parent id",
            "awaited by",
        ]
        for data in result["loops"]:
            thread = str(data["loop"].get("thread_name") or data["loop"].get("thread_id") or "?")
            tasks = data["tasks"]
            names = {task["id"]: entry_name(task["name"] or None) for task in tasks if task["id"] is not None}
            for task in tasks:
                parent = tasks[task["parent"]] if task["parent"] is not None else None
                awaiters = ", ".join(names.get(i, _hex(i)) for i in task.get("awaited_by", ()))
                rows.append(
                    [
                        thread,
                        _hex(task["id"]),
                        entry_name(task["name"] or None),
                        task["state"],
                        task["origin"],
                        _ps_site(task["created_at"]),
                        _ps_site(task["suspended_at"]),
                        entry_name(parent["name"] or None) if parent is not None else "",
                        _hex(parent["id"]) if parent is not None else "",
                        awaiters,
                    ]
                )
        return _table(header, rows)
    header = ["thread", "task id", "name", "suspended at", "awaited by", "awaiter id", "awaited at"]
    for graph in result["await_graph"]:
        thread = str(graph.get("thread_name") or graph.get("thread_id") or "?")
        names = {task["id"]: task["name"] for task in graph["tasks"]}
        for task in sorted(graph["tasks"], key=by_name):
            waiters = task["awaited_by"] or [None]
            for waiter in waiters:
                rows.append(
                    [
                        thread,
                        _hex(task["id"]),
                        task["name"],
                        _ps_site(task["frames"]),
                        names.get(waiter["id"], "?") if waiter else "",
                        _hex(waiter["id"]) if waiter else "",
                        _ps_site(waiter["frames"]) if waiter else "",
                    ]
                )
    return _table(header, rows)
