"""The pytest plugin: small leaking suites run by pytest in a subprocess; each report names the test line.

Every suite runs in a fresh pytest (``pytester.runpytest_subprocess``) that
loads the plugin's entry point module with ``-p async_trace_pytest`` and
imports this checkout's ``async_trace`` (``PYTHONPATH``). Line numbers are
found in the suites' source by their ``# marker`` comments.
"""

from __future__ import annotations

import re
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from .doc_blocks import doc_block

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent

INI = """
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
asyncio_default_test_loop_scope = function
"""

#: Runs pytest on the suite written to pytester's directory: ``run(*args)``.
Run = Callable[..., pytest.RunResult]


@pytest.fixture
def run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Run:
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.setenv("PYTHONIOENCODING", "utf-8")
    for name in ("PYTEST_ADDOPTS", "PYTEST_PLUGINS", "ASYNC_TRACE_STALL_THRESHOLD"):
        monkeypatch.delenv(name, raising=False)

    def run(*args: str, plugin: bool = True) -> pytest.RunResult:
        load = ["-p", "async_trace_pytest"] if plugin else []
        return pytester.runpytest_subprocess(*load, "-p", "no:cacheprovider", *args, timeout=120)

    return run


def write(pytester: pytest.Pytester, name: str, source: str) -> str:
    """Write ``name`` (a .py file) to the suite's directory; returns the source."""
    text = textwrap.dedent(source).lstrip()
    (pytester.path / name).write_text(text, encoding="utf-8")
    return text


def at(source: str, marker: str) -> int:
    """The number of the one line of ``source`` holding ``# marker``."""
    hits = [i for i, line in enumerate(source.splitlines(), 1) if line.rstrip().endswith(f"# {marker}")]
    assert len(hits) == 1, (marker, hits)
    return hits[0]


def teardown_report(result: pytest.RunResult, test: str) -> list[str]:
    """The lines pytest prints under ``ERROR at teardown of TEST``, up to the next section."""
    header = re.compile(rf"^_+ ERROR at teardown of {re.escape(test)} _+$")
    lines = result.outlines
    starts = [i for i, line in enumerate(lines) if header.match(line)]
    assert len(starts) == 1, (test, result.stdout.str())
    out: list[str] = []
    for line in lines[starts[0] + 1 :]:
        if line.startswith(("___", "===", "---")):
            break
        out.append(line)
    while out and not out[-1].strip():
        out.pop()
    return out


def errored(result: pytest.RunResult) -> list[str]:
    """The tests reported as ``ERROR at teardown``, in order."""
    found = (re.match(r"^_+ ERROR at teardown of (\S+) _+$", line) for line in result.outlines)
    return [match.group(1) for match in found if match]


LEAKS = """
import asyncio
import contextlib
import threading

import pytest


async def sleeper():
    await asyncio.sleep(10)  # sleeper waits


def tick():
    pass


def hold(stop):
    stop.wait(2)  # hold waits


@pytest.fixture
async def background():
    asyncio.create_task(sleeper(), name="from-fixture")  # fixture creates
    yield


@pytest.fixture(scope="session")
def session_thread():
    stop = threading.Event()
    thread = threading.Thread(target=hold, args=(stop,), name="session", daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join()


async def test_task():
    asyncio.create_task(sleeper(), name="leaky")  # test creates


async def test_timer():
    asyncio.get_running_loop().call_later(100, tick)  # test arms


async def test_fixture_task(background):
    await asyncio.sleep(0)


async def test_thread():
    threading.Thread(target=hold, args=(threading.Event(),), name="stuck", daemon=True).start()  # test starts


def test_sync_thread():
    threading.Thread(target=hold, args=(threading.Event(),), name="sync", daemon=True).start()  # sync starts


def test_session_thread_is_no_leftover(session_thread):
    pass


def test_asyncio_run():
    async def main():
        asyncio.create_task(sleeper(), name="in-run")  # run creates

    asyncio.run(main())


async def test_clean():
    task = asyncio.create_task(sleeper())
    asyncio.get_running_loop().call_later(100, tick).cancel()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
"""

#: pytest-asyncio runs each async test on asyncio's loop and on uvloop's.
BOTH_LOOPS = """
import asyncio

import uvloop


def pytest_asyncio_loop_factories(config, item):
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
"""


def _normalized(lines: list[str]) -> list[str]:
    """The report with a timer's time to go (``in 99.9 s``) as ``in N s``."""
    return [re.sub(r" in \d+\.\d s;", " in N s;", line) for line in lines]


def test_pytest_asyncio_on_both_loops_names_each_line(pytester: pytest.Pytester, run: Run) -> None:
    """A task, a timer and threads left by a test, and a task left by a fixture: each report names the line."""
    pytester.makeini(INI)
    write(pytester, "conftest.py", BOTH_LOOPS)
    src = write(pytester, "test_leaks.py", LEAKS)
    result = run("--async-trace=fail")
    result.assert_outcomes(passed=13, errors=10)
    loops = ("asyncio", "uvloop")
    assert errored(result) == [
        *(
            f"{test}[{loop}]"
            for test in ("test_task", "test_timer", "test_fixture_task", "test_thread")
            for loop in loops
        ),
        "test_sync_thread",
        "test_asyncio_run",
    ]
    for loop in loops:
        assert teardown_report(result, f"test_task[{loop}]") == [
            f"async-trace: 1 report at the end of test_leaks.py::test_task[{loop}]:",
            "- task 'leaky' of test_leaks.py::test_task still pending when its event loop closed, "
            f"waiting in sleeper() at line {at(src, 'sleeper waits')} [test_leaks.py]; created at:",
            f"      ↑ test_task() at line {at(src, 'test creates')} [test_leaks.py]",
        ]
        assert _normalized(teardown_report(result, f"test_timer[{loop}]")) == [
            f"async-trace: 1 report at the end of test_leaks.py::test_timer[{loop}]:",
            "- timer of test_leaks.py::test_timer still armed when its event loop closed, "
            "to call tick() in N s; armed at:",
            f"      ↑ test_timer() at line {at(src, 'test arms')} [test_leaks.py]",
        ]
        assert teardown_report(result, f"test_fixture_task[{loop}]") == [
            f"async-trace: 1 report at the end of test_leaks.py::test_fixture_task[{loop}]:",
            "- task 'from-fixture' of fixture 'background' still pending when its event loop closed, "
            f"waiting in sleeper() at line {at(src, 'sleeper waits')} [test_leaks.py]; created at:",
            f"      ↑ background() at line {at(src, 'fixture creates')} [test_leaks.py]",
        ]
        assert teardown_report(result, f"test_thread[{loop}]") == [
            f"async-trace: 1 report at the end of test_leaks.py::test_thread[{loop}]:",
            "- thread 'stuck' (daemon) of test_leaks.py::test_thread still running, "
            f"now in hold() at line {at(src, 'hold waits')} [test_leaks.py]; started at:",
            f"      ↑ test_thread() at line {at(src, 'test starts')} [test_leaks.py]",
        ]
    assert teardown_report(result, "test_asyncio_run") == [
        "async-trace: 1 report at the end of test_leaks.py::test_asyncio_run:",
        "- task 'in-run' of test_leaks.py::test_asyncio_run still pending when its event loop closed, "
        f"waiting in sleeper() at line {at(src, 'sleeper waits')} [test_leaks.py]; created at:",
        f"      ↑ main() at line {at(src, 'run creates')} [test_leaks.py]",
    ]
    assert teardown_report(result, "test_sync_thread") == [
        "async-trace: 1 report at the end of test_leaks.py::test_sync_thread:",
        "- thread 'sync' (daemon) of test_leaks.py::test_sync_thread still running, "
        f"now in hold() at line {at(src, 'hold waits')} [test_leaks.py]; started at:",
        f"      ↑ test_sync_thread() at line {at(src, 'sync starts')} [test_leaks.py]",
    ]


ANYIO = """
import asyncio
import threading
import time

import pytest

pytestmark = pytest.mark.anyio


@pytest.fixture(params=[("asyncio", {}), ("asyncio", {"use_uvloop": True})], ids=["asyncio", "uvloop"])
def anyio_backend(request):
    return request.param


async def sleeper():
    await asyncio.sleep(10)  # sleeper waits


def tick():
    pass


def hold(stop):
    stop.wait(2)  # hold waits


async def test_task():
    asyncio.create_task(sleeper(), name="leaky")  # test creates


async def test_timer():
    asyncio.get_running_loop().call_later(100, tick)  # test arms


async def test_thread():
    threading.Thread(target=hold, args=(threading.Event(),), name="stuck", daemon=True).start()  # test starts


def block():
    time.sleep(0.3)  # blocks


async def test_blocks():
    await asyncio.sleep(0.05)
    block()  # test blocks
    await asyncio.sleep(0.05)


@pytest.mark.async_trace(stall=0)
async def test_blocks_unwatched():
    await asyncio.sleep(0.05)
    block()
    await asyncio.sleep(0.05)
"""


def test_anyio_plugin_on_asyncio_and_uvloop(pytester: pytest.Pytester, run: Run) -> None:
    """anyio's plugin alone (pytest-asyncio off), both loops: task, timer, thread and a stall, each by its line."""
    pytester.makeini("[pytest]\n")
    src = write(pytester, "test_anyio_leaks.py", ANYIO)
    result = run("-p", "no:asyncio", "--async-trace=fail", "--async-trace-stall=0.1")
    result.assert_outcomes(passed=10, errors=8)
    for loop in ("asyncio", "uvloop"):
        assert teardown_report(result, f"test_task[{loop}]") == [
            f"async-trace: 1 report at the end of test_anyio_leaks.py::test_task[{loop}]:",
            "- task 'leaky' of test_anyio_leaks.py::test_task still pending when its event loop closed, "
            f"waiting in sleeper() at line {at(src, 'sleeper waits')} [test_anyio_leaks.py]; created at:",
            f"      ↑ test_task() at line {at(src, 'test creates')} [test_anyio_leaks.py]",
        ]
        assert _normalized(teardown_report(result, f"test_timer[{loop}]")) == [
            f"async-trace: 1 report at the end of test_anyio_leaks.py::test_timer[{loop}]:",
            "- timer of test_anyio_leaks.py::test_timer still armed when its event loop closed, "
            "to call tick() in N s; armed at:",
            f"      ↑ test_timer() at line {at(src, 'test arms')} [test_anyio_leaks.py]",
        ]
        assert teardown_report(result, f"test_thread[{loop}]") == [
            f"async-trace: 1 report at the end of test_anyio_leaks.py::test_thread[{loop}]:",
            "- thread 'stuck' (daemon) of test_anyio_leaks.py::test_thread still running, "
            f"now in hold() at line {at(src, 'hold waits')} [test_anyio_leaks.py]; started at:",
            f"      ↑ test_thread() at line {at(src, 'test starts')} [test_anyio_leaks.py]",
        ]
        stall = teardown_report(result, f"test_blocks[{loop}]")
        assert stall[0] == f"async-trace: 1 report at the end of test_anyio_leaks.py::test_blocks[{loop}]:"
        assert re.fullmatch(
            r"- event loop blocked for 0\.\d{3} s \(threshold 0\.1 s, blocking\), in task '[^']+' "
            r"of test_anyio_leaks\.py::test_blocks; at:",
            stall[1],
        ), stall[1]
        assert 0.25 <= float(stall[1].split()[5]) < 1.0
        assert stall[2:] == [
            f"      ↑ block() at line {at(src, 'blocks')} [test_anyio_leaks.py]",
            f"        ↑ test_blocks() at line {at(src, 'test blocks')} [test_anyio_leaks.py]",
        ]
    assert "test_blocks_unwatched" not in " ".join(errored(result))


SHARED_LOOP = """
import asyncio

import pytest

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def sleeper():
    await asyncio.sleep(10)  # sleeper waits


async def test_leaves_a_task():
    asyncio.create_task(sleeper(), name="shared")  # test creates


async def test_after():
    await asyncio.sleep(0)
"""


def test_a_loop_shared_by_tests_is_checked_at_each_test_end(pytester: pytest.Pytester, run: Run) -> None:
    """On a module-scoped loop the task is reported at the end of the test that created it, and once only."""
    pytester.makeini(INI)
    src = write(pytester, "test_shared.py", SHARED_LOOP)
    result = run("--async-trace=fail")
    result.assert_outcomes(passed=2, errors=1)
    assert errored(result) == ["test_leaves_a_task"]
    assert teardown_report(result, "test_leaves_a_task") == [
        "async-trace: 1 report at the end of test_shared.py::test_leaves_a_task:",
        "- task 'shared' of test_shared.py::test_leaves_a_task still pending, "
        f"waiting in sleeper() at line {at(src, 'sleeper waits')} [test_shared.py]; created at:",
        f"      ↑ test_leaves_a_task() at line {at(src, 'test creates')} [test_shared.py]",
    ]


LATE = """
import asyncio
import gc

import pytest

kept = None


async def stubborn():
    try:
        await asyncio.sleep(10)  # stubborn waits
    finally:
        await asyncio.sleep(0)


async def boom():
    raise ValueError("lost")


def test_a():
    global kept
    loop = asyncio.new_event_loop()

    async def main():
        global kept
        kept = loop.create_task(stubborn(), name="stubborn")  # main creates
        await asyncio.sleep(0)

    loop.run_until_complete(main())
    loop.close()


def test_b():
    global kept
    kept = None
    gc.collect()


@pytest.mark.asyncio(loop_scope="module")
async def test_c():
    global kept
    kept = asyncio.create_task(boom(), name="failing")  # c creates
    await asyncio.sleep(0)


@pytest.mark.asyncio(loop_scope="module")
async def test_d():
    global kept
    kept = None
    gc.collect()


@pytest.mark.async_trace(allow=["test_late:stubborn"])
def test_e():
    global kept
    loop = asyncio.new_event_loop()

    async def main():
        global kept
        kept = (loop, loop.create_task(stubborn(), name="allowed-here"))  # e creates
        await asyncio.sleep(0)

    loop.run_until_complete(main())


def test_f():
    global kept
    loop = kept[0]
    kept = None
    loop.close()
    gc.collect()
"""


def test_lost_tasks_are_reported_in_the_later_test_naming_the_test_that_created_them(
    pytester: pytest.Pytester, run: Run
) -> None:
    """ "Destroyed but pending", "never retrieved" and the unraisable close name the test whose line made the task."""
    pytester.makeini(INI)
    src = write(pytester, "test_late.py", LATE)
    result = run("--async-trace=fail", "-W", "ignore::pytest.PytestUnraisableExceptionWarning")
    result.assert_outcomes(passed=6, errors=4)
    assert errored(result) == ["test_a", "test_b", "test_d", "test_f"]
    assert teardown_report(result, "test_a") == [
        "async-trace: 1 report at the end of test_late.py::test_a:",
        "- task 'stubborn' of test_late.py::test_a still pending when its event loop closed, "
        f"waiting in stubborn() at line {at(src, 'stubborn waits')} [test_late.py]; created at:",
        f"      ↑ main() at line {at(src, 'main creates')} [test_late.py]",
    ]
    # Reported pending already: "destroyed" is not said again, but closing its coroutine raised.
    assert teardown_report(result, "test_b")[:3] == [
        "async-trace: 1 report at the end of test_late.py::test_b:",
        "- unraisable exception in stubborn() (RuntimeError: coroutine ignored GeneratorExit), "
        "of task 'stubborn' of test_late.py::test_a, created at:",
        f"      ↑ main() at line {at(src, 'main creates')} [test_late.py]",
    ]
    assert teardown_report(result, "test_d")[:3] == [
        "async-trace: 1 report at the end of test_late.py::test_d:",
        "- 'Task exception was never retrieved' (ValueError: lost) for task 'failing' of test_late.py::test_c, "
        "created at:",
        f"      ↑ test_c() at line {at(src, 'c creates')} [test_late.py]",
    ]
    assert teardown_report(result, "test_f")[:5] == [
        "async-trace: 2 reports at the end of test_late.py::test_f:",
        "- 'Task was destroyed but it is pending!' for task 'allowed-here' of test_late.py::test_e, created at:",
        f"      ↑ main() at line {at(src, 'e creates')} [test_late.py]",
        "- unraisable exception in stubborn() (RuntimeError: coroutine ignored GeneratorExit), "
        "of task 'allowed-here' of test_late.py::test_e, created at:",
        f"      ↑ main() at line {at(src, 'e creates')} [test_late.py]",
    ]


MODES = """
import asyncio

import pytest


async def sleeper():
    await asyncio.sleep(10)  # sleeper waits


async def job():
    await asyncio.sleep(10)


async def test_warns():
    asyncio.create_task(sleeper(), name="warned")  # warns


@pytest.mark.async_trace("off")
async def test_off():
    asyncio.create_task(sleeper(), name="ignored")


@pytest.mark.async_trace("fail")
async def test_fails():
    asyncio.create_task(sleeper(), name="failed")  # fails


@pytest.mark.async_trace(allow=["test_modes:sleeper"])
async def test_allowed_by_marker():
    asyncio.create_task(sleeper(), name="allowed")


async def test_allowed_by_ini():
    asyncio.create_task(job(), name="allowed-too")
"""


def test_modes_markers_and_allow_lists(pytester: pytest.Pytester, run: Run) -> None:
    """ini mode ``warn`` warns; a marker turns one test off or to ``fail``; marker and ini allow-lists hold."""
    pytester.makeini(
        INI
        + "async_trace = warn\n"
        + "async_trace_allow =\n"
        + "    test_modes:job  the suite's own background job, stopped at exit\n"
    )
    src = write(pytester, "test_modes.py", MODES)
    result = run()
    result.assert_outcomes(passed=5, errors=1, warnings=1)
    assert errored(result) == ["test_fails"]
    assert teardown_report(result, "test_fails")[1:] == [
        "- task 'failed' of test_modes.py::test_fails still pending when its event loop closed, "
        f"waiting in sleeper() at line {at(src, 'sleeper waits')} [test_modes.py]; created at:",
        f"      ↑ test_fails() at line {at(src, 'fails')} [test_modes.py]",
    ]
    text = result.stdout.str()
    assert (
        f"test_modes.py:{at(src, 'warns') - 1}: LeftoverWarning: "
        "async-trace: 1 report at the end of test_modes.py::test_warns:\n"
        "  - task 'warned' of test_modes.py::test_warns still pending when its event loop closed, "
        f"waiting in sleeper() at line {at(src, 'sleeper waits')} [test_modes.py]; created at:\n"
        f"        ↑ test_warns() at line {at(src, 'warns')} [test_modes.py]\n"
    ) in text
    for quiet in ("ignored", "allowed", "allowed-too"):
        assert f"'{quiet}'" not in text


def test_a_bad_marker_is_a_usage_error(pytester: pytest.Pytester, run: Run) -> None:
    """A marker with an unknown mode stops the run before any test, saying which test and why."""
    pytester.makeini(INI)
    write(pytester, "test_bad.py", "import pytest\n\n@pytest.mark.async_trace('loud')\ndef test_x():\n    pass\n")
    result = run("--async-trace=warn")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "ERROR: test_bad.py::test_x: async_trace marker: mode must be one of off, warn, fail, not 'loud'" in (
        result.stderr.str()
    )


NOTE = """
import asyncio

import async_trace  # noqa: F401  (the plugin off: today's note, from the package alone)


async def boom():
    await asyncio.sleep(0)
    raise ValueError("bad")


async def spawn():
    return asyncio.create_task(boom(), name="boom")  # spawn creates


async def test_fails():
    await (await spawn())  # awaits
"""


def _note(result: pytest.RunResult) -> list[str]:
    """The ``E`` lines after ``ValueError: bad``, with the root task's number as ``N``."""
    lines = [line.removeprefix("E").strip() for line in result.outlines if line.startswith("E ")]
    start = lines.index("ValueError: bad")
    return [re.sub(r"'Task-\d+'", "'Task-N'", line) for line in lines[start + 1 :]]


def test_failure_note_leaves_out_frames_pytest_shows(pytester: pytest.Pytester, run: Run) -> None:
    """The async-trace note of a failure keeps the lines pytest does not show, and says how many it left out."""
    pytester.makeini(INI)
    src = write(pytester, "test_note.py", NOTE)
    path = pytester.path / "test_note.py"
    lines = src.splitlines()
    spawn_lines = [
        f'File "{path}", line {at(src, "spawn creates")}, in spawn',
        lines[at(src, "spawn creates") - 1].strip(),
        "--- task 'boom' created here ---",
    ]
    on = run("--async-trace=fail")
    on.assert_outcomes(failed=1)
    off = run()
    off.assert_outcomes(failed=1)
    if sys.version_info[:2] == (3, 11):
        # 3.11 looks for the origin when the exception is printed; pytest prints it after the
        # test, and the search finds none there: no note, with or without the plugin (as today).
        assert _note(on) == _note(off) == []
        return
    assert _note(on) == [
        "Async trace (most recent call last):",
        "Root task 'Task-N'",
        "... 1 frame shown in the traceback above ...",
        *spawn_lines,
    ]
    assert _note(off) == [
        "Async trace (most recent call last):",
        "Root task 'Task-N'",
        f'File "{path}", line {at(src, "awaits")}, in test_fails',
        lines[at(src, "awaits") - 1].strip(),
        *spawn_lines,
    ]


OFF = """
import asyncio
import sys
import threading


async def sleeper():
    await asyncio.sleep(10)


async def test_task():
    asyncio.create_task(sleeper())


def test_thread():
    threading.Thread(target=threading.Event().wait, args=(1,), daemon=True).start()


def test_async_trace_is_not_imported():
    assert "async_trace" not in sys.modules
"""


def test_off_by_default_imports_nothing_and_changes_no_outcome(pytester: pytest.Pytester, run: Run) -> None:
    """Loaded but not asked for (no option or ini setting, or ``off``), the plugin imports and reports nothing."""
    pytester.makeini(INI)
    write(pytester, "test_off.py", OFF)
    without = run(plugin=False)
    without.assert_outcomes(passed=3)
    for args in ((), ("--async-trace=off",)):
        result = run(*args)
        result.assert_outcomes(passed=3)
        # The header names installed plugins ("plugins: async-trace-0.2.0, ..." once the entry point is
    # registered); nothing else may mention us.
    assert [line for line in result.stdout.lines if "async-trace" in line and not line.startswith("plugins:")] == []


def test_entry_point_is_declared() -> None:
    """pyproject.toml registers the top-level entry module under pytest11, by its own name."""
    tomllib = pytest.importorskip("tomllib", reason="tomllib is 3.11+")
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert data["project"]["entry-points"]["pytest11"] == {"async_trace_pytest": "async_trace_pytest"}
    wheel = data["tool"]["hatch"]["build"]["targets"]["wheel"]
    assert wheel["force-include"]["async_trace_pytest.py"] == "async_trace_pytest.py"


def test_docs_page_reports_are_what_pytest_prints(pytester: pytest.Pytester, run: Run) -> None:
    """docs/pytest-plugin.md: the leaking app, its test and the hand-written fixture print what the page shows."""
    pytester.makeini(INI)
    for name in ("app.py", "test_app.py"):
        (pytester.path / name).write_text(doc_block("pytest-source", name), encoding="utf-8")
    ours = run("--async-trace=fail")
    ours.assert_outcomes(passed=1, errors=1)
    assert teardown_report(ours, "test_get") == doc_block("pytest-output", "async-trace").splitlines()
    # The hand-written fixture, without the plugin: paths as the page shows them.
    (pytester.path / "conftest.py").write_text(doc_block("pytest-source", "conftest.py"), encoding="utf-8")
    theirs = run(plugin=False)
    theirs.assert_outcomes(passed=1, errors=1)
    failed = [line.replace(str(pytester.path), "/work/project") for line in theirs.outlines if "Failed:" in line]
    assert failed[:1] == doc_block("pytest-output", "fixture").splitlines()


FAILSAFE = """
import asyncio

import async_trace.pytest_plugin


def broken(*args, **kwargs):
    raise RuntimeError("broken on purpose")


async_trace.pytest_plugin.chain_trace = broken


async def sleeper():
    await asyncio.sleep(10)


async def test_leaks_while_the_plugin_is_broken():
    asyncio.create_task(sleeper())


async def test_next():
    await asyncio.sleep(0)
"""


def test_an_internal_failure_warns_once_and_the_run_goes_on(pytester: pytest.Pytester, run: Run) -> None:
    """The plugin failing inside says so once (AsyncTraceWarning) and reports nothing; every test passes."""
    pytester.makeini(INI)
    write(pytester, "test_failsafe.py", FAILSAFE)
    result = run("--async-trace=fail")
    result.assert_outcomes(passed=2, warnings=1)
    result.stdout.fnmatch_lines(
        [
            "*AsyncTraceWarning: async_trace: internal error while reporting what a test left behind "
            "(RuntimeError: broken on purpose); this call falls back to untraced behaviour*",
        ]
    )
