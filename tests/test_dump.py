"""dump_tasks / dump_tasks_on_signal: every running loop's tree on demand, also from a busy process."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import async_trace
from async_trace import cancel_dump_tasks_on_signal, dump_tasks, dump_tasks_on_signal

from .helpers import line_of, run_python

POSIX = hasattr(signal, "SIGUSR1")
needs_posix = pytest.mark.skipif(not POSIX, reason="dumping on a signal is POSIX-only")


@pytest.fixture(autouse=True)
def _no_dump_left() -> Iterator[None]:
    yield
    if POSIX:
        cancel_dump_tasks_on_signal(signal.SIGUSR1)
        cancel_dump_tasks_on_signal(signal.SIGUSR2)


def _uvloop_loop() -> asyncio.AbstractEventLoop:
    uvloop = pytest.importorskip("uvloop")
    return uvloop.new_event_loop()  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("new_loop", "traced_from_start"),
    [(asyncio.new_event_loop, True), (_uvloop_loop, True), (asyncio.new_event_loop, False)],
    ids=["asyncio", "uvloop", "asyncio-started-untraced"],
)
def test_dump_tasks_shows_every_running_loop(
    new_loop: Callable[[], asyncio.AbstractEventLoop], traced_from_start: bool
) -> None:
    """Loops running in other threads are found, also on 3.14+ where C tasks are in no Python registry.

    A loop started while tracing was off is found by its ``run_forever`` frame.
    """
    loops: list[asyncio.AbstractEventLoop] = []
    started = threading.Barrier(3)
    stop = threading.Event()

    async def serve(name: str) -> None:
        asyncio.current_task().set_name(name)  # type: ignore[union-attr]
        asyncio.create_task(asyncio.sleep(3600), name=f"{name}-child")
        started.wait(10)
        while not stop.is_set():
            await asyncio.sleep(0.01)

    def thread_main(name: str) -> None:
        loop = new_loop()
        loops.append(loop)
        try:
            loop.run_until_complete(serve(name))
        finally:
            for task in asyncio.all_tasks(loop):
                task.cancel()
            loop.run_until_complete(asyncio.sleep(0))
            loop.close()

    threads = [threading.Thread(target=thread_main, args=(n,), name=f"thread-{n}") for n in ("alpha", "beta")]
    if not traced_from_start:
        async_trace.disable_tracing()
    try:
        for t in threads:
            t.start()
        started.wait(10)
        async_trace.enable_tracing()
        out = io.StringIO()
        dump_tasks(out)
    finally:
        async_trace.enable_tracing()
        stop.set()
        for t in threads:
            t.join(10)
    text = out.getvalue()
    assert text.startswith("Async task dump: 2 running event loops\n"), text
    for name in ("alpha", "beta"):
        assert f"in thread 'thread-{name}':\n" in text
        assert f"\n{name} (" in text
        if traced_from_start:
            assert f"── {name}-child (pending) ← serve() at line" in text
        else:
            assert f"{name}-child (pending, unknown origin)\n" in text


def test_dump_with_no_loop_running() -> None:
    out = io.StringIO()
    dump_tasks(out)
    assert out.getvalue() == "Async task dump: 0 running event loops\n"


@needs_posix
def test_register_and_cancel_restore_the_previous_handler() -> None:
    calls: list[int] = []

    def previous(signum: int, frame: object) -> None:
        calls.append(signum)

    old = signal.signal(signal.SIGUSR2, previous)
    try:
        out = io.StringIO()
        dump_tasks_on_signal(signal.SIGUSR2, out, chain=True)
        assert signal.getsignal(signal.SIGUSR2) is not previous
        os.kill(os.getpid(), signal.SIGUSR2)
        time.sleep(0.05)  # the handler runs at the next bytecode boundary of the main thread
        assert out.getvalue().startswith("Async task dump: 0 running event loops\n")
        assert calls == [signal.SIGUSR2]  # chained
        dump_tasks_on_signal(signal.SIGUSR2, out)  # registering again keeps the original to restore
        assert cancel_dump_tasks_on_signal(signal.SIGUSR2) is True
        assert signal.getsignal(signal.SIGUSR2) is previous
        assert cancel_dump_tasks_on_signal(signal.SIGUSR2) is False
    finally:
        signal.signal(signal.SIGUSR2, old)


@needs_posix
def test_default_signal_is_sigusr1() -> None:
    before = signal.getsignal(signal.SIGUSR1)
    dump_tasks_on_signal()
    assert signal.getsignal(signal.SIGUSR1) is not before
    assert cancel_dump_tasks_on_signal() is True
    assert signal.getsignal(signal.SIGUSR1) is before


def test_registering_from_another_thread_is_a_value_error() -> None:
    errors: list[BaseException] = []

    def register() -> None:
        try:
            dump_tasks_on_signal(getattr(signal, "SIGUSR1", signal.SIGTERM))
        except ValueError as exc:
            errors.append(exc)

    t = threading.Thread(target=register)
    t.start()
    t.join()
    assert len(errors) == 1


def test_unknown_style_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="style must be one of"):
        dump_tasks_on_signal(style="tree")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="style must be one of"):
        dump_tasks(io.StringIO(), style="tree")  # type: ignore[arg-type]


BUSY = """\
    import asyncio
    import threading
    import time

    import async_trace

    async_trace.dump_tasks_on_signal()
    in_thread = threading.Event()


    def blocking():
        in_thread.set()
        time.sleep(30)  # blocking


    async def idle():
        await asyncio.sleep(3600)  # idle


    async def busy():
        print("busy", flush=True)
        deadline = time.monotonic() + 30
        # One line: the signal lands on it whichever instruction runs (3.14 gives `pass` a line of its own).
        while time.monotonic() < deadline: pass  # spin


    async def main():
        asyncio.create_task(idle(), name="idle")  # spawn-idle
        asyncio.create_task(asyncio.to_thread(blocking), name="offload")  # spawn-offload
        while not in_thread.is_set():
            await asyncio.sleep(0.01)
        await asyncio.create_task(busy(), name="busy")  # spawn-busy


    asyncio.run(main())
"""


def _marker(text: str, marker: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if line.rstrip().endswith(f"# {marker}"))


def _run_and_signal(cmd: list[str], source: str, cwd: Path) -> str:
    """Start ``cmd``, wait for its 'busy' line, send SIGUSR1, return what it wrote to stderr."""
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "busy\n"
        time.sleep(0.2)
        proc.send_signal(signal.SIGUSR1)
        time.sleep(1.0)
    finally:
        proc.kill()
        _, err = proc.communicate(timeout=30)
    return err


@needs_posix
def test_signal_dump_from_a_busy_loop(tmp_path: Path) -> None:
    """The loop's thread spins in a task; SIGUSR1 still prints the tree, the running task and the thread."""
    path = tmp_path / "busy.py"
    source = textwrap.dedent(BUSY)
    path.write_text(source, encoding="utf-8")
    err = _run_and_signal([sys.executable, str(path)], source, tmp_path)
    line = {m: _marker(source, m) for m in ("spawn-idle", "spawn-offload", "spawn-busy", "idle", "spin", "blocking")}
    assert err.startswith("Async task dump: 1 running event loop\n\nLoop _UnixSelectorEventLoop at 0x"), err
    assert " in thread 'MainThread':\nTask tree (4 live tasks):\n" in err
    expected = [
        "Task-1 (pending)",
        f"│   ↑ main() at line {line['spawn-busy']} [busy.py]",
        f"├── idle (pending) ← main() at line {line['spawn-idle']} [busy.py]",
        f"│       ↑ idle() at line {line['idle']} [busy.py]",
        f"├── offload (pending) ← main() at line {line['spawn-offload']} [busy.py]",
        "│       executor thread 'asyncio_0':",
        f"│         ↑ blocking() at line {line['blocking']} [busy.py]",
        f"└── busy (running) ← main() at line {line['spawn-busy']} [busy.py]",
        f"        ↑ busy() at line {line['spin']} [busy.py]",
    ]
    lines = err.splitlines()
    start = lines.index("Task-1 (pending)")
    assert lines[start : start + len(expected)] == expected


@needs_posix
def test_cli_dump_signal(tmp_path: Path) -> None:
    """python -m async_trace --dump-signal USR1: the same dump without touching the program."""
    path = tmp_path / "busy.py"
    source = textwrap.dedent(BUSY).replace("async_trace.dump_tasks_on_signal()\n", "")
    path.write_text(source, encoding="utf-8")
    cmd = [sys.executable, "-m", "async_trace", "--style", "arrows", "--dump-signal", "USR1", str(path)]
    err = _run_and_signal(cmd, source, tmp_path)
    assert err.startswith("Async task dump: 1 running event loop\n"), err
    assert f"└── busy (running) ← main() at line {_marker(source, 'spawn-busy')} [busy.py]\n" in err


def test_cli_rejects_an_unknown_signal(tmp_path: Path) -> None:
    script = tmp_path / "ok.py"
    script.write_text("print('ran')\n", encoding="utf-8")
    result = run_python("-m", "async_trace", "--dump-signal", "NOPE", str(script), timeout=60)
    assert result.returncode == 2
    assert "unknown signal 'NOPE'" in result.stderr
    assert result.stdout == ""


def test_public_names() -> None:
    for name in ("dump_tasks", "dump_tasks_on_signal", "cancel_dump_tasks_on_signal"):
        assert name in async_trace.__all__


def test_dump_tasks_summary_groups_each_loops_tasks() -> None:
    async def idle() -> None:
        await asyncio.sleep(3600)  # idle

    async def main() -> str:
        tasks = []
        for _ in range(5):
            tasks.append(asyncio.create_task(idle()))  # spawn
        await asyncio.sleep(0)
        out = io.StringIO()
        dump_tasks(out, summary=True)  # dump
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return out.getvalue()

    text = asyncio.run(main())
    lines = text.splitlines()
    assert lines[0] == "Async task dump: 1 running event loop"
    assert lines[3:] == [
        "Task groups (6 live tasks in 2 groups, largest first):",
        f"5 tasks  pending at idle() at line {line_of(idle, 'idle')} [test_dump.py], "
        f"created at main() at line {line_of(main, 'spawn')} [test_dump.py]",
        f"1 task  running at main() at line {line_of(main, 'dump')} [test_dump.py], a root task",
    ]


@needs_posix
def test_cli_dump_signal_summary(tmp_path: Path) -> None:
    """--dump-signal USR1 --summary: the grouped view, one line per creation and suspended site."""
    path = tmp_path / "busy.py"
    source = textwrap.dedent(BUSY).replace("async_trace.dump_tasks_on_signal()\n", "")
    path.write_text(source, encoding="utf-8")
    cmd = [sys.executable, "-m", "async_trace", "--style", "arrows", "--dump-signal", "USR1", "--summary", str(path)]
    err = _run_and_signal(cmd, source, tmp_path)
    line = {m: _marker(source, m) for m in ("spawn-idle", "spawn-offload", "spawn-busy", "idle", "spin")}
    assert err.startswith("Async task dump: 1 running event loop\n"), err
    lines = err.splitlines()
    start = lines.index("Task groups (4 live tasks in 4 groups, largest first):")
    assert lines[start + 1 : start + 5] == [
        f"1 task  pending at main() at line {line['spawn-busy']} [busy.py], a root task",
        f"1 task  pending at idle() at line {line['idle']} [busy.py], "
        f"created at main() at line {line['spawn-idle']} [busy.py]",
        # asyncio.to_thread's own coroutine: no frame of the program's.
        f"1 task  pending, created at main() at line {line['spawn-offload']} [busy.py]",
        f"1 task  running at busy() at line {line['spin']} [busy.py], "
        f"created at main() at line {line['spawn-busy']} [busy.py]",
    ]


def test_cli_summary_needs_dump_signal(tmp_path: Path) -> None:
    script = tmp_path / "ok.py"
    script.write_text("print('ran')\n", encoding="utf-8")
    result = run_python("-m", "async_trace", "--summary", str(script), timeout=60)
    assert (result.returncode, result.stdout) == (2, "")
    assert "--summary needs --dump-signal" in result.stderr
