"""Writing text out: decorations (Unicode or ASCII), colour, and the one writer that never raises on encoding.

The characters we draw ourselves come from a :class:`Decorations` table,
:data:`UNICODE` or :data:`ASCII`::

    ↑    ->  ^      (a frame, arrows style)
    ←    ->  <-     (a creating / awaiting line, and the logging path)
    …    ->  ...    (a run of collapsed library frames)
    ├──  ->  |--    (a child that has a sibling below it)
    └──  ->  `--    (the last child)
    │    ->  |      (the rail of a parent with children below)

:func:`write` picks :data:`ASCII` when asked (``ascii_only=True``) or when the
stream's encoding cannot encode the Unicode ones; user text the stream cannot
encode (task names, file names, source lines) is written with
``backslashreplace``: printing never raises ``UnicodeEncodeError``. Colour
follows CPython's own rules for tracebacks (3.13+), never in returned text.
"""

from __future__ import annotations

import codecs
import contextvars
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final, TextIO

__all__: list[str] = []


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


#: 3.13+ traceback colours: the file, line number and function name magenta; library frames dim.
MAGENTA: Final = "\x1b[35m"
DIM: Final = "\x1b[2m"
RESET: Final = "\x1b[0m"


#: Set by :func:`write` while it renders for a terminal; every ``format_*`` function renders plain.
COLOUR: Final = contextvars.ContextVar("async_trace_colour", default=False)


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


def highlight(text: str) -> str:
    return f"{MAGENTA}{text}{RESET}"


def dim(text: str) -> str:
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
        token = COLOUR.set(True) if colour and can_colorize(out) else None
        try:
            rendered: Iterable[str] = lines(plain)
        finally:
            if token is not None:
                COLOUR.reset(token)
    else:
        rendered = map(to_ascii, lines) if plain else lines
    text = "".join(rendered)
    try:
        out.write(text)
    except UnicodeEncodeError:
        out.write(_escaped(text, out))
