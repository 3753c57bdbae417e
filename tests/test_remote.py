"""``python -m async_trace ps|pstree PID``: a real child process read from outside (3.14+: ``sys.remote_exec``)."""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import async_trace
from async_trace import _pstree

from .doc_blocks import doc_block
from .test_cli import marker_line

REMOTE = hasattr(sys, "remote_exec")
needs_remote = pytest.mark.skipif(not REMOTE, reason="sys.remote_exec is 3.14+")
HERE = f"{sys.version_info[0]}.{sys.version_info[1]}"

CHILD = """\
    import asyncio
    import threading

    import async_trace

    release = threading.Event()


    def blocking_call():
        release.wait()  # blocked


    async def in_thread():
        await asyncio.to_thread(blocking_call)  # to-thread


    async def sleeper():
        await asyncio.sleep(3600)  # sleeping


    async def spawner():
        asyncio.create_task(sleeper(), name="grandchild")  # spawn-grandchild
        await asyncio.sleep(3600)  # spawner-sleeping


    def tick():
        # Keeps the loop busy, so that the process reaches a safe point, without a task.
        asyncio.get_running_loop().call_later(0.05, tick)


    async def main():
        asyncio.create_task(in_thread(), name="in-thread")  # spawn-in-thread
        asyncio.create_task(spawner(), name="spawner")  # spawn-spawner
        tick()
        await asyncio.sleep(0.1)
        print("ready", flush=True)
        await asyncio.get_running_loop().create_future()  # main-waits


    asyncio.run(main())
"""


@functools.cache
def executor_threads_found() -> bool:
    """Whether this Python's task trees show executor threads (being fixed on 3.14, in another branch)."""
    release = threading.Event()

    async def main() -> bool:
        call = asyncio.create_task(asyncio.to_thread(release.wait))
        await asyncio.sleep(0.05)
        try:
            return any(info.executor_threads for _, info in async_trace.task_tree().walk())
        finally:
            release.set()
            await call

    return asyncio.run(main())


@functools.cache
def other_threads_loops_found() -> bool:
    """Whether running_loops() finds a loop running in another thread (being fixed on 3.14, in another branch)."""
    from async_trace._discovery import running_loops

    started, stop = threading.Event(), threading.Event()

    async def serve() -> None:
        started.set()
        while not stop.is_set():
            await asyncio.sleep(0.01)

    thread = threading.Thread(target=asyncio.run, args=(serve(),))
    thread.start()
    try:
        started.wait(10)
        return len(running_loops()) == 1
    finally:
        stop.set()
        thread.join(10)


def awaiting_line(func: Any) -> int:
    """The line of the last ``await`` in a stdlib coroutine function (where its coroutine waits)."""
    lines, start = inspect.getsourcelines(func)
    return max(start + i for i, text in enumerate(lines) if "await " in text)


def write(path: Path, source: str) -> Path:
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    return path


@pytest.fixture
def tmpdir_for_cli(tmp_path: Path) -> Iterator[Path]:
    """The TMPDIR the CLI makes its private directory in; empty again after every run."""
    directory = tmp_path / "cli-tmp"
    directory.mkdir()
    yield directory
    assert list(directory.iterdir()) == []


class Child:
    """A child process started from a script; killed at the end, every wait bounded."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None, ready: bool = True) -> None:
        self.proc = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            env={**os.environ, **(env or {})},
        )
        self.pid = self.proc.pid
        if ready:
            assert self.proc.stdout is not None
            readable, _, _ = select.select([self.proc.stdout], [], [], 60)
            assert readable, "the child did not print 'ready' within 60 s"
            line = self.proc.stdout.readline()
            assert line == "ready\n", (line, self.stop())

    def stop(self) -> str:
        """Kill it; its stderr."""
        if self.proc.poll() is None:
            self.proc.kill()
        _, err = self.proc.communicate(timeout=30)
        return err


@pytest.fixture
def child() -> Iterator[Any]:
    started: list[Child] = []

    def start(args: list[str], env: dict[str, str] | None = None, ready: bool = True) -> Child:
        started.append(Child(args, env, ready))
        return started[-1]

    try:
        yield start
    finally:
        for c in started:
            c.stop()


def cli(*args: str, tmpdir: Path, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, sys.executable, "-m", "async_trace", *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env={**os.environ, "PYTHONIOENCODING": "utf-8", "TMPDIR": str(tmpdir)},
        timeout=120,
        check=False,
    )


def wait_until_blocked(pid: int) -> None:
    """Until the process sleeps in the same kernel wait for a while: it has stopped running bytecode."""
    seen: list[str] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            wchan = Path(f"/proc/{pid}/wchan").read_text()
        except OSError:
            time.sleep(0.5)  # no /proc: give it time
            return
        seen.append(wchan)
        if len(seen) >= 5 and len(set(seen[-5:])) == 1 and wchan not in ("", "0"):
            return
        time.sleep(0.03)
    raise AssertionError(f"process {pid} did not block: {seen[-5:]}")


def python_child(child: Any, path: Path, *options: str, env: dict[str, str] | None = None) -> Child:
    started: Child = child([sys.executable, *options, str(path)], env)
    return started


# --- the task tree, from outside ---------------------------------------------------


@needs_remote
def test_pstree_prints_the_task_tree_with_creation_lines(tmp_path: Path, tmpdir_for_cli: Path, child: Any) -> None:
    """pstree PID: the dump_tasks view of the child's loop, every line computed from the child's markers."""
    script = write(tmp_path / "child.py", CHILD)
    target = python_child(child, script)
    result = cli("pstree", str(target.pid), tmpdir=tmpdir_for_cli)
    line = functools.partial(marker_line, script)
    thread = []
    if executor_threads_found():
        thread = [
            "│       executor thread 'asyncio_0':\n",
            f"│         ↑ blocking_call() at line {line('blocked')} [child.py]\n",
        ]
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.splitlines(keepends=True) == [
        f"Async task dump of process {target.pid}: 1 running event loop\n",
        "\n",
        "Loop _UnixSelectorEventLoop in thread 'MainThread':\n",
        "Task tree (4 live tasks):\n",
        "Task-1 (pending)\n",
        f"│   ↑ main() at line {line('main-waits')} [child.py]\n",
        f"├── in-thread (pending) ← main() at line {line('spawn-in-thread')} [child.py]\n",
        f"│       ↑ in_thread() at line {line('to-thread')} [child.py]\n",
        *thread,
        f"└── spawner (pending) ← main() at line {line('spawn-spawner')} [child.py]\n",
        f"    │   ↑ spawner() at line {line('spawner-sleeping')} [child.py]\n",
        f"    └── grandchild (pending) ← spawner() at line {line('spawn-grandchild')} [child.py]\n",
        f"            ↑ sleeper() at line {line('sleeping')} [child.py]\n",
    ]


@needs_remote
@pytest.mark.xfail(not REMOTE or not executor_threads_found(), reason="executor threads on 3.14: another branch")
def test_pstree_shows_the_executor_thread(tmp_path: Path, tmpdir_for_cli: Path, child: Any) -> None:
    script = write(tmp_path / "child.py", CHILD)
    target = python_child(child, script)
    result = cli("pstree", str(target.pid), tmpdir=tmpdir_for_cli)
    assert f"↑ blocking_call() at line {marker_line(script, 'blocked')} [child.py]\n" in result.stdout


def columns(table: str) -> list[dict[str, str]]:
    """``ps``'s rows as dicts, cut at the header's column starts (cells may be empty)."""
    header, rule, *rows = table.splitlines()
    starts = [0] + [i + 2 for i in range(len(rule)) if rule.startswith("  -", i)]
    names = [header[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
    return [
        {name: row[a:b].strip() for name, a, b in zip(names, starts, [*starts[1:], None], strict=True)} for row in rows
    ]


@needs_remote
def test_ps_prints_one_row_per_task(tmp_path: Path, tmpdir_for_cli: Path, child: Any) -> None:
    """ps PID: thread, task id, name, state, origin, created at, suspended at, parent, parent id, awaited by."""
    script = write(tmp_path / "child.py", CHILD)
    target = python_child(child, script)
    result = cli("ps", str(target.pid), tmpdir=tmpdir_for_cli)
    assert (result.returncode, result.stderr) == (0, "")
    header = result.stdout.splitlines()[0]
    assert [c.strip() for c in header.split("  ") if c] == [
        "thread", "task id", "name", "state", "origin", "created at", "suspended at", "parent", "parent id",
        "awaited by",
    ]  # fmt: skip
    rows = columns(result.stdout)
    ids = {row["name"]: row["task id"] for row in rows}
    line = functools.partial(marker_line, script)
    expected = [
        ("Task-1", "pending", "root", "", f"main child.py:{line('main-waits')}", ""),
        ("in-thread", "pending", "traced", f"main child.py:{line('spawn-in-thread')}",
         f"in_thread child.py:{line('to-thread')}", "Task-1"),
        ("spawner", "pending", "traced", f"main child.py:{line('spawn-spawner')}",
         f"spawner child.py:{line('spawner-sleeping')}", "Task-1"),
        ("grandchild", "pending", "traced", f"spawner child.py:{line('spawn-grandchild')}",
         f"sleeper child.py:{line('sleeping')}", "spawner"),
    ]  # fmt: skip
    assert [
        (r["name"], r["state"], r["origin"], r["created at"], r["suspended at"], r["parent"]) for r in rows
    ] == expected
    assert {r["thread"] for r in rows} == {"MainThread"}
    for r in rows:
        assert r["task id"].startswith("0x")
        assert r["parent id"] == (ids[r["parent"]] if r["parent"] else "")
        assert r["awaited by"] == ""  # no task of CHILD awaits another


AWAITERS = """\
    import asyncio

    import async_trace


    async def work():
        await asyncio.sleep(3600)  # working


    async def watch(task):
        await task  # watching


    def tick():
        asyncio.get_running_loop().call_later(0.05, tick)


    async def main():
        worker = asyncio.create_task(work(), name="worker")  # spawn-worker
        watcher = asyncio.create_task(watch(worker), name="watcher")  # spawn-watcher
        tick()
        await asyncio.sleep(0.1)
        print("ready", flush=True)
        await watcher  # main-waits


    asyncio.run(main())
"""


@needs_remote
def test_awaiters_from_outside(tmp_path: Path, tmpdir_for_cli: Path, child: Any) -> None:
    """A task awaited by a task that did not create it: pstree marks it, ps names the awaiter, JSON has its id."""
    script = write(tmp_path / "child.py", AWAITERS)
    target = python_child(child, script)
    line = functools.partial(marker_line, script)
    tree = cli("pstree", str(target.pid), tmpdir=tmpdir_for_cli)
    assert (tree.returncode, tree.stderr) == (0, "")
    assert (
        f"├── worker (pending) ← main() at line {line('spawn-worker')} [child.py]"
        "  [awaited by watcher, not its creator]\n"
        f"│       ↑ work() at line {line('working')} [child.py]\n"
        f"└── watcher (pending) ← main() at line {line('spawn-watcher')} [child.py]\n"
        f"        ↑ watch() at line {line('watching')} [child.py]\n"
    ) in tree.stdout
    rows = {r["name"]: r for r in columns(cli("ps", str(target.pid), tmpdir=tmpdir_for_cli).stdout)}
    assert (rows["worker"]["awaited by"], rows["watcher"]["awaited by"]) == ("watcher", "Task-1")
    data = json.loads(cli("pstree", str(target.pid), "--json", tmpdir=tmpdir_for_cli).stdout)
    tasks = {t["name"]: t for t in data["loops"][0]["tasks"]}
    assert tasks["worker"]["awaited_by"] == [tasks["watcher"]["id"]]
    assert tasks["watcher"]["awaited_by"] == [tasks["Task-1"]["id"]]
    assert tasks["Task-1"]["awaited_by"] == []


@needs_remote
def test_json_is_the_documented_shape(tmp_path: Path, tmpdir_for_cli: Path, child: Any) -> None:
    """--json: the envelope with one JSONTaskTree per running loop; parents and children by key."""
    script = write(tmp_path / "child.py", CHILD)
    target = python_child(child, script)
    result = cli("pstree", str(target.pid), "--json", tmpdir=tmpdir_for_cli)
    assert (result.returncode, result.stderr) == (0, "")
    data = json.loads(result.stdout)
    assert set(data) == {"pid", "python", "source", "creation_origins", "note", "loops", "await_graph"}
    assert data["pid"] == target.pid
    assert data["python"].startswith(HERE + ".")
    assert (data["source"], data["creation_origins"], data["note"], data["await_graph"]) == (
        "async_trace",
        True,
        None,
        [],
    )
    (loop,) = data["loops"]
    assert loop["loop"]["type"] == "_UnixSelectorEventLoop"
    assert loop["loop"]["thread_name"] == "MainThread"
    assert loop["live_count"] == 4
    tasks = loop["tasks"]
    assert [t["key"] for t in tasks] == list(range(4))
    assert loop["roots"] == [0]
    by_name = {t["name"]: t for t in tasks}
    assert [(t["name"], t["depth"], t["parent"]) for t in tasks] == [
        ("Task-1", 0, None),
        ("in-thread", 1, 0),
        ("spawner", 1, 0),
        ("grandchild", 2, 2),
    ]
    assert by_name["Task-1"]["children"] == [1, 2]
    assert by_name["spawner"]["children"] == [3]
    created = by_name["grandchild"]["created_at"][0]
    assert created == {
        "name": "spawner",
        "line": marker_line(script, "spawn-grandchild"),
        "filename": str(script),
        "indent": 0,
        "task": {"name": "grandchild", "id": by_name["grandchild"]["id"]},
        "is_executor": False,
        "is_process": False,
        "in_app": True,
    }
    assert by_name["grandchild"]["suspended_at"][0]["line"] == marker_line(script, "sleeping")
    assert all(t["state"] == "pending" and isinstance(t["id"], int) for t in tasks)
    assert [t["origin"] for t in tasks] == ["root", "traced", "traced", "traced"]
    if executor_threads_found():
        (thread,) = by_name["in-thread"]["executor_threads"]
        assert thread["frames"][0]["line"] == marker_line(script, "blocked")


def test_pstree_reads_age_and_idle_and_data_without_them() -> None:
    """A target running a stall watch sends each task's ``age`` and ``idle``; an older version's data has none."""

    async def tree_data() -> dict[str, Any]:
        asyncio.current_task().set_name("main")  # type: ignore[union-attr]
        return dict(async_trace.tree_to_dict(async_trace.task_tree()))

    data = asyncio.run(tree_data())
    (entry,) = data["tasks"]
    entry.update(age=125.0, idle=61.0)
    (info,) = _pstree._tree(data).roots
    assert (info.age, info.idle) == (125.0, 61.0)
    del entry["age"], entry["idle"]
    (info,) = _pstree._tree(data).roots
    assert (info.age, info.idle) == (None, None)


LOOP_IN_A_THREAD = """\
    import asyncio
    import threading
    import time

    import async_trace


    async def serve():
        asyncio.create_task(asyncio.sleep(3600), name="child")  # spawn
        while True:
            await asyncio.sleep(0.05)  # tick


    threading.Thread(target=asyncio.run, args=(serve(),), daemon=True, name="loop-thread").start()
    time.sleep(0.2)
    print("ready", flush=True)
    while True:
        time.sleep(0.05)
"""


@needs_remote
@pytest.mark.xfail(not REMOTE or not other_threads_loops_found(), reason="running_loops() on 3.14: another branch")
def test_a_loop_in_another_thread(tmp_path: Path, tmpdir_for_cli: Path, child: Any) -> None:
    """The script runs in the main thread; a loop running in another thread is read from there."""
    script = write(tmp_path / "threaded.py", LOOP_IN_A_THREAD)
    target = python_child(child, script)
    result = cli("pstree", str(target.pid), tmpdir=tmpdir_for_cli)
    assert (result.returncode, result.stderr) == (0, "")
    lines = result.stdout.splitlines()
    assert lines[2] == "Loop _UnixSelectorEventLoop in thread 'loop-thread':"
    assert f"└── child (pending) ← serve() at line {marker_line(script, 'spawn')} [threaded.py]" in lines


BUSY_TASK = """\
    import asyncio

    import async_trace


    def spin():
        x = 0
        while True:
            x += 1  # spinning


    async def busy():
        spin()  # calls-spin


    async def main():
        print("ready", flush=True)
        await asyncio.create_task(busy(), name="busy")  # spawn


    asyncio.run(main())
"""


@needs_remote
def test_a_task_busy_in_python_code_is_shown_running(tmp_path: Path, tmpdir_for_cli: Path, child: Any) -> None:
    """The script runs in the middle of the busy task: shown running where it is, without the script's frames."""
    script = write(tmp_path / "busy.py", BUSY_TASK)
    target = python_child(child, script)
    result = cli("pstree", str(target.pid), tmpdir=tmpdir_for_cli)
    line = functools.partial(marker_line, script)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.splitlines(keepends=True)[3:] == [
        "Task tree (2 live tasks):\n",
        "Task-1 (pending)\n",
        f"│   ↑ main() at line {line('spawn')} [busy.py]\n",
        f"└── busy (running) ← main() at line {line('spawn')} [busy.py]\n",
        f"        ↑ spin() at line {line('spinning')} [busy.py]\n",
        f"        ↑ busy() at line {line('calls-spin')} [busy.py]\n",
    ]


# --- targets without async_trace, and idle ones ------------------------------------


@needs_remote
def test_a_target_without_async_trace_gives_asyncios_call_graph(
    tmp_path: Path, tmpdir_for_cli: Path, child: Any
) -> None:
    """No async_trace in the target: asyncio.capture_call_graph's await graph, and a line saying origins are missing."""
    script = write(tmp_path / "plain.py", CHILD.replace("    import async_trace\n", ""))
    target = python_child(child, script)
    result = cli("pstree", str(target.pid), tmpdir=tmpdir_for_cli)
    line = functools.partial(marker_line, script)
    assert result.returncode == 0
    assert result.stderr == (
        f"python -m async_trace pstree: process {target.pid} did not import async_trace: creation origins are "
        "missing; showing asyncio's await graph (asyncio.capture_call_graph)\n"
    )
    # asyncio's own coroutines (sleep, to_thread) are in its graph, at their lines in the stdlib.
    sleep, to_thread = awaiting_line(asyncio.sleep), awaiting_line(asyncio.to_thread)
    assert result.stdout.splitlines(keepends=True) == [
        f"Await graph of process {target.pid} (each task under the task awaiting it; no creation origins): "
        "1 event loop\n",
        "\n",
        "Loop in thread 'MainThread':\n",
        "Task-1\n",
        f"    ↑ main() at line {line('main-waits')} [plain.py]\n",
        "grandchild\n",
        f"    ↑ sleep() at line {sleep} [asyncio/tasks.py]\n",
        f"    ↑ sleeper() at line {line('sleeping')} [plain.py]\n",
        "in-thread\n",
        f"    ↑ to_thread() at line {to_thread} [asyncio/threads.py]\n",
        f"    ↑ in_thread() at line {line('to-thread')} [plain.py]\n",
        "spawner\n",
        f"    ↑ sleep() at line {sleep} [asyncio/tasks.py]\n",
        f"    ↑ spawner() at line {line('spawner-sleeping')} [plain.py]\n",
    ]
    as_json = json.loads(cli("ps", str(target.pid), "--json", tmpdir=tmpdir_for_cli).stdout)
    assert (as_json["source"], as_json["creation_origins"], as_json["loops"]) == ("capture_call_graph", False, [])
    assert sorted(t["name"] for t in as_json["await_graph"][0]["tasks"]) == [
        "Task-1",
        "grandchild",
        "in-thread",
        "spawner",
    ]


IDLE = """\
    import asyncio

    import async_trace


    async def waiter():
        await asyncio.get_running_loop().create_future()  # waits


    async def main():
        task = asyncio.create_task(waiter(), name="waiter")
        await asyncio.sleep(0)
        print("ready", flush=True)
        await task  # awaits-waiter


    asyncio.run(main())
"""


@needs_remote
def test_an_idle_loop_never_runs_the_script_so_asyncios_reader_answers(
    tmp_path: Path, tmpdir_for_cli: Path, child: Any
) -> None:
    """A loop asleep in select() never reaches a safe point: after --timeout, _remote_debugging's graph (status 9)."""
    script = write(tmp_path / "idle.py", IDLE)
    target = python_child(child, script)
    wait_until_blocked(target.pid)
    result = cli("pstree", str(target.pid), "--timeout", "0.5", tmpdir=tmpdir_for_cli)
    line = functools.partial(marker_line, script)
    assert result.returncode == _pstree.TIMEOUT == 9
    assert result.stderr == (
        f"python -m async_trace pstree: process {target.pid} did not run the async-trace script within 0.5 s "
        "(an idle event loop never does): creation origins could not be collected; showing asyncio's await "
        "graph, read from outside\n"
    )
    assert result.stdout.splitlines(keepends=True) == [
        f"Await graph of process {target.pid} (each task under the task awaiting it; no creation origins): "
        "1 event loop\n",
        "\n",
        f"Loop in thread {target.pid}:\n",
        "Task-1\n",
        f"│   ↑ main() at line {line('awaits-waiter')} [idle.py]\n",
        f"└── waiter ← awaited at main() at line {line('awaits-waiter')} [idle.py]\n",
        f"        ↑ waiter() at line {line('waits')} [idle.py]\n",
    ]
    table = columns(cli("ps", str(target.pid), "--timeout", "0.5", tmpdir=tmpdir_for_cli).stdout)
    assert [(r["name"], r["awaited by"], r["awaited at"]) for r in table] == [
        ("Task-1", "", ""),
        ("waiter", "Task-1", f"main idle.py:{line('awaits-waiter')}"),
    ]
    as_json = json.loads(cli("pstree", str(target.pid), "--json", "--timeout", "0.5", tmpdir=tmpdir_for_cli).stdout)
    assert (as_json["source"], as_json["creation_origins"]) == ("remote_debugging", False)


@needs_remote
def test_when_asyncios_reader_fails_too(
    tmp_path: Path,
    tmpdir_for_cli: Path,
    child: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """No answer in time and the out-of-process reader fails: one line, status 10."""
    target = python_child(child, write(tmp_path / "idle.py", IDLE))
    wait_until_blocked(target.pid)

    class Failing:
        def __init__(self, pid: int) -> None:
            raise RuntimeError("cannot read it")

    fake = type(sys)("_remote_debugging")
    fake.RemoteUnwinder = Failing  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "_remote_debugging", fake)
    monkeypatch.setenv("TMPDIR", str(tmpdir_for_cli))
    monkeypatch.setattr("tempfile.tempdir", None)
    assert _pstree.main("pstree", [str(target.pid), "--timeout", "0.3"]) == _pstree.NO_ANSWER == 10
    assert capsys.readouterr().err == (
        f"python -m async_trace pstree: process {target.pid} did not run the async-trace script within 0.3 s "
        "(an idle event loop never does), and asyncio's reader failed: cannot attach to process "
        f"{target.pid}: cannot read it\n"
    )


# --- errors ---------------------------------------------------------------------------


def _gone_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(timeout=60)
    return proc.pid


@needs_remote
@pytest.mark.parametrize("command", ["ps", "pstree"])
def test_no_such_process(command: str, tmpdir_for_cli: Path) -> None:
    pid = _gone_pid()
    result = cli(command, str(pid), tmpdir=tmpdir_for_cli)
    assert (result.returncode, result.stdout) == (4, "")
    assert result.stderr == f"python -m async_trace {command}: no process with PID {pid}\n"


@needs_remote
def test_a_target_older_than_314(tmp_path: Path, tmpdir_for_cli: Path, child: Any) -> None:
    """A process whose executable is python3.11: told it needs 3.14+, pointed to --dump-signal (status 5)."""
    sleep = shutil.which("sleep")
    assert sleep is not None
    fake = tmp_path / "python3.11"
    shutil.copy(sleep, fake)
    target = child([str(fake), "600"], ready=False)
    result = cli("pstree", str(target.pid), tmpdir=tmpdir_for_cli)
    assert (result.returncode, result.stdout) == (5, "")
    assert result.stderr == (
        f"python -m async_trace pstree: process {target.pid} runs Python 3.11; reading a process needs 3.14+: "
        "run it under `python -m async_trace --dump-signal USR1` and send it SIGUSR1 instead\n"
    )


@needs_remote
def test_a_process_that_is_not_python(tmpdir_for_cli: Path, child: Any) -> None:
    sleep = shutil.which("sleep")
    assert sleep is not None
    target = child([sleep, "600"], ready=False)
    result = cli("pstree", str(target.pid), tmpdir=tmpdir_for_cli)
    assert (result.returncode, result.stdout) == (5, "")
    assert result.stderr.startswith(
        f"python -m async_trace pstree: process {target.pid} is not a Python 3.14+ process ("
    )
    assert result.stderr.count("\n") == 1


OTHER = "python3.15" if sys.version_info[:2] == (3, 14) else "python3.14"


@needs_remote
@pytest.mark.skipif(shutil.which(OTHER) is None, reason=f"needs {OTHER} on PATH")
def test_a_target_of_another_python_version(tmp_path: Path, tmpdir_for_cli: Path, child: Any) -> None:
    """remote_exec needs the same minor version on both sides: told which python to run."""
    script = write(tmp_path / "idle.py", IDLE.replace("    import async_trace\n", ""))
    target = child([str(shutil.which(OTHER)), str(script)])
    result = cli("pstree", str(target.pid), tmpdir=tmpdir_for_cli)
    version = OTHER.removeprefix("python")
    assert (result.returncode, result.stdout) == (5, "")
    assert result.stderr == (
        f"python -m async_trace pstree: process {target.pid} runs Python {version}, this is {HERE}: "
        f"run `python{version} -m async_trace` (the versions must match)\n"
    )


@needs_remote
@pytest.mark.parametrize(
    ("options", "env"),
    [([], {"PYTHON_DISABLE_REMOTE_DEBUG": "1"}), (["-X", "disable-remote-debug"], {})],
    ids=["env", "X-option"],
)
def test_remote_debugging_disabled_in_the_target(
    options: list[str], env: dict[str, str], tmp_path: Path, tmpdir_for_cli: Path, child: Any
) -> None:
    target = python_child(child, write(tmp_path / "child.py", CHILD), *options, env=env)
    result = cli("pstree", str(target.pid), tmpdir=tmpdir_for_cli)
    assert (result.returncode, result.stdout) == (6, "")
    assert result.stderr == (
        f"python -m async_trace pstree: remote debugging is disabled in process {target.pid} "
        "(PYTHON_DISABLE_REMOTE_DEBUG or -X disable-remote-debug)\n"
    )


ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@needs_remote
@pytest.mark.skipif(not ROOT or shutil.which("setpriv") is None, reason="runs the CLI as nobody: needs root, setpriv")
def test_no_permission(tmp_path: Path, child: Any) -> None:
    """A user who may not attach to the target (nobody, to root's process): status 7, and no directory left."""
    target = python_child(child, write(tmp_path / "child.py", CHILD))
    shared = Path(tempfile.mkdtemp(prefix="async-trace-test-"))  # where nobody can write
    try:
        shared.chmod(0o1777)
        nobody = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")
        probe = subprocess.run([*nobody, sys.executable, "-c", "import async_trace"], capture_output=True, check=False)
        if probe.returncode != 0:
            pytest.skip("nobody cannot import async_trace from here (the venv or checkout is not world-readable)")
        result = cli("pstree", str(target.pid), tmpdir=shared, prefix=nobody)
        assert (result.returncode, result.stdout) == (7, ""), result.stderr
        assert result.stderr == (
            f"python -m async_trace pstree: no permission to attach to process {target.pid} (run as its user or "
            "as root; see https://docs.python.org/3/howto/remote_debugging.html#permission-requirements)\n"
        )
        assert list(shared.iterdir()) == []
    finally:
        shutil.rmtree(shared)


NO_LOOP = """\
    import time
    {imports}
    print("ready", flush=True)
    while True:
        time.sleep(0.05)
"""


@needs_remote
@pytest.mark.parametrize("imports", ["import async_trace", "import asyncio", ""])
def test_no_running_loop(imports: str, tmp_path: Path, tmpdir_for_cli: Path, child: Any) -> None:
    """A process that runs the script but has no running loop: status 8."""
    target = python_child(child, write(tmp_path / "plain.py", NO_LOOP.format(imports=imports)))
    result = cli("pstree", str(target.pid), tmpdir=tmpdir_for_cli)
    assert (result.returncode, result.stdout) == (8, "")
    assert result.stderr == f"python -m async_trace pstree: no event loop is running in process {target.pid}\n"


@needs_remote
def test_an_idle_process_without_asyncio(tmp_path: Path, tmpdir_for_cli: Path, child: Any) -> None:
    """No safe point, and asyncio's reader finds no asyncio: no running loop (status 8), saying why."""
    target = python_child(
        child, write(tmp_path / "idle.py", 'import time\nprint("ready", flush=True)\ntime.sleep(600)\n')
    )
    wait_until_blocked(target.pid)
    result = cli("pstree", str(target.pid), "--timeout", "0.3", tmpdir=tmpdir_for_cli)
    assert (result.returncode, result.stdout) == (8, "")
    assert result.stderr == (
        f"python -m async_trace pstree: no event loop is running in process {target.pid} (process {target.pid} "
        "did not run the async-trace script within 0.3 s (an idle event loop never does))\n"
    )


def test_usage_errors(tmp_path: Path) -> None:
    """A PID is required and must be a number; --timeout must be positive: argparse's status 2."""
    for args in (["pstree"], ["ps", "x"], ["pstree", "1", "--timeout", "0"]):
        result = cli(*args, tmpdir=tmp_path)
        assert result.returncode == 2, args
        assert result.stderr.startswith(
            f"usage: python -m async_trace {args[0]} [-h] [--json] [--timeout SECONDS] pid\n"
        )


@pytest.mark.skipif(REMOTE, reason="the message for Pythons without sys.remote_exec")
@pytest.mark.parametrize("command", ["ps", "pstree"])
def test_before_314_the_commands_point_to_the_dump_signal(command: str, tmp_path: Path) -> None:
    result = cli(command, str(os.getpid()), tmpdir=tmp_path)
    assert (result.returncode, result.stdout) == (3, "")
    assert result.stderr == (
        f"python -m async_trace {command}: needs Python 3.14+ (sys.remote_exec); this is {HERE}: run the program "
        "under `python -m async_trace --dump-signal USR1` and send it SIGUSR1 instead\n"
    )


def test_a_script_named_like_a_command_runs_as_a_path(tmp_path: Path) -> None:
    """`python -m async_trace ./ps` (or `-- ps`) runs a script named ps; `ps` alone is the command."""
    write(tmp_path / "ps", 'print("the script")\n')
    for args in (["./ps"], ["--", "ps"]):
        result = subprocess.run(
            [sys.executable, "-m", "async_trace", *args],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=60,
            check=False,
        )
        assert (result.returncode, result.stdout, result.stderr) == (0, "the script\n", "")


# --- the documentation's sample (docs/task-tree.md) -----------------------------------------


def readme_block(kind: str, name: str) -> str:
    """The one block marked ``<!-- kind: name -->``, in README.md or docs/*.md."""
    return doc_block(kind, name)


def root_blocks(text: str) -> list[str]:
    """asyncio's pstree output as its root trees, sorted (it lists them in the order it reads the tasks)."""
    return sorted("└── (T)" + block for block in text.split("└── (T)")[1:])


@needs_remote
def test_readme_sample_next_to_asyncio_pstree(tmp_path: Path, tmpdir_for_cli: Path, child: Any) -> None:
    """The documentation's service.py, read by both commands, prints its blocks there (PID and paths aside)."""
    app = tmp_path / "app"
    app.mkdir()
    script = app / "service.py"
    script.write_text(readme_block("remote-source", "service.py"), encoding="utf-8")
    target = child([sys.executable, str(script)], ready=False)
    assert target.proc.stdout is not None
    readable, _, _ = select.select([target.proc.stdout], [], [], 60)
    assert readable
    assert target.proc.stdout.readline() == f"pid {target.pid}\n"
    ours = cli("pstree", str(target.pid), tmpdir=tmpdir_for_cli)
    assert (ours.returncode, ours.stderr) == (0, "")
    assert ours.stdout.replace(f"process {target.pid}:", "process 12345:") == readme_block(
        "remote-output", "async_trace pstree"
    )
    theirs = subprocess.run(
        [sys.executable, "-m", "asyncio", "pstree", str(target.pid)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        check=False,
    )
    assert (theirs.returncode, theirs.stderr) == (0, "")
    shown = theirs.stdout.replace(str(app), "/srv/app")
    assert root_blocks(shown) == root_blocks(readme_block("remote-output", "asyncio pstree"))


# --- the script run in the target -------------------------------------------------------


def run_agent(directory: Path) -> dict[str, Any]:
    namespace: dict[str, Any] = {}
    code = compile(_pstree.AGENT.replace("DIRECTORY", repr(str(directory))), "<string>", "exec")
    exec(code, namespace)
    return namespace


def test_the_script_writes_its_answer_by_rename_and_leaves_no_names(tmp_path: Path) -> None:
    """One result.json (no temporary file left), and the namespace it ran in is as it was."""
    namespace = run_agent(tmp_path)
    assert set(namespace) == {"__builtins__"}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]
    data = json.loads((tmp_path / "result.json").read_text(encoding="utf-8"))
    assert (data["source"], data["loops"]) == ("async_trace", [])  # async_trace is imported here; no loop runs


def test_the_script_writes_nothing_once_the_caller_gave_up(tmp_path: Path) -> None:
    """Its directory removed (the caller timed out): it writes nothing anywhere, and raises nothing."""
    gone = tmp_path / "gone"
    run_agent(gone)
    assert list(tmp_path.iterdir()) == []
