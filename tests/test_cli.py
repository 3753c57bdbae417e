"""``python -m async_trace``: runs a script or module traced from its first line, as Python would run it."""

from __future__ import annotations

import json
import linecache
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from async_trace.__main__ import build_parser

from .helpers import run_python

HEADER = "Async trace (most recent call last):"
MONITORING = sys.version_info >= (3, 12)


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -m async_trace ARGS`` in ``cwd``."""
    return run_python("-m", "async_trace", *args, cwd=cwd)


def write(path: Path, source: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    return path


def marker_line(path: Path, marker: str) -> int:
    hits = [i for i, line in enumerate(path.read_text().splitlines(), 1) if line.rstrip().endswith(f"# {marker}")]
    assert len(hits) == 1, marker
    return hits[0]


def source(path: Path, line: int) -> str:
    linecache.checkcache(str(path))
    return linecache.getline(str(path), line).strip()


REPORT = """\
    import json
    import sys

    print(json.dumps({"argv": sys.argv, "path0": sys.path[0], "name": __name__, "file": __file__}))
    sys.exit(int(sys.argv[-1]) if sys.argv[-1].isdigit() else 0)
"""


def test_script_gets_its_arguments_path_and_exit_status(tmp_path: Path) -> None:
    """sys.argv is [script, args...], sys.path[0] its directory, __name__ "__main__"; its exit status is ours."""
    script = write(tmp_path / "app" / "report.py", REPORT)
    result = cli("app/report.py", "--style", "x", "-m", "y", "3", cwd=tmp_path)
    assert result.returncode == 3
    assert result.stderr == ""
    assert json.loads(result.stdout) == {
        "argv": ["app/report.py", "--style", "x", "-m", "y", "3"],
        "path0": str(script.parent.resolve()),
        "name": "__main__",
        "file": str(script),
    }


def test_module_gets_its_arguments_and_exit_status(tmp_path: Path) -> None:
    """-m pkg.mod runs it as __main__ with sys.argv[0] its file and the working directory first on sys.path."""
    write(tmp_path / "pkg" / "__init__.py", "")
    module = write(tmp_path / "pkg" / "report.py", REPORT)
    result = cli("-m", "pkg.report", "a", "--b", "4", cwd=tmp_path)
    assert result.returncode == 4
    assert result.stderr == ""
    report = json.loads(result.stdout)
    assert report["argv"] == [str(module), "a", "--b", "4"]
    assert report["name"] == "__main__"
    assert os.path.realpath(report["path0"] or ".") == os.path.realpath(tmp_path)


def test_output_is_the_programs_own(tmp_path: Path) -> None:
    """stdout and stderr pass through untouched; a normal end is status 0."""
    write(tmp_path / "io.py", 'import sys\nprint("out")\nprint("err", file=sys.stderr)\n')
    result = cli("io.py", cwd=tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, "out\n", "err\n")


TRACED = """\
    import asyncio

    from async_trace import print_trace


    async def worker():
        print_trace()  # here


    async def main():
        await asyncio.create_task(worker())  # spawn


    asyncio.run(main())
"""


def test_tracing_is_on_from_the_first_line(tmp_path: Path) -> None:
    """A program that never enables tracing gets full traces (tasks created by its first lines included)."""
    script = write(tmp_path / "traced.py", TRACED)
    result = cli("traced.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        f"↑ worker() at line {marker_line(script, 'here')} [traced.py]\n"
        f"  ↑ main() at line {marker_line(script, 'spawn')} [traced.py]\n"
        "    ↑ Task-1\n"
    )


CRASH = """\
    import asyncio


    async def worker():
        raise ValueError("crashed")  # raise


    async def main():
        t = asyncio.create_task(worker(), name="worker")  # spawn
        await t


    asyncio.run(main())  # run
"""


def test_crash_prints_the_traceback_from_the_program_and_its_async_origin(tmp_path: Path) -> None:
    """Status 1; the traceback starts at the program (no runpy, no async_trace frames) and ends with the chain."""
    script = write(tmp_path / "crash.py", CRASH)
    result = cli("crash.py", cwd=tmp_path)
    run, spawn = marker_line(script, "run"), marker_line(script, "spawn")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith(f'Traceback (most recent call last):\n  File "{script}", line {run}, in <module>\n')
    assert result.stderr.endswith(
        "ValueError: crashed\n"
        f"{HEADER}\n"
        "  Root task 'Task-1'\n"
        f'  File "{script}", line {spawn}, in main\n'
        f"    {source(script, spawn)}\n"
        "  --- task 'worker' created here ---\n"
    )
    assert "runpy" not in result.stderr
    assert "async_trace" not in result.stderr


def test_style_arrows(tmp_path: Path) -> None:
    """--style arrows prints the async origin innermost first, with the README's arrows."""
    script = write(tmp_path / "crash.py", CRASH)
    result = cli("--style", "arrows", "crash.py", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.endswith(
        f"ValueError: crashed\nAsync trace:\n↑ main() at line {marker_line(script, 'spawn')} [crash.py]\n  ↑ Task-1\n"
    )


CHECK_NOTES = """\
    import asyncio


    async def worker():
        raise ValueError("noted")


    async def main():
        try:
            await asyncio.create_task(worker())
        except ValueError as exc:
            print(len(getattr(exc, "__notes__", [])))


    asyncio.run(main())
"""


@pytest.mark.skipif(not MONITORING, reason="eager notes need sys.monitoring, 3.12+")
def test_notes_are_eager_under_the_cli(tmp_path: Path) -> None:
    """Under the CLI the note is in __notes__ as soon as the exception leaves its task, before any print."""
    write(tmp_path / "notes.py", CHECK_NOTES)
    result = cli("notes.py", cwd=tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, "1\n", "")


def test_module_crash(tmp_path: Path) -> None:
    """A crashing module: status 1 and the chain, as for a script."""
    module = write(tmp_path / "pkg" / "crash.py", CRASH)
    write(tmp_path / "pkg" / "__init__.py", "")
    result = cli("-m", "pkg.crash", cwd=tmp_path)
    spawn = marker_line(module, "spawn")
    assert result.returncode == 1
    assert result.stderr.endswith(
        f'  File "{module}", line {spawn}, in main\n'
        f"    {source(module, spawn)}\n"
        "  --- task 'worker' created here ---\n"
    )


def test_system_exit_from_a_task_keeps_its_status(tmp_path: Path) -> None:
    """sys.exit() inside asyncio.run exits with its status and prints nothing."""
    write(tmp_path / "quit.py", "import asyncio, sys\nasync def main():\n    sys.exit(7)\nasyncio.run(main())\n")
    result = cli("quit.py", cwd=tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (7, "", "")


def test_help(tmp_path: Path) -> None:
    """--help prints the usage and the options, status 0."""
    result = cli("--help", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.startswith("usage: python -m async_trace [options] (script.py | -m module) [args ...]\n")
    assert "--style {arrows,traceback}" in result.stdout


def test_no_program_is_a_usage_error(tmp_path: Path) -> None:
    """Without a script or -m module: the usage and status 2."""
    result = cli(cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.endswith("python -m async_trace: error: a script or -m module is required\n")


def test_unknown_style_is_a_usage_error(tmp_path: Path) -> None:
    """A --style that does not exist is rejected before anything runs."""
    result = cli("--style", "json", "x.py", cwd=tmp_path)
    assert result.returncode == 2
    assert "invalid choice: 'json'" in result.stderr


def test_missing_script(tmp_path: Path) -> None:
    """A script that does not exist: a one-line message and status 2, as python says it."""
    result = cli("nope.py", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == ("python -m async_trace: can't open file 'nope.py': [Errno 2] No such file or directory\n")


def test_missing_module(tmp_path: Path) -> None:
    """A module that does not exist: a one-line message and status 1, as python -m says it."""
    result = cli("-m", "no_such_module_here", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr == "python -m async_trace: No module named no_such_module_here\n"


def test_parser_value_options_are_skipped_when_finding_the_program() -> None:
    """An option's value is never taken for the script: `--style arrows app.py` runs app.py."""
    from async_trace.__main__ import _split

    parser = build_parser()
    assert _split(parser, ["--style", "arrows", "app.py", "--style", "x"]) == (
        ["--style", "arrows"],
        "app.py",
        None,
        ["--style", "x"],
    )
    assert _split(parser, ["--style=arrows", "-m", "pkg.mod", "-m"]) == (["--style=arrows"], None, "pkg.mod", ["-m"])
    assert _split(parser, ["--", "-weird.py", "a"]) == ([], "-weird.py", None, ["a"])


SETTINGS = """\
import sys
from async_trace import _config
tools = [t for t in (3, 4) if sys.version_info >= (3, 12) and sys.monitoring.get_tool(t) == "async_trace"]
print((_config.settings.eager_notes, _config.settings.record_origins), tools)
"""


def test_no_record_origins(tmp_path: Path) -> None:
    """--no-record-origins: no unwind hook (3.12+) and no eager notes; by default both are on.

    3.10/3.11 have no unwind hook: the command line leaves eager notes off there (they record from a
    done callback per task, and add notes there only with ``enable_tracing(eager_notes=True)``).
    """
    write(tmp_path / "settings.py", SETTINGS)
    monitoring = sys.version_info >= (3, 12)
    hooked = "[4]" if monitoring else "[]"
    default = cli("settings.py", cwd=tmp_path)
    assert (default.returncode, default.stdout, default.stderr) == (0, f"({monitoring}, True) {hooked}\n", "")
    off = cli("--no-record-origins", "settings.py", cwd=tmp_path)
    assert (off.returncode, off.stdout, off.stderr) == (0, "(False, False) []\n", "")
