"""``format_exception`` / ``print_exception`` show the note in the style asked on every call (issue 21, item 4).

On 3.11+ the note is added once to ``__notes__`` (by the first print, ``logging.exception()``,
an earlier call): later calls asking another ``style`` or ``library_frames`` show that one in
their lines, and ``__notes__`` keeps its one note as it was added.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import copy
import io
import linecache
import logging
import pickle
import sys
from typing import Any

import pytest

import async_trace
from async_trace import exception_trace, format_exception, print_exception

from .helpers import line_of

NOTES = sys.version_info >= (3, 11)


async def _fail() -> None:
    raise ValueError("boom")  # raise-here


@contextlib.contextmanager
def _spawning(box: list[asyncio.Task[None]]) -> Any:
    box.append(asyncio.create_task(_fail(), name="failing"))  # spawn
    yield


async def _main() -> BaseException:
    box: list[asyncio.Task[None]] = []
    with contextlib.ExitStack() as stack:
        stack.enter_context(_spawning(box))  # enter
    try:
        await box[0]  # await
    except ValueError as exc:
        return exc
    raise AssertionError("not raised")


def _src(line: int) -> str:
    return linecache.getline(__file__, line).strip()


def _library_frames(exc: BaseException) -> list[tuple[str, int, str]]:
    """``(name, line, filename)`` of the two contextlib frames between the spawn and ``_main``, innermost first."""
    trace = exception_trace(exc)
    assert trace is not None
    out = [(f["name"], f["line"], f["filename"] or "") for f in trace["frames"] if not f["in_app"]]
    assert [(name, filename.endswith("contextlib.py")) for name, _, filename in out] == [
        ("__enter__", True),
        ("enter_context", True),
    ]
    return out  # type: ignore[return-value]


def _expected(exc: BaseException, style: str, library_frames: str) -> list[str]:
    """The note's lines, as printed after ``ValueError: boom``."""
    spawn, enter = line_of(_spawning, "spawn"), line_of(_main, "enter")
    inner, outer = _library_frames(exc)
    trace = exception_trace(exc)
    assert trace is not None
    root = trace["frames"][-1]["name"]
    if style == "arrows":
        mid = {
            "collapse": ["  ↑ … 2 library frames (contextlib)"],
            "show": [
                f"  ↑ {inner[0]}() at line {inner[1]} [contextlib.py]",
                f"    ↑ {outer[0]}() at line {outer[1]} [contextlib.py]",
            ],
            "hide": [],
        }[library_frames]
        pad = "  " * (len(mid) + 1)
        return [
            "Async trace:",
            f"↑ _spawning() at line {spawn} [test_restyle.py]",
            *mid,
            f"{pad}↑ _main() at line {enter} [test_restyle.py]",
            f"{pad}  ↑ {root}",
        ]
    lib = {
        "collapse": ["  … 2 library frames (contextlib)"],
        "show": [
            f'  File "{outer[2]}", line {outer[1]}, in {outer[0]}',
            f"    {linecache.getline(outer[2], outer[1]).strip()}",
            f'  File "{inner[2]}", line {inner[1]}, in {inner[0]}',
            f"    {linecache.getline(inner[2], inner[1]).strip()}",
        ],
        "hide": [],
    }[library_frames]
    return [
        "Async trace (most recent call last):",
        f"  Root task {root!r}",
        f'  File "{__file__}", line {enter}, in _main',
        f"    {_src(enter)}",
        *lib,
        f'  File "{__file__}", line {spawn}, in _spawning',
        f"    {_src(spawn)}",
        "  --- task 'failing' created here ---",
    ]


def _note_lines(lines: list[str]) -> list[str]:
    """What follows the exception line, line by line."""
    text = "".join(lines)
    head, sep, note = text.partition("ValueError: boom\n")
    assert sep, text
    assert head.startswith("Traceback (most recent call last):\n"), text
    return note.splitlines()


def _stored(exc: BaseException) -> list[str]:
    return list(getattr(exc, "__notes__", []))


CASES = [(style, mode) for style in ("arrows", "traceback") for mode in ("collapse", "show", "hide")]


@pytest.fixture
def exc() -> BaseException:
    return asyncio.run(_main())


def test_each_call_shows_the_style_asked(exc: BaseException) -> None:
    """The first call adds the note (in its style); every later call shows its own, ``__notes__`` keeps one."""
    first = format_exception(exc, style="arrows")
    assert _note_lines(first) == _expected(exc, "arrows", "collapse")
    stored = _stored(exc)
    assert stored == (["\n".join(_expected(exc, "arrows", "collapse"))] if NOTES else [])
    for style, mode in [*CASES, *reversed(CASES)]:
        lines = format_exception(exc, style=style, library_frames=mode)  # type: ignore[arg-type]
        assert _note_lines(lines) == _expected(exc, style, mode), (style, mode)
        assert _stored(exc) == stored
    # Neither asked: the note as it was added.
    assert _note_lines(format_exception(exc)) == _expected(exc, "arrows" if NOTES else "traceback", "collapse")


def test_after_logging_exception(exc: BaseException) -> None:
    """``logging.exception()`` adds the note in the default style; ``format_exception(style="arrows")`` shows arrows."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("test_restyle")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        try:
            raise exc
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    logged = stream.getvalue().splitlines()
    at = logged.index("ValueError: boom")
    assert logged[at + 1 :] == _expected(exc, "traceback", "collapse")
    assert _stored(exc) == (["\n".join(_expected(exc, "traceback", "collapse"))] if NOTES else [])
    assert _note_lines(format_exception(exc, style="arrows")) == _expected(exc, "arrows", "collapse")
    assert _note_lines(format_exception(exc, style="arrows", library_frames="hide")) == _expected(exc, "arrows", "hide")
    assert len(_stored(exc)) == (1 if NOTES else 0)


def test_print_exception_and_ascii(exc: BaseException) -> None:
    """``print_exception`` prints the asked style after an earlier call chose another; ``ascii_only`` applies to it."""
    format_exception(exc, style="traceback")
    out = io.StringIO()
    print_exception(exc, file=out, style="arrows", library_frames="show")
    assert _note_lines([out.getvalue()]) == _expected(exc, "arrows", "show")
    plain = format_exception(exc, style="arrows", ascii_only=True)
    assert _note_lines(plain) == [
        line.replace("↑", "^").replace("…", "...") for line in _expected(exc, "arrows", "collapse")
    ]
    assert _stored(exc) == (["\n".join(_expected(exc, "traceback", "collapse"))] if NOTES else [])


def test_eager_note_then_another_style() -> None:
    """With eager notes the note is in ``__notes__`` before any print; an asked style is still shown."""
    async_trace.enable_tracing(eager_notes=True)
    try:
        exc = asyncio.run(_main())
    finally:
        async_trace.enable_tracing(eager_notes=False)
    stored = _stored(exc)
    assert len(stored) == 1
    assert stored[0].startswith("Async trace (most recent call last):\n")
    assert _note_lines(format_exception(exc, style="arrows", library_frames="show")) == _expected(exc, "arrows", "show")
    assert _stored(exc) == stored


@pytest.mark.skipif(not NOTES, reason="notes are 3.11+")
def test_group_members_and_causes(exc: BaseException) -> None:
    """Each exception of a chain, a group's members too, shows the asked style."""
    format_exception(exc, style="traceback")
    try:
        raise RuntimeError("outer") from exc
    except RuntimeError as outer:
        wrapped = outer
    group = getattr(builtins, "BaseExceptionGroup")("group", [wrapped])  # noqa: B009 - 3.11+
    text = "".join(format_exception(group, style="arrows"))
    assert "".join(f"    | {line}\n" for line in _expected(exc, "arrows", "collapse")) in text
    assert "Async trace (most recent call last):" not in text
    assert _stored(exc) == ["\n".join(_expected(exc, "traceback", "collapse"))]


@pytest.mark.skipif(not NOTES, reason="notes are 3.11+")
def test_note_is_a_plain_string_once_pickled_or_copied(exc: BaseException) -> None:
    """Our note's marker type never leaves the process: pickled and copied, it is a ``str``."""
    format_exception(exc)
    (stored,) = getattr(exc, "__notes__")  # noqa: B009 - 3.11+
    for back in (pickle.loads(pickle.dumps(stored)), copy.copy(stored), copy.deepcopy(stored)):
        assert type(back) is str
        assert back == stored
    again = pickle.loads(pickle.dumps(exc))
    assert [type(n) for n in getattr(again, "__notes__")] == [str]  # noqa: B009 - 3.11+


def test_programs_own_notes_stay(exc: BaseException) -> None:
    """A note the program added is shown as it is, before or after ours."""
    if NOTES:
        getattr(exc, "add_note")("first, the program's")  # noqa: B009 - 3.11+
    format_exception(exc, style="traceback")
    if NOTES:
        getattr(exc, "add_note")("then the program's again")  # noqa: B009 - 3.11+
    lines = _note_lines(format_exception(exc, style="arrows"))
    if NOTES:
        assert lines == ["first, the program's", *_expected(exc, "arrows", "collapse"), "then the program's again"]
    else:
        assert lines == _expected(exc, "arrows", "collapse")
