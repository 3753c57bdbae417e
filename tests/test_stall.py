"""The stall watchdog: what a report holds and prints, kinds, dedup and rate limit, pauses, life cycle.

Timing: every stall here blocks the loop 0.3 s or more against a threshold of 0.1 s (heartbeat
interval 0.025 s), and durations are checked within half an interval below and 0.2 s above (a
loaded machine delays the loop's return, never its blocking). The real servers are in
test_stall_apps.py.
"""

from __future__ import annotations

import asyncio
import gc
import io
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import async_trace
from async_trace import (
    AsyncTraceWarning,
    StallReport,
    StallWatch,
    _stall,
    _stall_env,
    _stall_report,
    _stall_sample,
    format_stall_report,
    print_stall_report,
    reset_stall_summary,
    stall_summary,
    watch_stalls,
)

from .apps import ON_BOTH_LOOPS, run_on
from .helpers import automatic_gc_off, line_of, run_python


@pytest.fixture(autouse=True)
def _no_automatic_gc() -> Iterator[None]:
    """Every test here counts its reports: a collection of the suite's heap inside a window would be one more."""
    with automatic_gc_off():
        yield


HERE = "test_stall.py"
#: The checkout whose async_trace these tests import: the one child processes must import too.
ROOT = str(Path(async_trace.__file__).resolve().parent.parent)
THRESHOLD = 0.1
BLOCK = 0.3
BELOW = THRESHOLD / 8 + 0.02
ABOVE = THRESHOLD / 8 + 0.2
WATCHDOG = "async_trace stall watchdog"


@pytest.fixture(autouse=True)
def _fresh_summary() -> Iterator[None]:
    reset_stall_summary()
    yield
    reset_stall_summary()
    assert not [t for t in threading.enumerate() if t.name == WATCHDOG], "a watchdog thread outlived its test"


def watched(body: Callable[[], Any], loop: str = "asyncio", **options: Any) -> list[StallReport]:
    """Run ``body()`` (a coroutine function) under a watch of its loop; the reports, once the loop ran again."""
    reports: list[StallReport] = []
    options.setdefault("dedup_interval", 0)
    options.setdefault("log", False)

    async def main() -> None:
        asyncio.current_task().set_name("main")  # type: ignore[union-attr]
        with watch_stalls(THRESHOLD, on_stall=reports.append, **options):
            await asyncio.sleep(0.05)
            await body()  # body
            await asyncio.sleep(0.2)

    run_on(loop, main())
    return reports


#: The line of ``watched``'s main awaiting the body.
BODY_LINE = line_of(watched, "body")


def near(duration: float, expected: float = BLOCK) -> bool:
    return expected - BELOW <= duration <= expected + ABOVE


async def request_handler() -> None:
    await asyncio.sleep(0)
    time.sleep(BLOCK)  # blocks


async def accept() -> None:
    await asyncio.create_task(request_handler(), name="request-1")  # creates


# --- the report --------------------------------------------------------------------------------


@ON_BOTH_LOOPS
def test_a_task_sleeping_is_reported_once_with_its_stack_and_chain(loop: str) -> None:
    """One report: kind, duration, source, the stack at the blocking line, the chain to the root task."""

    async def body() -> None:
        await asyncio.create_task(accept(), name="server")  # serves

    reports = watched(body, loop)
    assert len(reports) == 1
    report = reports[0]
    assert (report.kind, report.ongoing, report.suppressed, report.threshold) == ("blocking", False, 0, THRESHOLD)
    assert near(report.duration)
    assert report.source == f"{__name__}:request_handler"
    assert report.task_name == "request-1"
    assert report.task is not None
    assert report.task.get_name() == "request-1"
    assert report.thread == threading.current_thread().name
    assert report.waiting_for == ()
    assert report.gc_time < 0.05
    if report.cpu_time is not None:
        assert report.cpu_time < 0.1
    assert abs(report.started - (time.time() - 0.25 - report.duration)) < 1.0
    stack = [(f["name"], f["line"], os.path.basename(f["filename"] or ""), f["in_app"]) for f in report.stack]
    assert stack == [("request_handler", line_of(request_handler, "blocks"), HERE, True)]
    chain = [(f["name"], f["line"]) for f in report.chain]
    assert chain == [
        ("accept", line_of(accept, "creates")),
        ("body", line_of(body, "serves")),
        ("main", BODY_LINE),
        ("main", None),
    ]
    assert report.chain[0]["task"] is report.task
    # The record's trace: stack then chain, as format_async_trace renders it.
    trace = report.trace
    assert [f["indent"] for f in trace["frames"]] == [0, 1, 2, 3, 4]
    assert trace["current_task"] is report.task


def test_format_stall_report_arrows_and_traceback() -> None:
    """The printed report: a headline, then the stack and chain in the chosen style."""

    async def body() -> None:
        await asyncio.create_task(accept(), name="server")  # serves

    (report,) = watched(body)
    lines = format_stall_report(report)
    assert all(line.endswith("\n") for line in lines)
    headline = (
        rf"Event loop blocked for 0\.\d\d\d s \(threshold 0\.100 s\): code running on the loop, "
        rf"in {re.escape(__name__)}:request_handler, task 'request-1'\n"
    )
    assert re.fullmatch(headline, lines[0])
    assert lines[1:] == [
        f"↑ request_handler() at line {line_of(request_handler, 'blocks')} [{HERE}]\n",
        f"  ↑ accept() at line {line_of(accept, 'creates')} [{HERE}]\n",
        f"    ↑ body() at line {line_of(body, 'serves')} [{HERE}]\n",
        f"      ↑ main() at line {BODY_LINE} [{HERE}]\n",
        "        ↑ main\n",
    ]
    tb = format_stall_report(report, style="traceback")
    assert tb[0] == lines[0]
    assert tb[1:] == [
        "Async trace (most recent call last):\n",
        "  Root task 'main'\n",
        f'  File "{__file__}", line {BODY_LINE}, in main\n    await body()  # body\n',
        f'  File "{__file__}", line {line_of(body, "serves")}, in body\n'
        '    await asyncio.create_task(accept(), name="server")  # serves\n'
        "  --- task 'server' created here ---\n",
        f'  File "{__file__}", line {line_of(accept, "creates")}, in accept\n'
        '    await asyncio.create_task(request_handler(), name="request-1")  # creates\n'
        "  --- task 'request-1' created here ---\n",
        f'  File "{__file__}", line {line_of(request_handler, "blocks")}, in request_handler\n'
        "    time.sleep(BLOCK)  # blocks\n",
    ]
    ascii_lines = format_stall_report(report, ascii_only=True)
    assert ascii_lines[1] == f"^ request_handler() at line {line_of(request_handler, 'blocks')} [{HERE}]\n"
    out = io.StringIO()
    print_stall_report(report, file=out)
    assert out.getvalue() == "".join(lines)
    with pytest.raises(ValueError, match="style"):
        format_stall_report(report, style="json")  # type: ignore[arg-type]


async def spin() -> None:
    end = time.monotonic() + BLOCK
    while time.monotonic() < end:  # spins
        pass


def test_a_cpu_loop_is_blocking_and_uses_cpu() -> None:
    """A CPU loop: kind ``blocking``, the spinning line, and (where the platform tells) CPU time."""
    reports = watched(spin)
    assert len(reports) == 1
    (report,) = reports
    assert report.kind == "blocking"
    assert near(report.duration)
    # Sampled on the ``while`` line or on the loop's body.
    line = line_of(spin, "spins")
    assert (report.stack[0]["name"], report.stack[0]["line"]) in [("spin", line), ("spin", line + 1)]
    if report.cpu_time is not None:
        assert report.cpu_time > 0.02


def blocking_callback() -> None:
    time.sleep(BLOCK)  # callback blocks


def test_a_callback_is_reported_without_a_task() -> None:
    """A plain callback (``call_soon``) blocking: its frame, no task, no chain."""

    async def body() -> None:
        asyncio.get_running_loop().call_soon(blocking_callback)
        await asyncio.sleep(0.01)

    (report,) = watched(body)
    assert report.task is None
    assert report.task_name is None
    assert report.chain == ()
    assert [(f["name"], f["line"]) for f in report.stack] == [
        ("blocking_callback", line_of(blocking_callback, "callback blocks"))
    ]
    assert report.source == f"{__name__}:blocking_callback"


# --- waiting -----------------------------------------------------------------------------------

LOCK = threading.Lock()


def hold(ready: threading.Event) -> None:
    with LOCK:
        ready.set()
        time.sleep(BLOCK + 0.1)  # holds


async def wait_for_lock() -> None:
    ready = threading.Event()
    threading.Thread(target=hold, args=(ready,), name="holder").start()
    assert ready.wait(5)
    LOCK.acquire()  # acquires
    LOCK.release()


def work() -> None:
    time.sleep(BLOCK + 0.1)  # works


async def join_thread() -> None:
    thread = threading.Thread(target=work, name="worker")
    thread.start()
    thread.join()  # joins


async def wait_future() -> None:
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="pool") as pool:
        future = pool.submit(work)
        future.result()  # waits


@pytest.mark.parametrize(
    ("body", "marker", "waiting_on", "thread", "thread_frame"),
    [
        (wait_for_lock, "acquires", "_thread.lock", "holder", (hold, "holds")),
        (join_thread, "joins", "threading.Thread", "worker", (work, "works")),
        (wait_future, "waits", "concurrent.futures._base.Future", "pool_0", (work, "works")),
    ],
)
def test_waiting_on_another_thread_names_that_thread(
    body: Any, marker: str, waiting_on: str, thread: str, thread_frame: tuple[Any, str]
) -> None:
    """A lock another thread holds, a thread joined, a future's result: kind ``waiting``, with that thread's stack."""
    (report,) = watched(body)
    assert report.kind == "waiting"
    assert report.waiting_on == waiting_on
    assert [t.name for t in report.waiting_for] == [thread]
    func, where = thread_frame
    top = report.waiting_for[0].frames[0]
    assert (top["name"], top["line"]) == (func.__name__, line_of(func, where))
    assert report.source == f"{__name__}:{body.__name__}"
    # The loop thread's own stack starts at the waiting line (threading's frames are library frames).
    ours = [f for f in report.stack if f["in_app"]]
    assert (ours[0]["name"], ours[0]["line"]) == (body.__name__, line_of(body, marker))
    text = "".join(format_stall_report(report))
    assert f"Thread '{thread}' (holding {waiting_on}):\n↑ {func.__name__}() at line" in text


# --- starved and gc ----------------------------------------------------------------------------


def hog(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:  # with a long switch interval, this thread keeps the GIL
        pass


def test_a_loop_starved_by_another_thread_holding_the_gil() -> None:
    """The loop idle in its poll while another thread keeps the GIL: kind ``starved``, source ``<starved>``."""

    async def body() -> None:
        await asyncio.get_running_loop().run_in_executor(None, hog_with_interval)

    reports = watched(body)
    assert len(reports) == 1, reports
    (report,) = reports
    assert (report.kind, report.source, report.task_name) == ("starved", "<starved>", None)
    assert near(report.duration)


def hog_with_interval() -> None:
    time.sleep(0.05)  # the loop is back in its poll (or, racing, still in run_in_executor: starved too)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(5.0)  # nothing takes the GIL from the hog before it ends
    try:
        hog(BLOCK)
    finally:
        sys.setswitchinterval(interval)


def slow_gc(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        time.sleep(BLOCK)  # collector


async def collect_garbage() -> None:
    gc.callbacks.append(slow_gc)
    try:
        gc.collect()  # collects
    finally:
        gc.callbacks.remove(slow_gc)


def test_a_garbage_collection_pause_is_kind_gc() -> None:
    """A collection taking the whole stall (a slow ``gc.callbacks`` entry stands for a big heap): kind ``gc``."""
    (report,) = watched(collect_garbage)
    assert report.kind == "gc"
    assert report.gc_time >= BLOCK - 0.05
    # The stall is the collection: the slow callback, plus collecting the suite's heap (0.23 s more
    # in one CI run, late in a big process on a loaded machine).
    assert near(report.duration, report.gc_time), (report.duration, report.gc_time)
    ours = [(f["name"], f["line"]) for f in report.stack if f["in_app"]]
    assert ("collect_garbage", line_of(collect_garbage, "collects")) in ours


# --- long stalls, dedup, rate limit ----------------------------------------------------------


async def block_long() -> None:
    time.sleep(0.7)  # long


def test_a_long_stall_is_reported_while_it_lasts_and_when_it_ends() -> None:
    """With ``long_stall=0.3``: a report with ``ongoing`` during the stall, then the final one."""
    reports = watched(block_long, long_stall=0.3, dedup_interval=60)  # the end is said despite dedup
    assert [r.ongoing for r in reports] == [True, False]
    ongoing, final = reports
    assert 0.3 - BELOW <= ongoing.duration < 0.7
    assert near(final.duration, 0.7)
    assert ongoing.stack == final.stack
    assert (ongoing.stack[0]["name"], ongoing.stack[0]["line"]) == ("block_long", line_of(block_long, "long"))
    assert format_stall_report(ongoing)[0].startswith("Event loop blocked, still, after ")
    assert stall_summary()[f"{__name__}:block_long"]["count"] == 1  # one stall


async def stall_a() -> None:
    time.sleep(BLOCK)  # a


async def stall_b() -> None:
    time.sleep(BLOCK)  # b


def test_dedup_holds_back_repeats_of_a_source_and_counts_them() -> None:
    """Within ``dedup_interval`` one report per source; the next one says how many were held back."""

    async def body() -> None:
        for _ in range(3):
            await stall_a()
            await asyncio.sleep(0.1)
        await stall_b()
        await asyncio.sleep(1.6)  # past dedup_interval since the first report
        await stall_a()

    reports = watched(body, dedup_interval=2.0)
    assert [(r.source.split(":")[1], r.suppressed) for r in reports] == [("stall_a", 0), ("stall_b", 0), ("stall_a", 2)]
    assert format_stall_report(reports[2])[1] == (
        f"(2 more stalls in {__name__}:stall_a not reported since the last report)\n"
    )
    summary = stall_summary()
    assert list(summary) == [f"{__name__}:stall_a", f"{__name__}:stall_b"]  # worst total first
    a = summary[f"{__name__}:stall_a"]
    assert (a["count"], a["reported"], a["kind"]) == (4, 2, "blocking")
    assert near(a["worst"])
    assert 4 * (BLOCK - BELOW) <= a["total"] <= 4 * (BLOCK + ABOVE)
    reset_stall_summary()
    assert stall_summary() == {}


def test_the_rate_limit_caps_reports_per_minute() -> None:
    """``max_reports_per_minute=2``: the third stall (another source) is counted, not reported."""

    async def body() -> None:
        await stall_a()
        await asyncio.sleep(0.1)
        await stall_b()
        await asyncio.sleep(0.1)
        await spin()

    reports = watched(body, max_reports_per_minute=2)
    assert [r.source.split(":")[1] for r in reports] == ["stall_a", "stall_b"]
    assert stall_summary()[f"{__name__}:spin"]["reported"] == 0
    assert stall_summary()[f"{__name__}:spin"]["count"] == 1


def test_short_stalls_are_not_reported() -> None:
    """Blocking for less than the threshold: no report, nothing counted."""

    async def body() -> None:
        for _ in range(5):
            time.sleep(THRESHOLD / 3)
            await asyncio.sleep(0.03)

    assert watched(body) == []
    assert stall_summary() == {}


# --- sinks: the logger and the callback -------------------------------------------------------


def test_reports_go_to_the_stall_logger_with_fields(caplog: pytest.LogCaptureFixture) -> None:
    """``async_trace.stall`` at WARNING: the printed report as message, the fields as ``extra``."""
    caplog.set_level(logging.WARNING, logger="async_trace.stall")
    (report,) = watched(request_handler, log=True)
    records = [r for r in caplog.records if r.name == "async_trace.stall"]
    assert len(records) == 1
    record = records[0]
    assert record.levelno == logging.WARNING
    assert record.getMessage() == "".join(format_stall_report(report)).rstrip("\n")
    fields = {name: getattr(record, name) for name in _stall_report.log_fields(report)}
    assert fields == {
        "stall_duration": report.duration,
        "stall_threshold": THRESHOLD,
        "stall_kind": "blocking",
        "stall_source": f"{__name__}:request_handler",
        "stall_task": "main",
        "stall_ongoing": False,
        "stall_suppressed": 0,
        "stall_report": report,
    }


def test_a_failing_callback_is_logged_and_the_watch_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[StallReport] = []

    def on_stall(report: StallReport) -> None:
        calls.append(report)
        raise RuntimeError("sink down")

    async def body() -> None:
        await stall_a()
        await asyncio.sleep(0.1)
        await stall_b()

    async def main() -> None:
        with watch_stalls(THRESHOLD, on_stall=on_stall, log=False, dedup_interval=0):
            await asyncio.sleep(0.05)
            await body()
            await asyncio.sleep(0.2)

    asyncio.run(main())
    assert len(calls) == 2
    failures = [r for r in caplog.records if r.name == "async_trace.stall" and r.exc_info]
    assert len(failures) == 2
    assert failures[0].getMessage() == "async_trace: the on_stall callback raised"


def test_an_internal_failure_warns_once_and_the_program_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any) -> None:
        raise RuntimeError("sampling broke")

    monkeypatch.setattr(_stall, "sample_loop", broken)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reports = watched(request_handler)
    assert [str(w.message) for w in caught if w.category is AsyncTraceWarning] == [
        "async_trace: internal error while watching for event loop stalls (RuntimeError: sampling broke); this "
        "call falls back to untraced behaviour (async_trace.internal_errors() counts them)"
    ]
    # The stall itself is still reported, without a stack.
    assert [(r.source, r.stack) for r in reports] == [("<unknown>", ())]


# --- life cycle ------------------------------------------------------------------------------


def test_stop_is_idempotent_from_any_thread_and_removes_the_heartbeat() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        before = len(loop._scheduled)  # type: ignore[attr-defined]
        watch = watch_stalls(THRESHOLD, loop=loop)
        assert watch.watched_loops() == [loop]
        assert len(loop._scheduled) == before + 1  # type: ignore[attr-defined]
        stopper = threading.Thread(target=watch.stop)
        stopper.start()
        stopper.join(5)
        watch.stop()
        assert watch.stopped
        await asyncio.sleep(0.01)
        assert [h for h in loop._scheduled if not h.cancelled()] == []  # type: ignore[attr-defined]
        assert watch.watched_loops() == []

    asyncio.run(main())


def test_start_and_stop_repeatedly() -> None:
    """Twenty watches started and stopped in a row (and two at once) leave no thread and no heartbeat."""

    async def main() -> None:
        for _ in range(20):
            with watch_stalls(THRESHOLD), watch_stalls(0.5, loop=asyncio.get_running_loop()):
                await asyncio.sleep(0)
        assert not [t for t in threading.enumerate() if t.name == WATCHDOG]
        assert not _stall._watches
        assert _on_gc_count() == 0

    asyncio.run(main())


def _on_gc_count() -> int:
    return sum(1 for callback in gc.callbacks if callback is _stall_sample._on_gc)


def test_every_loop_in_any_thread_including_loops_started_later() -> None:
    """``loop=None``: a loop started in another thread after the watch is found and watched."""
    reports: list[StallReport] = []
    with watch_stalls(THRESHOLD, on_stall=reports.append, log=False, discover_interval=0.1) as watch:

        async def in_thread() -> None:
            asyncio.current_task().set_name("thread-main")  # type: ignore[union-attr]
            loop = asyncio.get_running_loop()
            for _ in range(100):
                if loop in watch.watched_loops():
                    break
                await asyncio.sleep(0.05)
            await request_handler()
            await asyncio.sleep(0.2)

        thread = threading.Thread(target=asyncio.run, args=(in_thread(),), name="loop-thread")
        thread.start()
        thread.join(20)
    assert len(reports) == 1
    assert (reports[0].thread, reports[0].task_name) == ("loop-thread", "thread-main")
    assert reports[0].stack[0]["name"] == "request_handler"


def test_arguments_are_checked() -> None:
    for bad in ({"threshold": 0}, {"threshold": -1}, {"long_stall": 0}, {"interval": 0}, {"threshold": True}):
        with pytest.raises(ValueError, match="positive"):
            watch_stalls(**bad)
    with pytest.raises(ValueError, match="max_reports_per_minute"):
        watch_stalls(max_reports_per_minute=0)
    with pytest.raises(ValueError, match="dedup_interval"):
        watch_stalls(dedup_interval=-1)


def test_parse_duration() -> None:
    assert [_stall_env.parse_duration(t) for t in ("100ms", "0.25s", "1", " 2.5 ", "500us", ".5")] == [
        0.1,
        0.25,
        1.0,
        2.5,
        0.0005,
        0.5,
    ]
    for bad in ("", "fast", "0", "-1s", "10 minutes"):
        with pytest.raises(ValueError, match=r"not a duration|must be positive"):
            _stall_env.parse_duration(bad)


# --- a debugger, a paused process ---------------------------------------------------------------


async def under_debugger() -> None:
    import bdb

    bdb.Bdb().runcall(time.sleep, BLOCK)  # debugger


def test_a_loop_stopped_in_a_debugger_is_not_a_stall() -> None:
    """The loop thread inside ``bdb`` (pdb's base) while it stalls: no report."""
    assert watched(under_debugger) == []
    assert stall_summary() == {}


PAUSED = """\
import asyncio, sys, time
import async_trace

async def main():
    reports = []
    watch = async_trace.watch_stalls(0.1, on_stall=reports.append, log=False, dedup_interval=0)
    await asyncio.sleep(0.2)
    print("ready", flush=True)
    await asyncio.sleep(2.5)  # the parent stops this process for 1 s meanwhile
    time.sleep(0.3)  # a real stall after it
    await asyncio.sleep(0.3)
    watch.stop()
    for report in reports:
        print(report.kind, report.source, round(report.duration, 1))
    print("pauses", watch.pauses)

asyncio.run(main())
"""


@pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="POSIX signals")
def test_a_paused_process_reports_no_stall(tmp_path: Path) -> None:
    """SIGSTOP for a second, then SIGCONT: no report for the pause; the stall after it is reported."""
    script = tmp_path / "paused.py"
    script.write_text(PAUSED)
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": ROOT},
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
        time.sleep(0.2)
        proc.send_signal(signal.SIGSTOP)
        time.sleep(1.0)
        proc.send_signal(signal.SIGCONT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert out.splitlines() == ["blocking __main__:main 0.3", "pauses 1"]


# --- the environment variable and the command line ------------------------------------------------

SERVER = """\
import asyncio, time
import async_trace  # the environment variable starts the watch here

async def handle():
    time.sleep(0.3)  # blocks

async def main():
    await asyncio.sleep(1.5)  # the watch finds this loop within a second
    await asyncio.create_task(handle())
    await asyncio.sleep(0.3)

asyncio.run(main())
"""


def test_the_environment_variable_watches_every_loop(tmp_path: Path) -> None:
    """``ASYNC_TRACE_STALL_THRESHOLD=100ms``: a process that imports async_trace logs its stalls to stderr."""
    script = tmp_path / "server.py"
    script.write_text(SERVER)
    result = run_python(str(script), env={"ASYNC_TRACE_STALL_THRESHOLD": "100ms", "PYTHONPATH": ROOT})
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert re.fullmatch(
        r"Event loop blocked for 0\.\d\d\d s \(threshold 0\.100 s\): code running on the loop, "
        r"in __main__:handle, task 'Task-2'",
        lines[0],
    ), lines
    assert lines[1:] == [
        "↑ handle() at line 5 [server.py]",
        "  ↑ main() at line 9 [server.py]",
        "    ↑ Task-1",
    ]


def test_a_bad_environment_variable_is_said_and_ignored(tmp_path: Path) -> None:
    result = run_python("-c", "import async_trace", env={"ASYNC_TRACE_STALL_THRESHOLD": "soon", "PYTHONPATH": ROOT})
    assert result.returncode == 0
    assert result.stderr == (
        "async_trace: ASYNC_TRACE_STALL_THRESHOLD: not a duration: 'soon' (examples: 100ms, 0.25s, 1); "
        "no stall watchdog\n"
    )


WORKERS = """\
import asyncio, multiprocessing, sys, time

async def handle(tag):
    time.sleep(0.3)  # blocks

async def main(tag):
    await asyncio.sleep(1.5)  # the watch finds this loop within a second
    await asyncio.create_task(handle(tag), name=tag)
    await asyncio.sleep(0.3)

def run(tag):
    asyncio.run(main(tag))

if __name__ == "__main__":
    method = sys.argv[1]
    if method == "self":
        run("self")
    else:
        child = multiprocessing.get_context(method).Process(target=run, args=(method,))
        child.start()
        child.join(30)
        sys.exit(child.exitcode)
"""


@pytest.mark.parametrize("method", ["self", "spawn", "fork"])
def test_the_command_line_watches_the_program_and_its_workers(tmp_path: Path, method: str) -> None:
    """``python -m async_trace --stall-threshold 100ms``: the program's stalls, and its multiprocessing children's."""
    if method == "fork" and not hasattr(os, "fork"):
        pytest.skip("no fork")
    script = tmp_path / "workers.py"
    script.write_text(WORKERS)
    result = run_python(
        "-m", "async_trace", "--stall-threshold", "100ms", str(script), method, env={"PYTHONPATH": ROOT}
    )
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if "DeprecationWarning" not in line]
    assert re.fullmatch(
        r"Event loop blocked for 0\.\d\d\d s \(threshold 0\.100 s\): code running on the loop, "
        rf"in (__main__|__mp_main__):handle, task '{method}'",
        lines[0],
    ), result.stderr
    assert lines[1] == "↑ handle() at line 4 [workers.py]"
    assert len([line for line in lines if line.startswith("Event loop blocked")]) == 1


def test_the_command_line_checks_the_threshold(tmp_path: Path) -> None:
    result = run_python("-m", "async_trace", "--stall-threshold", "soon", "x.py", env={"PYTHONPATH": ROOT})
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        "python -m async_trace: error: argument --stall-threshold: not a duration: 'soon' (examples: 100ms, 0.25s, 1)"
    )


# --- stuck tasks: ages in the task tree -------------------------------------------------------------


async def stuck(event: asyncio.Event) -> None:
    await event.wait()  # stuck


async def busy(stop: asyncio.Event) -> None:
    while not stop.is_set():
        await asyncio.sleep(0.01)


def test_a_running_watch_gives_task_ages_and_the_tree_lists_only_old_or_idle_tasks() -> None:
    """While a watch runs, each task's age and idleness are known; ``min_idle`` keeps only the stuck ones."""

    async def main() -> None:
        asyncio.current_task().set_name("main")  # type: ignore[union-attr]
        event, stop = asyncio.Event(), asyncio.Event()
        with watch_stalls(THRESHOLD, log=False, discover_interval=0.1):
            stuck_task = asyncio.create_task(stuck(event), name="stuck")
            busy_task = asyncio.create_task(busy(stop), name="busy")
            await asyncio.sleep(1.4)
            tree = async_trace.task_tree()
            infos = {info.name: info for _, info in tree.walk()}
            stuck_age, stuck_idle = infos["stuck"].age, infos["stuck"].idle
            assert stuck_age is not None
            assert stuck_idle is not None
            # First seen by a census within 0.1 s of its start; a loaded machine may oversleep.
            assert 1.0 <= stuck_idle <= stuck_age <= 1.4 + 1.0
            assert infos["busy"].age is not None
            assert infos["busy"].idle is not None
            assert infos["busy"].idle < 0.5
            idle = async_trace.task_tree(min_idle=1.0)
            assert [(depth, info.name) for depth, info in idle.walk()] == [(0, "main"), (1, "stuck")]
            assert async_trace.task_tree(min_age=60).roots == ()
            main_info = idle.roots[0]
            lines = async_trace.format_task_tree(idle)
            assert lines[1] == f"main (running, {_whole(main_info.age)} s old, idle {_whole(main_info.idle)} s)\n"
            stuck_info = idle.roots[0].children[0]
            title = f"stuck (pending, {_whole(stuck_info.age)} s old, idle {_whole(stuck_info.idle)} s)"
            assert lines[3].startswith(f"└── {title} ← main() at line")
            out = io.StringIO()
            async_trace.dump_tasks(out, min_idle=1.0)
            assert "stuck (pending, " in out.getvalue()
            assert "busy" not in out.getvalue()
            stop.set()
            event.set()
            await asyncio.gather(stuck_task, busy_task)
        # Without a watch nothing new is known.
        fresh = asyncio.create_task(asyncio.sleep(0.01), name="fresh")
        info = async_trace.task_tree().find("fresh")
        assert info is not None
        assert (info.age, info.idle) == (None, None)
        await fresh

    asyncio.run(main())


def _whole(seconds: float | None) -> int:
    assert seconds is not None
    return int(seconds)


def test_stop_right_after_a_stall_reports_it() -> None:
    """``stop()`` on the loop's thread just after the loop blocked: the stall is reported, from ``stop()``."""
    reports: list[StallReport] = []

    async def main() -> None:
        watch = watch_stalls(THRESHOLD, loop=asyncio.get_running_loop(), on_stall=reports.append, log=False)
        await asyncio.sleep(0.05)
        time.sleep(BLOCK)  # last
        watch.stop()
        assert len(reports) == 1
        assert (reports[0].stack[0]["name"], reports[0].stack[0]["line"]) == ("main", line_of(main, "last"))
        assert near(reports[0].duration)

    asyncio.run(main())
    assert len(reports) == 1


def test_stop_after_the_loop_ended_reports_nothing_more() -> None:
    """A loop that stopped does not beat: stopping its watch afterwards, from its thread, is no stall."""
    reports: list[StallReport] = []

    async def main() -> StallWatch:
        watch = watch_stalls(THRESHOLD, loop=asyncio.get_running_loop(), on_stall=reports.append, log=False)
        await asyncio.sleep(0.05)
        return watch

    watch = asyncio.run(main())
    time.sleep(BLOCK)
    watch.stop()
    assert reports == []
