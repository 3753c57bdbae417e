"""Exceptions carry their async origin: loop reports, top-level crashes, logging, notes, format_exception."""

from __future__ import annotations

import asyncio
import asyncio.base_events
import copy
import io
import linecache
import logging
import pickle
import re
import subprocess
import sys
import textwrap
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import async_trace
from async_trace import (
    TraceData,
    _config,
    _display,
    _exceptions,
    _render,
    exception_trace,
    format_exception,
    print_exception,
)

from .helpers import line_of, run_python

HEADER = "Async trace (most recent call last):"
FILE_LINE = re.compile(r'File "(.+)", line (\d+), in (\S+)')
NOTES = sys.version_info >= (3, 11)
MONITORING = sys.version_info >= (3, 12)


# --- helpers ------------------------------------------------------------------

#: ``(line, function, separator or None)``, outermost first.
Hop = tuple[int, str, "str | None"]


def task_sep(name: str) -> str:
    return f"  --- task {name!r} created here ---"


EXECUTOR_SEP = "  --- executor thread started here ---"


def block(path: str, root: str, hops: list[Hop]) -> str:
    """The traceback-style async trace a note (or a task_trace entry) holds."""
    lines = [HEADER, f"  Root task {root!r}"]
    for line, func, sep in hops:
        lines.append(f'  File "{path}", line {line}, in {func}')
        lines.append(f"    {linecache.getline(path, line).strip()}")
        if sep is not None:
            lines.append(sep)
    return "\n".join(lines)


def marker_line(text: str, marker: str) -> int:
    """The 1-based line of ``text`` holding ``# marker``."""
    hits = [i for i, line in enumerate(text.splitlines(), 1) if line.rstrip().endswith(f"# {marker}")]
    assert len(hits) == 1, marker
    return hits[0]


def run_script(tmp_path: Path, source: str) -> tuple[str, subprocess.CompletedProcess[str]]:
    """Write ``source`` to a file and run it in a fresh interpreter; return its path and the result."""
    path = tmp_path / "crash.py"
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    return str(path), run_python(str(path), cwd=tmp_path)


def script_block(path: str, root: str, hops: list[tuple[str, str, str | None]]) -> str:
    """``block`` with lines found by marker in the script at ``path``."""
    text = Path(path).read_text(encoding="utf-8")
    linecache.checkcache(path)
    return block(path, root, [(marker_line(text, marker), func, sep) for marker, func, sep in hops])


# --- failure paths, each in a fresh interpreter ---------------------------------------

DEEP = """\
    import asyncio
    import gc

    import async_trace


    async def level4():
        raise ValueError("four deep")  # raise


    async def level3():
        asyncio.create_task(level4(), name="L4")  # spawn-4
        await asyncio.sleep(0.1)


    async def level2():
        t = asyncio.create_task(level3(), name="L3")  # spawn-3
        await t


    async def level1():
        t = asyncio.create_task(level2(), name="L2")  # spawn-2
        await t


    async def main():
        t = asyncio.create_task(level1(), name="L1")  # spawn-1
        await t
        gc.collect()


    asyncio.run(main())
"""


def _on_uvloop(source: str, late: bool = False) -> str:
    """``source`` run on uvloop, imported before async_trace (or after it, ``late``)."""
    pytest.importorskip("uvloop")
    if late:
        source = source.replace("    import async_trace\n", "    import async_trace\n\n    import uvloop\n")
    else:
        source = source.replace("    import async_trace\n", "    import uvloop\n\n    import async_trace\n")
    # Not uvloop.run(): its own wrapper coroutine would be a frame of the root task.
    source = source.replace("    asyncio.run(main())\n", "    uvloop.new_event_loop().run_until_complete(main())\n")
    return source.replace("asyncio.new_event_loop()", "uvloop.new_event_loop()")


def _on(loop: str, source: str) -> str:
    return source if loop == "asyncio" else _on_uvloop(source, late=loop == "uvloop-late")


LOOPS = ["asyncio", "uvloop", "uvloop-late"]


@pytest.mark.parametrize("loop", LOOPS)
def test_never_retrieved_four_deep_prints_four_creation_points(tmp_path: Path, loop: str) -> None:
    """'Task exception was never retrieved' shows the four lines that created the four tasks, no debug mode."""
    path, result = run_script(tmp_path, _on(loop, DEEP))
    expected = script_block(
        path,
        "Task-1",
        [
            ("spawn-1", "main", task_sep("L1")),
            ("spawn-2", "level1", task_sep("L2")),
            ("spawn-3", "level2", task_sep("L3")),
            ("spawn-4", "level3", task_sep("L4")),
        ],
    )
    assert result.returncode == 0
    assert result.stderr.startswith("Task exception was never retrieved\nfuture: <Task finished name='L4' ")
    assert result.stderr.endswith(f"ValueError: four deep\n{expected}\n")
    assert result.stderr.count(HEADER) == 1


PROPAGATED = """\
    import asyncio

    import async_trace


    async def inner():
        raise ValueError("out of run")  # raise


    async def middle():
        t = asyncio.create_task(inner(), name="inner")  # spawn-inner
        await t


    async def main():
        t = asyncio.create_task(middle(), name="middle")  # spawn-middle
        await t


    asyncio.run(main())  # run
"""


def test_propagated_out_of_asyncio_run(tmp_path: Path) -> None:
    """A crash at the top level prints the chain right after the exception line, once."""
    path, result = run_script(tmp_path, PROPAGATED)
    expected = script_block(
        path,
        "Task-1",
        [("spawn-middle", "main", task_sep("middle")), ("spawn-inner", "middle", task_sep("inner"))],
    )
    assert result.returncode == 1
    assert result.stderr.startswith("Traceback (most recent call last):\n")
    assert result.stderr.endswith(f"ValueError: out of run\n{expected}\n")
    assert result.stderr.count(HEADER) == 1


CAUGHT = """\
    import asyncio
    import logging
    import sys
    import traceback

    import async_trace

    logging.basicConfig(stream=sys.stdout, format="%(levelname)s %(message)s")


    async def inner():
        raise KeyError("caught later")  # raise


    async def middle():
        t = asyncio.create_task(inner(), name="inner")  # spawn-inner
        await t


    async def main():
        t = asyncio.create_task(middle(), name="middle")  # spawn-middle
        try:
            await t
        except KeyError:
            logging.exception("logged")
            print("--- print_exc")
            traceback.print_exc(file=sys.stdout)


    asyncio.run(main())
"""


#: Taken before async_trace is imported: the unwind hook has no tool id and origins are found at print time.
TOOLS_TAKEN = """\
    import sys

    for tool in (3, 4):
        sys.monitoring.use_tool_id(tool, f"someone else {tool}")
"""


@pytest.mark.parametrize(
    "tools_taken",
    [False, pytest.param(True, marks=pytest.mark.skipif(not MONITORING, reason="sys.monitoring is 3.12+"))],
    ids=["hooks", "no-tool-id"],
)
def test_logged_and_printed_after_being_caught(tmp_path: Path, tools_taken: bool) -> None:
    """logger.exception() and traceback.print_exc() in a catching task both show the chain.

    Also with no ``sys.monitoring`` tool id free: the failed task is found among the live tasks
    (on 3.14+ C tasks are in no Python registry, so through the loops that started traced roots).
    """
    path, result = run_script(tmp_path, (TOOLS_TAKEN if tools_taken else "") + CAUGHT)
    expected = script_block(
        path,
        "Task-1",
        [("spawn-middle", "main", task_sep("middle")), ("spawn-inner", "middle", task_sep("inner"))],
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    logged, printed = result.stdout.split("--- print_exc\n")
    assert logged.startswith("ERROR logged\nTraceback (most recent call last):\n")
    for text in (logged, printed):
        assert text.endswith(f"KeyError: 'caught later'\n{expected}\n")
        assert text.count(HEADER) == 1


CAUGHT_HERE = """\
    import asyncio
    import logging
    import sys
    import traceback

    import async_trace

    logging.basicConfig(stream=sys.stdout, format="%(levelname)s %(message)s")


    async def query():
        raise KeyError("raised two awaits down")  # raise


    async def view():
        await query()


    async def handle():
        try:
            await view()
        except KeyError as exc:
            logging.getLogger("server").exception("Error handling request")
            print("--- print_exc")
            traceback.print_exc(file=sys.stdout)
            print("--- loop handler")
            asyncio.get_running_loop().call_exception_handler({"message": "handler failed", "exception": exc})
            print("--- exception_trace")
            trace = async_trace.exception_trace(exc)
            print(trace["current_task"].get_name(), [f["name"] for f in trace["frames"]])


    async def main():
        await asyncio.create_task(handle(), name="handler")  # spawn


    asyncio.run(main())
"""


def test_caught_in_the_raising_task_two_awaits_down(tmp_path: Path) -> None:
    """A server's shape (aiohttp, uvicorn): raised deeper in the task that catches it, on every version.

    logger.exception(), traceback.print_exc() and the loop's exception handler show the chain above
    the catching task; exception_trace() names it. 3.10/3.11: no task's done callback recorded it, so
    it did not leave a traced task.
    """
    path, result = run_script(tmp_path, CAUGHT_HERE)
    expected = script_block(path, "Task-1", [("spawn", "main", task_sep("handler"))])
    assert result.returncode == 0, result.stderr
    logged, rest = result.stdout.split("--- print_exc\n")
    printed, rest = rest.split("--- loop handler\n")
    handled, traced = rest.split("--- exception_trace\n")
    assert logged.startswith("ERROR Error handling request\nTraceback (most recent call last):\n")
    assert handled.startswith("ERROR handler failed\nTraceback (most recent call last):\n")
    for text in (logged, printed, handled):
        assert text.endswith(f"KeyError: 'raised two awaits down'\n{expected}\n")
        assert text.count(HEADER) == 1
        assert text.count(", in query\n") == 1
    assert traced == "handler ['main', 'Task-1']\n"


EXECUTOR = """\
    import asyncio

    import async_trace


    def blocking():
        raise KeyError("in a thread")  # raise


    async def worker():
        loop = asyncio.get_running_loop()
        await {call}  # hop


    async def main():
        t = asyncio.create_task(worker(), name="worker")  # spawn
        await t


    asyncio.run(main())
"""


@pytest.mark.parametrize(
    "call",
    ["loop.run_in_executor(None, blocking)", "asyncio.to_thread(blocking)"],
    ids=["run_in_executor", "to_thread"],
)
def test_raised_in_an_executor_function(tmp_path: Path, call: str) -> None:
    """The note ends at the line that created the awaiting task, on every version.

    3.12+ records the executor hop as the origin, but the traceback already
    shows the hop's frames (the exception came back through the awaiting
    coroutine): the note does not repeat them.
    """
    path, result = run_script(tmp_path, EXECUTOR.replace("{call}", call))
    hops: list[tuple[str, str, str | None]] = [("spawn", "main", task_sep("worker"))]
    expected = script_block(path, "Task-1", hops)
    assert result.returncode == 1
    assert result.stderr.endswith(f"KeyError: 'in a thread'\n{expected}\n")
    hop = marker_line(Path(path).read_text(encoding="utf-8"), "hop")
    assert result.stderr.count(f'File "{path}", line {hop}, in worker\n') == 1
    assert EXECUTOR_SEP not in result.stderr


PENDING = """\
    import asyncio
    import gc

    import async_trace


    async def forever():
        await asyncio.Event().wait()


    async def spawner():
        asyncio.create_task(forever(), name="stuck")  # spawn
        await asyncio.sleep(0)


    loop = asyncio.new_event_loop()
    task = loop.create_task(spawner(), name="spawner")
    loop.run_until_complete(task)
    loop.close()
    del task, loop
    gc.collect()
"""


@pytest.mark.parametrize("loop", LOOPS)
def test_task_destroyed_pending_shows_where_it_was_created(tmp_path: Path, loop: str) -> None:
    """'Task was destroyed but it is pending!' gains a task_trace entry naming the creating line."""
    path, result = run_script(tmp_path, _on(loop, PENDING))
    expected = script_block(path, "spawner", [("spawn", "spawner", task_sep("stuck"))])
    assert result.returncode == 0
    assert result.stderr.startswith("Task was destroyed but it is pending!\ntask: <Task pending name='stuck' ")
    assert result.stderr.endswith(f"\n{_display.CONTEXT_KEY}: {expected}\n")


ROOT_ONLY = """\
    import asyncio

    import async_trace


    async def main():
        raise ValueError("in the root task")


    asyncio.run(main())
"""


def test_exception_in_the_root_task_gets_no_note(tmp_path: Path) -> None:
    """Raised in the task asyncio.run made, there is no creation point to show: no note."""
    _, result = run_script(tmp_path, ROOT_ONLY)
    assert result.returncode == 1
    assert result.stderr.endswith("ValueError: in the root task\n")
    assert HEADER not in result.stderr


# --- in this process: notes, format_exception, exception_trace -------------------------


async def _raiser() -> None:
    raise ValueError("once")  # raise-once


async def _reraiser() -> None:
    t = asyncio.create_task(_raiser(), name="raiser")  # spawn-raiser
    try:
        await t
    except ValueError:
        raise


async def _rethrower() -> None:
    t = asyncio.create_task(_reraiser(), name="reraiser")  # spawn-reraiser
    try:
        await t
    except ValueError as exc:
        raise exc  # a re-raise that adds a traceback entry


async def _catch_once() -> tuple[ValueError, str]:
    try:
        await _rethrower()  # call-rethrower
    except ValueError as exc:
        return exc, asyncio.current_task().get_name()  # type: ignore[union-attr]
    raise AssertionError("not raised")


def _once_block(root: str) -> str:
    return block(
        __file__,
        root,
        [
            (line_of(_catch_once, "call-rethrower"), "_catch_once", None),
            (line_of(_rethrower, "spawn-reraiser"), "_rethrower", task_sep("reraiser")),
            (line_of(_reraiser, "spawn-raiser"), "_reraiser", task_sep("raiser")),
        ],
    )


def test_note_is_added_once_across_awaits_and_reraises() -> None:
    """Through two awaited tasks, a bare raise and a raise exc, printed three ways: one note."""
    exc, root = asyncio.run(_catch_once())
    expected = _once_block(root)
    texts = ["".join(traceback.format_exception(type(exc), exc, exc.__traceback__)) for _ in range(2)]
    texts.append("".join(format_exception(exc)))
    for text in texts:
        assert text.endswith(f"ValueError: once\n{expected}\n")
        assert text.count(HEADER) == 1
    if NOTES:
        assert exc.__notes__ == [expected]  # type: ignore[attr-defined]  # 3.11+, typed for 3.10


def test_format_exception_shows_the_chain_on_every_version() -> None:
    """format_exception() is traceback.format_exception() plus the chain after the exception line."""
    exc, root = asyncio.run(_catch_once())
    lines = format_exception(exc)
    text = "".join(lines)
    assert text.startswith("Traceback (most recent call last):\n")
    assert text.endswith(f"ValueError: once\n{_once_block(root)}\n")
    assert all(line.endswith("\n") for line in lines)
    # What the traceback module prints with the hooks on (3.11+: the note; 3.10: its stand-in).
    assert text == "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def test_print_exception_writes_format_exception() -> None:
    """print_exception(exc, file=...) writes exactly format_exception(exc)."""
    exc, _ = asyncio.run(_catch_once())
    out = io.StringIO()
    print_exception(exc, file=out)
    assert out.getvalue() == "".join(format_exception(exc))


def test_print_exception_defaults_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    """Without file=, print_exception writes to sys.stderr, like traceback.print_exception."""
    exc, _ = asyncio.run(_catch_once())
    print_exception(exc)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "".join(format_exception(exc))


def test_format_exception_arrows_style() -> None:
    """style="arrows": a one-line header, then the chain innermost first."""
    exc, root = asyncio.run(_catch_once())
    text = "".join(format_exception(exc, style="arrows"))
    expected = (
        "Async trace:\n"
        f"↑ _reraiser() at line {line_of(_reraiser, 'spawn-raiser')} [test_exceptions.py]\n"
        f"  ↑ _rethrower() at line {line_of(_rethrower, 'spawn-reraiser')} [test_exceptions.py]\n"
        f"    ↑ _catch_once() at line {line_of(_catch_once, 'call-rethrower')} [test_exceptions.py]\n"
        f"      ↑ {root}\n"
    )
    assert text.endswith("ValueError: once\n" + expected)


def test_format_exception_rejects_an_unknown_style() -> None:
    """An unknown style is a ValueError, as for format_trace."""
    with pytest.raises(ValueError, match="style must be one of 'arrows', 'traceback'"):
        format_exception(ValueError(), style="json")  # type: ignore[arg-type]


def test_exception_trace_is_the_chain_as_data() -> None:
    """exception_trace() returns the frames above the raising task, innermost first, with its tasks."""
    exc, root = asyncio.run(_catch_once())
    trace = exception_trace(exc)
    assert trace is not None
    rows = [(f["name"], f["line"], f["task"].get_name() if f["task"] else None) for f in trace["frames"]]
    # The root task (asyncio.run's) may already be gone; its frame keeps its name.
    assert rows[:3] == [
        ("_reraiser", line_of(_reraiser, "spawn-raiser"), "raiser"),
        ("_rethrower", line_of(_rethrower, "spawn-reraiser"), "reraiser"),
        ("_catch_once", line_of(_catch_once, "call-rethrower"), None),
    ]
    assert rows[3][:2] == (root, None)
    assert len(rows) == 4
    assert trace["current_task"] is not None
    assert trace["current_task"].get_name() == "raiser"
    assert trace["in_executor"] is False


def test_exception_trace_of_an_ordinary_exception_is_none() -> None:
    """An exception never raised in a task has no async origin."""
    with pytest.raises(ValueError, match="sync") as info:
        raise ValueError("sync")
    exc = info.value
    assert exception_trace(exc) is None
    assert format_exception(exc) == traceback.format_exception(type(exc), exc, exc.__traceback__)


def test_chained_exceptions_each_get_their_own_chain() -> None:
    """A cause raised in another task carries its chain; the wrapping exception carries its own."""

    async def fails() -> None:
        raise KeyError("cause")

    async def wraps() -> None:
        t = asyncio.create_task(fails(), name="fails")  # spawn-fails
        try:
            await t
        except KeyError as exc:
            raise RuntimeError("wrapped") from exc

    async def main() -> tuple[RuntimeError, str]:
        t = asyncio.create_task(wraps(), name="wraps")  # spawn-wraps
        try:
            await t
        except RuntimeError as exc:
            return exc, asyncio.current_task().get_name()  # type: ignore[union-attr]
        raise AssertionError("not raised")

    exc, root = asyncio.run(main())
    spawn_wraps = (line_of(main, "spawn-wraps"), "main", task_sep("wraps"))
    outer = block(__file__, root, [spawn_wraps])
    inner = block(__file__, root, [spawn_wraps, (line_of(wraps, "spawn-fails"), "wraps", task_sep("fails"))])
    text = "".join(format_exception(exc))
    assert f"KeyError: 'cause'\n{inner}\n\nThe above exception was the direct cause" in text
    assert text.endswith(f"RuntimeError: wrapped\n{outer}\n")


def test_logging_in_this_process_shows_the_chain() -> None:
    """A logging.Formatter's exception text holds the chain (the TracebackException hook)."""
    exc, root = asyncio.run(_catch_once())
    formatter = logging.Formatter()
    text = formatter.formatException((type(exc), exc, exc.__traceback__))
    assert text.endswith(f"ValueError: once\n{_once_block(root)}")


@pytest.mark.skipif(not NOTES, reason="exception groups and notes are 3.11+")
def test_task_group_members_carry_their_own_chain() -> None:
    """Each exception in a TaskGroup's ExceptionGroup names the line that created its task.

    Nothing keeps the children: their exceptions were recorded as they left them.
    """

    async def child(n: int) -> None:
        await asyncio.sleep(0)
        raise ValueError(n)

    async def group() -> None:
        async with asyncio.TaskGroup() as tg:  # type: ignore[attr-defined,unused-ignore]
            tg.create_task(child(1), name="c1")  # spawn-c1
            tg.create_task(child(2), name="c2")  # spawn-c2

    async def main() -> tuple[BaseException, str]:
        try:
            await group()  # call-group
        except BaseException as exc:  # the ExceptionGroup
            return exc, asyncio.current_task().get_name()  # type: ignore[union-attr]
        raise AssertionError("not raised")

    exc, root = asyncio.run(main())
    text = "".join(format_exception(exc))
    call = (line_of(main, "call-group"), "main", None)
    for n in (1, 2):
        member = block(__file__, root, [call, (line_of(group, f"spawn-c{n}"), "group", task_sep(f"c{n}"))])
        expected = "\n".join("    | " + line for line in f"ValueError: {n}\n{member}".split("\n"))
        assert expected + "\n" in text


@pytest.mark.skipif(not MONITORING, reason="recorded as the exception unwinds: sys.monitoring, 3.12+")
def test_gone_tasks_keep_their_separators() -> None:
    """Printed after its tasks are gone, the chain still marks each boundary, naming the raising task."""

    async def inner() -> None:
        raise ValueError("gone")

    async def outer() -> None:
        await asyncio.create_task(inner(), name="inner")  # spawn-inner

    async def main() -> tuple[ValueError, str]:
        try:
            await asyncio.create_task(outer(), name="outer")  # spawn-outer
        except ValueError as exc:
            return exc, asyncio.current_task().get_name()  # type: ignore[union-attr]
        raise AssertionError("not raised")

    exc, root = asyncio.run(main())
    text = "".join(format_exception(exc))
    expected = block(
        __file__,
        root,
        [
            (line_of(main, "spawn-outer"), "main", _render.GONE_SEPARATOR.rstrip("\n")),
            (line_of(outer, "spawn-inner"), "outer", task_sep("inner")),
        ],
    )
    assert text.endswith(f"ValueError: gone\n{expected}\n")


async def _fails(message: str) -> None:
    await asyncio.sleep(0)
    raise ValueError(message)  # raise-fails


def test_gather_members_name_their_own_tasks() -> None:
    """gather(return_exceptions=True): each exception returned, printed as gather returns, names its task."""

    async def main() -> tuple[list[tuple[TraceData | None, str]], str]:
        gathered = asyncio.gather(_fails("1"), asyncio.sleep(0), _fails("2"), return_exceptions=True)  # gather
        results: list[Any] = list(await gathered)
        shown = [(exception_trace(exc), "".join(format_exception(exc))) for exc in (results[0], results[2])]
        return shown, asyncio.current_task().get_name()  # type: ignore[union-attr]

    shown, root = asyncio.run(main())
    gather = (line_of(main, "gather"), "main", None)
    for trace, text in shown:
        assert trace is not None
        assert trace["current_task"] is not None
        assert [f["name"] for f in trace["frames"]][-2:] == ["main", root]
        assert block(__file__, root, [gather]) in text


def test_an_exception_through_an_awaiting_task_names_the_one_that_raised_it() -> None:
    """Raised in B, re-raised in A (which awaited B), caught in main: B is its origin, not A.

    3.10/3.11 (found when printed, B gone by then) name A: docs/guarantees.md.
    """

    async def a() -> None:
        await asyncio.create_task(_fails("in b"), name="B")  # spawn-b

    async def main() -> tuple[ValueError, str]:
        try:
            await asyncio.create_task(a(), name="A")  # spawn-a
        except ValueError as exc:
            trace = exception_trace(exc)
            if trace is None:
                return exc, "none"
            return exc, trace["current_task"].get_name() if trace["current_task"] else "gone"
        raise AssertionError("not raised")

    exc, raiser = asyncio.run(main())
    text = "".join(format_exception(exc))
    if not MONITORING:
        # 3.10/3.11 find origins when printed: B is gone, and A, which stores the exception (it
        # passed it on), is the deepest live task that does: its chain, without B's line.
        assert raiser == "A"
        assert text.endswith("  --- task 'A' created here ---\n")
        return
    assert raiser in ("B", "gone")  # B itself may be collected by then: its name stays in the note
    assert text.endswith(
        f'  File "{__file__}", line {line_of(a, "spawn-b")}, in a\n'
        f"    {linecache.getline(__file__, line_of(a, 'spawn-b')).strip()}\n"
        "  --- task 'B' created here ---\n"
    )


def _origin_task_name(exc: BaseException) -> str | None:
    """The name of the task ``exception_trace(exc)`` names, or ``None``."""
    trace = exception_trace(exc)
    task = trace["current_task"] if trace is not None else None
    return task.get_name() if task is not None else None


def test_through_a_coroutine_that_also_runs_as_a_task() -> None:
    """Caught two awaits down, through a coroutine function that also runs as a task: 3.12+ name the
    catching task; 3.10/3.11 (origins found when printed) give none rather than guess, since that
    frame may have been the other task's, gone by then (docs/guarantees.md)."""

    async def worker() -> str | None:
        await asyncio.create_task(_fails("as a task"), name="elsewhere")  # _fails runs as a task here...
        raise AssertionError("not raised")

    async def catcher() -> str | None:
        try:
            await _fails("awaited")  # ... and is awaited here, in the catching task
        except ValueError as exc:
            return _origin_task_name(exc)
        raise AssertionError("not raised")

    async def main() -> str | None:
        with pytest.raises(ValueError, match="as a task"):
            await asyncio.create_task(worker())
        return await asyncio.create_task(catcher(), name="catcher")

    assert asyncio.run(main()) == ("catcher" if MONITORING else None)


def test_a_future_failed_by_a_callback_names_the_awaiting_task() -> None:
    """An exception a callback set on a future was raised in no task: the task catching it is named, as 3.12+ do."""

    async def worker() -> str | None:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        loop.call_soon(future.set_exception, ValueError("from a callback"))
        try:
            await future
        except ValueError as exc:
            return _origin_task_name(exc)
        raise AssertionError("not raised")

    async def main() -> str | None:
        return await asyncio.create_task(worker(), name="worker")

    assert asyncio.run(main()) == "worker"


def test_every_note_frame_is_a_real_line() -> None:
    """An editor's `File "(.+)", line (\\d+)` finds every frame of the note, each showing its source line."""
    exc, _ = asyncio.run(_catch_once())
    text = "".join(format_exception(exc))
    note = text[text.index(HEADER) :]
    matches = FILE_LINE.findall(note)
    assert [(name, int(line)) for _, line, name in matches] == [
        ("_catch_once", line_of(_catch_once, "call-rethrower")),
        ("_rethrower", line_of(_rethrower, "spawn-reraiser")),
        ("_reraiser", line_of(_reraiser, "spawn-raiser")),
    ]
    for filename, line, _ in matches:
        assert f"\n    {linecache.getline(filename, int(line)).strip()}\n" in note


# --- what is recorded ----------------------------------------------------------------


def test_cancellation_is_not_recorded() -> None:
    """CancelledError is control flow: no origin is recorded on it."""

    async def sleeper() -> None:
        await asyncio.sleep(10)

    async def main() -> BaseException:
        t = asyncio.create_task(sleeper())
        await asyncio.sleep(0)
        t.cancel()
        try:
            await t
        except asyncio.CancelledError as exc:
            return exc
        raise AssertionError("not cancelled")

    exc = asyncio.run(main())
    assert not hasattr(exc, "_async_trace_origin")
    assert exception_trace(exc) is None


def test_pickled_or_copied_exception_drops_its_origin() -> None:
    """The record pickles and deep-copies as None: exceptions stay picklable, e.g. across processes."""
    exc, _ = asyncio.run(_catch_once())
    assert exception_trace(exc) is not None
    for clone in (pickle.loads(pickle.dumps(exc)), copy.deepcopy(exc)):
        assert type(clone) is ValueError
        assert clone.args == ("once",)
        assert exception_trace(clone) is None


def test_task_created_untraced_has_no_origin() -> None:
    """A task created while tracing was off does not claim its creator's chain."""

    async def fails() -> None:
        raise ValueError("untraced")

    async def main() -> ValueError:
        async_trace.disable_tracing()
        try:
            t = asyncio.create_task(fails())
        finally:
            async_trace.enable_tracing()
        try:
            await t
        except ValueError as exc:
            return exc
        raise AssertionError("not raised")

    async def outer() -> ValueError:
        return await asyncio.create_task(main())

    exc = asyncio.run(outer())
    assert exception_trace(exc) is None
    assert HEADER not in "".join(format_exception(exc))


def test_exception_refusing_attributes_is_left_alone() -> None:
    """An exception type refusing new attributes: no record, no warning (3.11+: no note either)."""

    class Frozen(Exception):
        def __setattr__(self, name: str, value: object) -> None:
            raise AttributeError(name)

    async def fails() -> None:
        raise Frozen("frozen")

    async def main() -> Frozen:
        t = asyncio.create_task(fails())
        try:
            await t
        except Frozen as exc:
            return exc
        raise AssertionError("not raised")

    exc = asyncio.run(main())
    text = "".join(format_exception(exc))
    assert not hasattr(exc, "_async_trace_origin")
    if NOTES:  # no note can be added to it
        assert text.endswith("Frozen: frozen\n")
    else:  # 3.10 prints the chain without touching the exception
        assert f"Frozen: frozen\n{HEADER}\n" in text


def test_default_notes_are_added_when_printed_not_before() -> None:
    """By default nothing touches __notes__ until the exception is printed: pytest.raises(match=) sees the message."""

    async def main() -> None:
        await asyncio.create_task(_raiser())

    with pytest.raises(ValueError, match=r"^once$") as info:
        asyncio.run(main())
    assert getattr(info.value, "__notes__", None) is None


@pytest.fixture
def eager() -> Iterator[None]:
    _exceptions.configure(notes_on_exit=True)
    try:
        yield
    finally:
        _exceptions.configure(notes_on_exit=False)


@pytest.mark.usefixtures("eager")
def test_eager_notes_are_added_as_the_exception_leaves_its_task() -> None:
    """With eager notes the note is in __notes__ before anything prints the exception, on every version.

    3.12+: the unwind hook; 3.10/3.11: a done callback on each task, run before its awaiter's.
    """
    exc, root = asyncio.run(_catch_once())
    assert exc.__notes__ == [_once_block(root)]  # type: ignore[attr-defined,unused-ignore]
    # Printing adds nothing more, and prints the note once (3.10: after the exception line).
    text = "".join(format_exception(exc))
    assert text.count(HEADER) == 1
    assert text.endswith(f"ValueError: once\n{_once_block(root)}\n")
    assert exc.__notes__ == [_once_block(root)]  # type: ignore[attr-defined,unused-ignore]


async def _blocking_call() -> None:
    await asyncio.get_running_loop().run_in_executor(None, _blocking)  # hop


def _blocking() -> None:
    raise KeyError("in a thread")


async def _catch_from_thread() -> tuple[KeyError, list[str]]:
    try:
        await _blocking_call()  # call-blocking
    except KeyError as exc:
        return exc, list(exc.__notes__)  # type: ignore[attr-defined,unused-ignore]
    raise AssertionError("not raised")


async def _spawn_catcher() -> tuple[KeyError, list[str], str]:
    exc, seen = await asyncio.create_task(_catch_from_thread(), name="catcher")  # spawn-catcher
    return exc, seen, asyncio.current_task().get_name()  # type: ignore[union-attr]


@pytest.mark.usefixtures("eager")
def test_eager_note_of_an_executor_call_is_there_at_the_catch_and_exact_once_printed() -> None:
    """An executor call's exception has its note where the awaiting code catches it, before any print.

    Made before the exception is re-raised in the awaiting coroutine, that note leaves out only the
    awaiting line; printed, the note becomes the final one, without the frames the traceback shows.
    """
    exc, seen, root = asyncio.run(_spawn_catcher())
    spawn = (line_of(_spawn_catcher, "spawn-catcher"), "_spawn_catcher", task_sep("catcher"))
    call = (line_of(_catch_from_thread, "call-blocking"), "_catch_from_thread", None)
    assert seen == [block(__file__, root, [spawn, call])]
    # Printed once the catching task is gone: its boundary is the unnamed separator.
    final = block(__file__, root, [(spawn[0], spawn[1], _render.GONE_SEPARATOR.rstrip("\n"))])
    text = "".join(format_exception(exc))
    assert text.endswith(f"KeyError: 'in a thread'\n{final}\n")
    assert text.count(HEADER) == 1
    assert exc.__notes__ == [final]  # type: ignore[attr-defined,unused-ignore]


@pytest.mark.usefixtures("eager")
def test_eager_notes_leave_cancelled_and_untraced_tasks_alone() -> None:
    """No note for a cancelled task, a task created while tracing was off, or a retrieved-later failure's state."""

    async def fails() -> None:
        raise ValueError("untraced")

    async def main() -> tuple[ValueError, bool]:
        sleeper = asyncio.create_task(asyncio.sleep(10))
        await asyncio.sleep(0)
        sleeper.cancel()
        async_trace.disable_tracing()
        try:
            t = asyncio.create_task(fails())
        finally:
            async_trace.enable_tracing()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        cancelled = sleeper.cancelled()
        try:
            await t
        except ValueError as exc:
            return exc, cancelled
        raise AssertionError("not raised")

    exc, cancelled = asyncio.run(main())
    assert cancelled
    assert getattr(exc, "__notes__", None) is None


@pytest.fixture
def not_recording() -> Iterator[None]:
    async_trace.enable_tracing(record_origins=False)
    try:
        yield
    finally:
        async_trace.enable_tracing(record_origins=True)


def _our_tool_ids() -> list[int]:
    return [t for t in (3, 4) if sys.monitoring.get_tool(t) == "async_trace"]  # type: ignore[attr-defined,unused-ignore]


@pytest.mark.skipif(not MONITORING, reason="the unwind record is sys.monitoring, 3.12+")
def test_record_origins_off_frees_the_tool_id_and_takes_it_back() -> None:
    """record_origins=False gives the monitoring tool id back at once; True takes it again."""
    assert _our_tool_ids() == [4]
    async_trace.enable_tracing(record_origins=False)
    try:
        assert _our_tool_ids() == []
        async_trace.disable_tracing()
        async_trace.enable_tracing()  # the setting stays across disable/enable
        assert _our_tool_ids() == []
    finally:
        async_trace.enable_tracing(record_origins=True)
    assert _our_tool_ids() == [4]


@pytest.mark.usefixtures("not_recording")
def test_without_the_record_a_printed_origin_is_found_among_the_live_tasks() -> None:
    """Nothing is recorded as the exception leaves; printed while its tasks live, the note is the same."""
    exc, root = asyncio.run(_catch_once())
    assert getattr(exc, "_async_trace_origin", None) is None
    assert "".join(format_exception(exc)).endswith(f"ValueError: once\n{_once_block(root)}\n")


@pytest.mark.usefixtures("not_recording")
def test_without_the_record_an_origin_whose_tasks_are_gone_is_lost() -> None:
    """The documented price of record_origins=False: no task left to ask, no note."""

    async def inner() -> None:
        raise ValueError("gone")

    async def main() -> ValueError:
        try:
            await asyncio.create_task(inner())
        except ValueError as exc:
            return exc
        raise AssertionError("not raised")

    exc = asyncio.run(main())
    text = "".join(format_exception(exc))
    assert text.endswith("ValueError: gone\n")
    assert HEADER not in text


@pytest.mark.skipif(MONITORING, reason="3.10/3.11's done callbacks")
def test_tasks_get_a_done_callback_only_with_eager_notes() -> None:
    """3.10/3.11: a task's repr() is asyncio's own by default; eager notes give each task a done callback."""

    async def main() -> tuple[str, str]:
        plain = asyncio.create_task(asyncio.sleep(10))
        async_trace.enable_tracing(eager_notes=True)
        try:
            watched = asyncio.create_task(asyncio.sleep(10))
        finally:
            async_trace.enable_tracing(eager_notes=False)
        shown = repr(plain), repr(watched)
        for task in (plain, watched):
            task.cancel()
        await asyncio.gather(plain, watched, return_exceptions=True)
        return shown

    plain, watched = asyncio.run(main())
    assert "cb=[" not in plain
    assert "cb=[_task_done()" in watched


def test_eager_notes_need_the_record() -> None:
    """Asking for eager notes without the record is refused, and nothing changes."""
    with pytest.raises(ValueError, match="eager_notes=True needs record_origins=True"):
        async_trace.enable_tracing(eager_notes=True, record_origins=False)
    assert (_config.settings.eager_notes, _config.settings.record_origins) == (False, True)
    async_trace.enable_tracing(record_origins=False)
    try:
        with pytest.raises(ValueError, match="needs record_origins"):
            async_trace.enable_tracing(eager_notes=True)
    finally:
        async_trace.enable_tracing(record_origins=True)
    assert (_config.settings.eager_notes, _config.settings.record_origins) == (False, True)


# --- hooks: installed by enable_tracing, restored exactly by disable_tracing ---------------


def _hooked() -> list[Any]:
    return [vars(owner).get(name) for owner, name in _display.patched_attributes()]


def test_disable_tracing_restores_the_exception_hooks_exactly() -> None:
    """default_exception_handler, sys.excepthook and TracebackException come back as they were."""
    async_trace.disable_tracing()
    try:
        before = _hooked()
        assert before[0] is vars(asyncio.base_events.BaseEventLoop)["default_exception_handler"]
        assert sys.excepthook is before[1]
        async_trace.enable_tracing()
        on = _hooked()
        assert all(a is not b for a, b in zip(before, on, strict=True))
        async_trace.disable_tracing()
        assert all(a is b for a, b in zip(before, _hooked(), strict=True))
        if MONITORING:
            assert sys.monitoring.get_tool(4) is None  # type: ignore[attr-defined,unused-ignore]
    finally:
        async_trace.enable_tracing()
    assert _display.is_active()


def test_a_hook_installed_over_ours_stays() -> None:
    """sys.excepthook replaced after us is left in place by disable; enable wraps it, disable unwraps it."""
    ours = sys.excepthook

    def theirs(t: type[BaseException], e: BaseException, tb: Any) -> None:
        ours(t, e, tb)

    sys.excepthook = theirs
    try:
        async_trace.disable_tracing()
        assert sys.excepthook is theirs
        async_trace.enable_tracing()
        assert sys.excepthook.__wrapped__ is theirs  # type: ignore[attr-defined]
        async_trace.disable_tracing()
        assert sys.excepthook is theirs
    finally:
        async_trace.disable_tracing()
        sys.excepthook = sys.__excepthook__
        async_trace.enable_tracing()
