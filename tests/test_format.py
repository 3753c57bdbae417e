"""The printed form: the README's arrows, traceback's format/print conventions."""

from __future__ import annotations

import asyncio
import io
import os
from typing import Any

import pytest

from async_trace import (
    TraceData,
    TraceFrame,
    collect_async_trace,
    format_async_trace,
    format_trace,
    print_async_trace,
    print_trace,
)

from .helpers import line_of

F = os.path.basename(__file__)


def _frame(name: str, line: int | None, indent: int, *, executor: bool = False) -> TraceFrame:
    return {
        "name": name,
        "line": line,
        "filename": None if line is None else "/some/where/app.py",
        "indent": indent,
        "task": None,
        "is_executor": executor,
        "is_process": False,
        "in_app": True,
    }


SAMPLE: TraceData = {
    "frames": [
        _frame("blocking_work", 7, 0),
        _frame("worker", 14, 1, executor=True),
        _frame("main", 19, 2),
        _frame("Task-1", None, 3),
    ],
    "current_task": None,
    "in_executor": True,
}
SAMPLE_LINES = [
    "↑ blocking_work() at line 7 [app.py]\n",
    "  ↑ worker() at line 14 [app.py] [EXECUTOR]\n",
    "    ↑ main() at line 19 [app.py]\n",
    "      ↑ Task-1\n",
]


def test_format_async_trace_lines() -> None:
    """One line per frame, basename only, two spaces per level, [EXECUTOR], bare root name."""
    assert format_async_trace(SAMPLE) == SAMPLE_LINES


@pytest.mark.parametrize(
    ("limit", "expected"),
    [
        (None, SAMPLE_LINES),
        (2, SAMPLE_LINES[:2]),
        (0, []),
        (-1, SAMPLE_LINES[-1:]),
        (-3, SAMPLE_LINES[1:]),
        (9, SAMPLE_LINES),
    ],
)
def test_limit_like_traceback(limit: int | None, expected: list[str]) -> None:
    """limit > 0 keeps the innermost frames, limit < 0 the outermost, None all."""
    assert format_async_trace(SAMPLE, limit=limit) == expected


def test_print_async_trace_to_file() -> None:
    """print_async_trace writes exactly the formatted lines to file=."""
    buf = io.StringIO()
    print_async_trace(SAMPLE, file=buf, limit=-2)
    assert buf.getvalue() == "".join(SAMPLE_LINES[-2:])


def test_print_defaults_to_stdout_at_call_time(capsys: pytest.CaptureFixture[str]) -> None:
    """file=None means the sys.stdout of the moment of the call."""
    print_async_trace(SAMPLE)
    assert capsys.readouterr().out == "".join(SAMPLE_LINES)


def test_ascii_stream_gets_a_caret() -> None:
    """A stream that cannot encode the arrow gets '^' instead, not an exception."""
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="ascii")
    print_async_trace(SAMPLE, file=stream)
    stream.flush()
    assert raw.getvalue().decode("ascii").splitlines()[0] == "^ blocking_work() at line 7 [app.py]"


async def _worker(buf: io.StringIO) -> list[str]:
    print_trace(file=buf)  # print-here
    return format_trace()  # format-here


async def _main(buf: io.StringIO) -> tuple[list[str], Any]:
    return await asyncio.create_task(_worker(buf)), asyncio.current_task()  # spawn


def test_print_trace_and_format_trace_in_a_task() -> None:
    """print_trace/format_trace show the caller's trace, skipping async_trace's own frames."""
    buf = io.StringIO()
    lines, root = asyncio.run(_main(buf))
    spawn = line_of(_main, "spawn")
    assert buf.getvalue() == (
        f"↑ _worker() at line {line_of(_worker, 'print-here')} [{F}]\n"
        f"  ↑ _main() at line {spawn} [{F}]\n"
        f"    ↑ {root.get_name()}\n"
    )
    assert lines == [
        f"↑ _worker() at line {line_of(_worker, 'format-here')} [{F}]\n",
        f"  ↑ _main() at line {spawn} [{F}]\n",
        f"    ↑ {root.get_name()}\n",
    ]


def test_format_async_trace_of_a_collected_trace() -> None:
    """format_async_trace(collect_async_trace()) equals format_trace() at the same place."""

    async def main() -> tuple[list[str], list[str]]:
        a = format_async_trace(collect_async_trace())
        b = format_trace()
        return a, b

    a, b = asyncio.run(main())
    assert [x.split(" at line")[0] for x in a] == [x.split(" at line")[0] for x in b]
    assert len(a) == 2


def test_a_trace_built_to_the_specification_renders() -> None:
    """A trace with the specification's six keys per frame (no ``is_process``, ``in_app``) renders as collected.

    ``in_app`` follows from the file name: a site-packages frame is a library frame.
    """
    six = [
        {key: value for key, value in _frame(name, line, i).items() if key not in ("is_process", "in_app")}
        for i, (name, line) in enumerate([("leaf", 3), ("main", 9)])
    ]
    assert format_async_trace({"frames": six, "current_task": None}) == format_async_trace(
        {"frames": [_frame("leaf", 3, 0), _frame("main", 9, 1)], "current_task": None}
    )
    library = {**six[0], "filename": "/venv/lib/python3.12/site-packages/pkg/mod.py"}
    assert format_async_trace({"frames": [library, six[1]]}) == [
        "↑ leaf() at line 3 [pkg/mod.py]\n",
        "  ↑ main() at line 9 [app.py]\n",
    ]


def test_a_frame_needs_only_a_name() -> None:
    """Left-out keys mean "nothing known": the position is the indent, no line, no file."""
    trace: Any = {"frames": [{"name": "leaf", "line": 3, "filename": "/x/app.py"}, {"name": "Task-1"}]}
    assert format_async_trace(trace) == ["↑ leaf() at line 3 [app.py]\n", "  ↑ Task-1\n"]
    assert format_async_trace({"frames": [{"name": 7}]}) == ["↑ 7\n"]


@pytest.mark.parametrize(
    ("trace", "message"),
    [
        (None, "expected the trace dict collect_async_trace() returns, not NoneType"),
        ([], "expected the trace dict collect_async_trace() returns, not list"),
        ({}, "the trace's 'frames' must be a list of frame dicts, not NoneType"),
        ({"frames": "leaf"}, "the trace's 'frames' must be a list of frame dicts, not str"),
        ({"frames": [_frame("leaf", 3, 0), 42]}, "frame 1 of the trace must be a frame dict with a 'name', not int"),
        (
            {"frames": [{"line": 3}]},
            "frame 0 of the trace must be a frame dict with a 'name', not a dict without 'name'",
        ),
    ],
)
def test_what_is_not_a_trace_is_a_clear_type_error(trace: Any, message: str) -> None:
    for call in (
        lambda: format_async_trace(trace),
        lambda: print_async_trace(trace, file=io.StringIO()),
        lambda: format_async_trace(trace, style="traceback"),
    ):
        with pytest.raises(TypeError) as caught:
            call()
        assert str(caught.value) == message


@pytest.mark.parametrize("limit", ["3", 2.5, [1]])
def test_limit_must_be_an_int(limit: Any) -> None:
    with pytest.raises(TypeError, match=rf"^limit must be an int or None, not {type(limit).__name__}$"):
        format_async_trace(SAMPLE, limit=limit)
    with pytest.raises(TypeError, match=r"^limit must be an int or None"):
        print_trace(limit=limit, file=io.StringIO())


def test_names_print_on_one_line_without_escape_codes() -> None:
    """A task name is user text: its newline and terminal escape codes are printed escaped, as in the tree."""
    hostile = "GET /\nfake line\x1b[31m"

    async def leaf() -> list[str]:
        return format_trace()

    async def main() -> list[str]:
        asyncio.current_task().set_name(hostile)  # type: ignore[union-attr]
        return await asyncio.create_task(leaf())

    lines = asyncio.run(main())
    assert lines[-1] == "    ↑ GET /\\nfake line\\x1b[31m\n"
    assert all(line.count("\n") == 1 for line in lines)
    # Code made at run time may have any function and file name.
    frame = {**_frame("a\nb", 3, 0), "filename": "/x/evil\x1b.py"}
    assert format_async_trace({"frames": [frame]}) == ["↑ a\\nb() at line 3 [evil\\x1b.py]\n"]
