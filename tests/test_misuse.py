"""A caller's mistakes get an error that says what was expected (issue 21, item 5).

Each is raised by the public function the program called (the traceback's last frame is that
function's, never a helper's), is not an internal error (no warning, no count in
``internal_errors()``), and correct calls behave as before. A program run with
``python -m async_trace`` that is interrupted or crashes shows the traceback plain Python shows.
"""

from __future__ import annotations

import asyncio
import functools
import io
import re
import signal
import sys
import textwrap
import traceback
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import async_trace
from async_trace import (
    cancel_dump_tasks_on_signal,
    collect_async_trace,
    dump_tasks_on_signal,
    exception_trace,
    format_exception,
    format_task_tree,
    internal_errors,
    print_exception,
    print_task_tree,
    task_tree,
    trace_to_dict,
    trace_to_json,
)
from async_trace.logging import compact_path

from .helpers import run_python

POSIX = hasattr(signal, "SIGUSR1")
TRACE = (
    "a trace: the dict collect_async_trace() returns, "
    "{'frames': [frame dicts, innermost first], 'current_task': Task or None, 'in_executor': bool}"
)
FRAME_KEYS = "'name', 'line', 'filename', 'indent', 'task', 'is_executor'"


@pytest.fixture(autouse=True)
def _no_internal_error() -> Iterator[None]:
    """No case here warns or counts an internal error."""
    before = internal_errors().count
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield
    assert internal_errors().count == before


def _raised_by(call: Callable[[], object], error: type[Exception], message: str, function: str) -> None:
    """``call()`` raises ``error(message)`` exactly, the last frame of its traceback in ``function``."""
    with pytest.raises(error) as info:
        call()
    assert str(info.value) == message
    last = traceback.extract_tb(info.value.__traceback__)[-1]
    assert last.name == function
    assert last.filename.replace("\\", "/").endswith(("async_trace/_tree.py", "async_trace/_json.py",
                                                       "async_trace/_dump.py", "async_trace/_exceptions.py",
                                                       "async_trace/logging.py"))  # fmt: skip


# --- task_tree, format_task_tree, print_task_tree -----------------------------------------------


def test_task_tree_of_a_non_loop() -> None:
    expected = (
        "task_tree() takes an event loop (asyncio.AbstractEventLoop, such as asyncio.get_running_loop()), "
        "or None for the running loop; not {}"
    )
    _raised_by(lambda: task_tree(loop="x"), TypeError, expected.format("str"), "task_tree")  # type: ignore[arg-type]
    _raised_by(lambda: task_tree(42), TypeError, expected.format("int"), "task_tree")  # type: ignore[arg-type]


def test_task_tree_of_loops_still_works() -> None:
    """A loop passed, the running loop by default, a loop of another thread's kind: unchanged."""

    async def main() -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        return len(task_tree(loop).roots), len(task_tree().roots)

    assert asyncio.run(main()) == (1, 1)
    loop = asyncio.new_event_loop()
    try:
        assert task_tree(loop).roots == ()
    finally:
        loop.close()


@pytest.mark.parametrize(
    ("func", "name"), [(format_task_tree, "format_task_tree"), (print_task_tree, "print_task_tree")]
)
def test_tree_functions_of_a_non_tree(func: Callable[..., Any], name: str) -> None:
    expected = f"{name}() takes a TaskTree (what task_tree() returns), or None for the running loop's; not str"
    _raised_by(lambda: func("x"), TypeError, expected, name)
    expected = f"{name}() takes a TaskTree (what task_tree() returns), or None for the running loop's; not dict"
    _raised_by(lambda: func({}), TypeError, expected, name)


def test_tree_functions_of_a_tree_still_work() -> None:
    async def main() -> tuple[list[str], str]:
        tree = task_tree()
        out = io.StringIO()
        print_task_tree(tree, file=out)
        return format_task_tree(tree), out.getvalue()

    lines, printed = asyncio.run(main())
    assert "".join(lines) == printed
    assert lines[0] == "Task tree (1 live task):\n"
    assert re.match(r"Task-\d+ \(running\)", lines[1]), lines


# --- traces ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "what"),
    [
        ({}, "not a dict without 'frames'"),
        ("x", "not str"),
        (None, "not None"),
        ({"frames": "abc"}, "its 'frames' is a str, not a list of frame dicts"),
        ({"frames": [1]}, "frame 0 is a int, not a frame dict"),
    ],
)
def test_trace_functions_of_a_non_trace(value: object, what: str) -> None:
    funcs: list[tuple[Callable[[Any], object], str]] = [
        (trace_to_dict, "trace_to_dict"),
        (trace_to_json, "trace_to_json"),
        (compact_path, "compact_path"),
    ]
    for func, name in funcs:
        _raised_by(functools.partial(func, value), TypeError, f"{name}() takes {TRACE}; {what}", name)


def test_trace_to_dict_names_the_missing_keys() -> None:
    partial = {"frames": [{"name": "main", "line": 3}], "current_task": None, "in_executor": False}
    message = f"trace_to_dict() takes {TRACE}; frame 0 has no 'filename', 'indent', 'task', 'is_executor' " + (
        f"(a frame dict has {FRAME_KEYS})"
    )
    _raised_by(lambda: trace_to_dict(partial), TypeError, message, "trace_to_dict")  # type: ignore[arg-type]


def test_trace_functions_of_traces_still_work() -> None:
    """A collected trace, and a hand-built one with names only (compact_path, like format_async_trace)."""

    async def main() -> tuple[str, str, int]:
        trace = collect_async_trace()
        return compact_path(trace), trace_to_json(trace), len(trace_to_dict(trace)["frames"])

    path, text, count = asyncio.run(main())
    assert path.startswith("main ← ")
    assert text.startswith('{"frames": [{"name": "main", ')
    assert count == 2
    assert compact_path({"frames": [{"name": "inner"}, {"name": "outer"}]}) == "inner ← outer"  # type: ignore[typeddict-item]
    assert compact_path({"frames": []}) == ""  # type: ignore[typeddict-item]


# --- exceptions -----------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "what"), [("nope", "str"), (None, "None"), (ValueError, "the class ValueError")])
def test_exception_functions_of_a_non_exception(value: object, what: str) -> None:
    funcs: list[tuple[Callable[[Any], object], str]] = [
        (exception_trace, "exception_trace"),
        (format_exception, "format_exception"),
        (print_exception, "print_exception"),
    ]
    for func, name in funcs:
        message = f"{name}() takes an exception instance (such as the one an except clause binds); not {what}"
        _raised_by(functools.partial(func, value), TypeError, message, name)


def test_exception_functions_of_exceptions_still_work() -> None:
    exc = ValueError("plain")
    assert exception_trace(exc) is None
    assert format_exception(exc) == ["ValueError: plain\n"]


# --- signals --------------------------------------------------------------------------------


@pytest.fixture
def restored_usr1() -> Iterator[None]:
    if not POSIX:
        pytest.skip("SIGUSR1 is POSIX-only")
    before = signal.getsignal(signal.SIGUSR1)
    try:
        yield
    finally:
        cancel_dump_tasks_on_signal(signal.SIGUSR1)
        signal.signal(signal.SIGUSR1, before)


@pytest.mark.parametrize("name", ["USR1", "SIGUSR1", "usr1", "sigusr1", " USR1 ", "SIGNALS", "NUMBER", "DIGITS"])
def test_signal_names_are_accepted(restored_usr1: None, name: str) -> None:
    """As ``--dump-signal USR1``: a name with or without SIG, any case; also signal.Signals, the number, digits."""
    value: Any = {"SIGNALS": signal.SIGUSR1, "NUMBER": int(signal.SIGUSR1), "DIGITS": str(int(signal.SIGUSR1))}.get(
        name, name
    )
    before = signal.getsignal(signal.SIGUSR1)
    dump_tasks_on_signal(value)
    assert async_trace._dump.is_dump_handler(signal.getsignal(signal.SIGUSR1))
    assert cancel_dump_tasks_on_signal(value) is True
    assert signal.getsignal(signal.SIGUSR1) is before
    assert cancel_dump_tasks_on_signal(value) is False


@pytest.mark.parametrize("value", ["KILL", "SIGSTOP", "sigkill", "NUMBER"])
def test_uncatchable_signals_are_refused(restored_usr1: None, value: str) -> None:
    sig: Any = int(signal.SIGKILL) if value == "NUMBER" else value
    name = "SIGSTOP" if "STOP" in value.upper() else "SIGKILL"
    funcs: list[tuple[Callable[[Any], object], str]] = [
        (dump_tasks_on_signal, "dump_tasks_on_signal"),
        (cancel_dump_tasks_on_signal, "cancel_dump_tasks_on_signal"),
    ]
    for func, fname in funcs:
        message = (
            f"{fname}(): {name} cannot be caught (no handler ever runs for SIGKILL or SIGSTOP); "
            "choose another signal, such as SIGUSR1"
        )
        _raised_by(functools.partial(func, sig), ValueError, message, fname)


def test_signals_members_refused_too(restored_usr1: None) -> None:
    message = (
        "dump_tasks_on_signal(): SIGSTOP cannot be caught (no handler ever runs for SIGKILL or SIGSTOP); "
        "choose another signal, such as SIGUSR1"
    )
    _raised_by(lambda: dump_tasks_on_signal(signal.SIGSTOP), ValueError, message, "dump_tasks_on_signal")


def test_unknown_and_wrong_signals(restored_usr1: None) -> None:
    _raised_by(
        lambda: dump_tasks_on_signal("USR9"),
        ValueError,
        "dump_tasks_on_signal(): unknown signal 'USR9' (names such as 'USR1' or 'SIGUSR1')",
        "dump_tasks_on_signal",
    )
    _raised_by(
        lambda: dump_tasks_on_signal("SIG_DFL"),
        ValueError,
        "dump_tasks_on_signal(): unknown signal 'SIG_DFL' (names such as 'USR1' or 'SIGUSR1')",
        "dump_tasks_on_signal",
    )
    wrong: list[tuple[Any, str]] = [(1.5, "float"), (True, "bool"), (b"USR1", "bytes")]
    for value, what in wrong:
        message = (
            "cancel_dump_tasks_on_signal() takes a signal: a number, a signal.Signals member such as "
            f"signal.SIGUSR1, or a name such as 'USR1' or 'SIGUSR1'; not {what}"
        )
        cancel = functools.partial(cancel_dump_tasks_on_signal, value)
        _raised_by(cancel, TypeError, message, "cancel_dump_tasks_on_signal")


def test_cli_refuses_an_uncatchable_signal(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("print('ran')\n")
    result = run_python("-m", "async_trace", "--dump-signal", "KILL", "app.py", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines()[-1] == (
        "python -m async_trace: error: argument --dump-signal: SIGKILL cannot be caught (no handler ever runs for "
        "SIGKILL or SIGSTOP); choose another signal, such as SIGUSR1"
    )


# --- python -m async_trace: the program's traceback, not ours ------------------------------------

PROGRAMS = {
    "asyncio-sigint": """
        import asyncio, os, signal

        async def wait_forever():
            os.kill(os.getpid(), signal.SIGINT)
            await asyncio.sleep(30)

        async def main():
            await asyncio.create_task(wait_forever())

        asyncio.run(main())
    """,
    "sync-sigint": """
        import os, signal, time

        def work():
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(300):
                time.sleep(0.1)

        work()
    """,
    "asyncio-crash": """
        import asyncio

        async def fail():
            raise ValueError("boom")

        async def main():
            await asyncio.create_task(fail())

        asyncio.run(main())
    """,
    "sync-crash": """
        def fail():
            return 1 / 0

        fail()
    """,
}


def _without_note(text: str) -> list[str]:
    """The lines of ``text`` without our notes (a note's header and its indented lines)."""
    out: list[str] = []
    in_note = False
    for line in text.splitlines():
        if line in ("Async trace (most recent call last):", "Async trace:"):
            in_note = True
            continue
        if in_note and (line.startswith(("  ", "↑")) or line == ""):
            if line == "":
                in_note = False
                out.append(line)
            continue
        in_note = False
        out.append(line)
    return out


@pytest.mark.skipif(not POSIX, reason="a process that sends itself SIGINT: POSIX")
@pytest.mark.parametrize("kind", sorted(PROGRAMS))
@pytest.mark.parametrize("as_module", [False, True])
def test_interrupted_or_crashed_program_shows_no_frame_of_ours(tmp_path: Path, kind: str, as_module: bool) -> None:
    """``python -m async_trace prog.py`` (or ``-m prog``) prints what ``python prog.py`` prints, and exits the same.

    (``python -m prog`` itself shows two frames of runpy's above the program's; ours shows none.)
    """
    (tmp_path / "prog.py").write_text(textwrap.dedent(PROGRAMS[kind]))
    target = ["-m", "prog"] if as_module else ["prog.py"]
    plain = run_python("prog.py", cwd=tmp_path)
    traced = run_python("-m", "async_trace", *target, cwd=tmp_path)
    expected_code = -signal.SIGINT if kind.endswith("sigint") else 1
    assert (plain.returncode, traced.returncode) == (expected_code, expected_code)
    assert plain.stderr.startswith("Traceback (most recent call last):\n")
    assert _without_note(traced.stderr) == plain.stderr.splitlines()
    assert "runpy" not in traced.stderr
    assert "async_trace" not in traced.stderr.replace("Async trace", "")
    if kind == "asyncio-crash" and sys.version_info >= (3, 12):
        # 3.10/3.11 look for the origin when it is printed, after asyncio.run: the task is gone.
        assert traced.stderr != plain.stderr  # the note is there
        assert "Async trace (most recent call last):\n  Root task 'Task-1'\n" in traced.stderr


def test_keyboard_interrupt_caught_by_the_program_is_untouched(tmp_path: Path) -> None:
    """Only the exception leaving the program is reported from the program's frames; its own hook still runs."""
    (tmp_path / "prog.py").write_text(
        textwrap.dedent("""
            import sys

            def hook(exc_type, exc, tb):
                frames = []
                while tb is not None:
                    frames.append(tb.tb_frame.f_code.co_name)
                    tb = tb.tb_next
                print("hook", exc_type.__name__, frames)

            sys.excepthook = hook
            try:
                raise KeyboardInterrupt
            except KeyboardInterrupt:
                print("caught")

            def stop():
                raise KeyboardInterrupt

            stop()
        """)
    )
    plain = run_python("prog.py", cwd=tmp_path)
    traced = run_python("-m", "async_trace", "prog.py", cwd=tmp_path)
    assert plain.stdout == traced.stdout == "caught\nhook KeyboardInterrupt ['<module>', 'stop']\n"
    assert plain.returncode == traced.returncode == -signal.SIGINT
