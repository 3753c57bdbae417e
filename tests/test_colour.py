"""Colour on a terminal only, the way 3.13+ tracebacks are coloured, honouring PYTHON_COLORS, NO_COLOR, FORCE_COLOR."""

from __future__ import annotations

import io
import os
import pty
import select
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from async_trace._writer import can_colorize

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="pty is POSIX")

#: A library run under our own frames: a stdlib (contextlib) frame between main() and worker().
SCRIPT = textwrap.dedent(
    """
    import asyncio, contextlib, os, sys
    from async_trace import format_trace, print_exception, print_trace

    @contextlib.asynccontextmanager
    async def lib():
        print_trace(style=sys.argv[1])
        yield

    async def worker():
        async with lib():
            pass

    async def bad():
        raise ValueError("bad")

    async def main():
        await asyncio.create_task(worker(), name="w")
        assert "\\x1b" not in "".join(format_trace())  # format_* never colours
        try:
            await asyncio.create_task(bad(), name="b")
        except ValueError as exc:
            print_exception(exc, file=open(os.devnull, "w"))  # noqa
            assert not any("\\x1b" in note for note in getattr(exc, "__notes__", []))  # notes are kept: plain
        print("END")

    asyncio.run(main())
    """
)

M, D, R = "\x1b[35m", "\x1b[2m", "\x1b[0m"


def _run(tmp_path: Path, env: dict[str, str], *, tty: bool, style: str = "arrows") -> str:
    script = tmp_path / "colour_app.py"
    script.write_text(SCRIPT, encoding="utf-8")
    full = {k: v for k, v in os.environ.items() if k not in ("PYTHON_COLORS", "NO_COLOR", "FORCE_COLOR", "TERM")}
    full.update({"PYTHONIOENCODING": "utf-8", "TERM": "xterm", **env})
    if not tty:
        done = subprocess.run(
            [sys.executable, str(script), style], capture_output=True, env=full, timeout=60, check=True
        )
        return done.stdout.decode("utf-8")
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, str(script), style], stdout=slave, stderr=slave, env=full)
    os.close(slave)
    chunks: list[bytes] = []
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 60)
            if not ready:
                break
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed its end
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
        assert proc.wait(timeout=60) == 0, b"".join(chunks)
    return b"".join(chunks).decode("utf-8").replace("\r\n", "\n")


def _line(name: str, line: int, file: str) -> str:
    return f"{M}{name}{R}() at line {M}{line}{R} [{M}{file}{R}]"


def _at(text: str) -> int:
    """The line number of the script's line starting (stripped) with ``text``."""
    (found,) = [i for i, line in enumerate(SCRIPT.splitlines(), 1) if line.strip().startswith(text)]
    return found


def test_terminal_gets_colour_and_library_frames_dimmed(tmp_path: Path) -> None:
    out = _run(tmp_path, {}, tty=True)
    lines = out.splitlines()
    assert lines[0] == "↑ " + _line("lib", _at("print_trace("), "colour_app.py")
    assert lines[1].startswith(f"  ↑ {D}__aenter__() at line ")
    assert lines[1].endswith(f" [contextlib.py]{R}")
    assert lines[2] == "    ↑ " + _line("worker", _at("async with lib()"), "colour_app.py")
    assert lines[3] == "      ↑ " + _line("main", _at("await asyncio.create_task(worker()"), "colour_app.py")
    assert lines[4] == "        ↑ Task-1"
    assert lines[-1] == "END"


def test_traceback_style_on_a_terminal(tmp_path: Path) -> None:
    out = _run(tmp_path, {}, tty=True, style="traceback")
    script = tmp_path / "colour_app.py"
    assert f'  File "{M}{script}{R}", line {M}{_at("print_trace(")}{R}, in {M}lib{R}\n' in out
    assert f"  {D}File " in out  # contextlib's frame, dimmed, with its source line
    assert "\n    " + D in out


@pytest.mark.parametrize(
    ("env", "tty", "coloured"),
    [
        ({}, False, False),  # a pipe
        ({"NO_COLOR": "1"}, True, False),
        ({"NO_COLOR": ""}, True, False),  # set at all
        ({"PYTHON_COLORS": "0"}, True, False),
        ({"PYTHON_COLORS": "0", "FORCE_COLOR": "1"}, True, False),
        ({"PYTHON_COLORS": "1", "NO_COLOR": "1"}, False, True),  # PYTHON_COLORS wins, even on a pipe
        ({"FORCE_COLOR": "1"}, False, True),
        ({"FORCE_COLOR": "1", "NO_COLOR": "1"}, False, False),  # NO_COLOR before FORCE_COLOR
        ({"TERM": "dumb"}, True, False),
    ],
)
def test_environment_variables(tmp_path: Path, env: dict[str, str], tty: bool, coloured: bool) -> None:
    out = _run(tmp_path, env, tty=tty)
    assert out.endswith("END\n")
    assert ("\x1b[" in out) is coloured, out


def test_files_and_string_streams_stay_plain(monkeypatch: pytest.MonkeyPatch) -> None:
    assert can_colorize(io.StringIO()) is False
    monkeypatch.setenv("FORCE_COLOR", "1")
    assert can_colorize(io.StringIO()) is True  # forced: as CPython's
    monkeypatch.setenv("PYTHON_COLORS", "0")
    assert can_colorize(io.StringIO()) is False
