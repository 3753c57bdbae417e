"""``python -m async_trace`` traces the child Python processes its program starts.

multiprocessing children (spawn, forkserver, fork), uvicorn's ``--workers`` (spawn) and gunicorn's
``UvicornWorker`` (fork) get the command line's options; Python children it cannot trace are named
in one warning. Every process a test starts, it stops; every wait is bounded.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import multiprocessing.spawn
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from async_trace import _children

from .helpers import run_python
from .test_cli import marker_line, write

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX: signals, unix sockets, fork")

DEADLINE = 60.0
NOTES = sys.version_info >= (3, 12)  # eager notes (the command line's) exist from 3.12
PROG = "python -m async_trace"


def wait_for(condition: Callable[[], Any], what: str, timeout: float = DEADLINE) -> Any:
    """Poll ``condition`` until it returns something true; fail after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, exited but not reaped, counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


# --- multiprocessing --------------------------------------------------------------------------

CHILD = """\
    import asyncio
    import json
    import multiprocessing
    import os
    import signal
    import sys

    from async_trace import collect_async_trace, format_exception


    async def fail():
        raise ValueError("boom")  # raise


    async def work(queue):
        trace = collect_async_trace()  # collect
        try:
            await asyncio.create_task(fail())  # spawn-fail
        except ValueError as exc:
            notes = getattr(exc, "__notes__", None)
            printed = "".join(format_exception(exc))
        os.kill(os.getpid(), signal.SIGUSR1)  # our own dump signal: the tree on stderr
        await asyncio.sleep(0.2)
        frames = [[f["name"], f["line"], os.path.basename(f["filename"] or "")] for f in trace["frames"]]
        queue.put({"pid": os.getpid(), "frames": frames, "notes": notes, "printed": printed})


    async def main(queue):
        await asyncio.create_task(work(queue), name="worker")  # spawn-work


    def target(queue):
        asyncio.run(main(queue))


    if __name__ == "__main__":
        context = multiprocessing.get_context(sys.argv[1])
        queue = context.Queue()
        process = context.Process(target=target, args=(queue,))
        process.start()
        report = queue.get(timeout=60)
        process.join(60)
        report["exitcode"] = process.exitcode
        print(json.dumps(report))
"""


@pytest.mark.parametrize("method", ["spawn", "forkserver", "fork"])
def test_multiprocessing_child_gets_the_command_lines_options(tmp_path: Path, method: str) -> None:
    """The child's trace, its exception's chain in --style arrows, eager notes, and a dump on --dump-signal."""
    if method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"no {method} start method here")
    script = write(tmp_path / "child.py", CHILD)
    line = {m: marker_line(script, m) for m in ("collect", "spawn-fail", "spawn-work", "raise")}
    result = run_python(
        "-m", "async_trace", "--style", "arrows", "--dump-signal", "USR1", str(script), method, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["exitcode"] == 0
    assert report["frames"] == [
        ["work", line["collect"], "child.py"],
        ["main", line["spawn-work"], "child.py"],
        ["Task-1", None, ""],
    ]
    assert report["printed"].endswith(
        "ValueError: boom\n"
        "Async trace:\n"
        f"↑ work() at line {line['spawn-fail']} [child.py]\n"
        f"  ↑ main() at line {line['spawn-work']} [child.py]\n"
        "    ↑ Task-1\n"
    ), report["printed"]
    # Eager notes (3.12+): the chain is in __notes__ before anything formats the exception.
    assert (report["notes"] is not None) is NOTES
    dump = result.stderr
    assert dump.count("Async task dump: 1 running event loop\n") == 1, dump
    assert f"├── worker (running) ← main() at line {line['spawn-work']} [child.py]\n" in dump or (
        f"└── worker (running) ← main() at line {line['spawn-work']} [child.py]\n" in dump
    ), dump
    assert PROG + ": warning" not in dump


def test_without_the_command_line_children_are_untouched(tmp_path: Path) -> None:
    """A program that imports async_trace itself: no preparation entry, no dump handler in its children."""
    script = write(tmp_path / "plain.py", CHILD.replace("os.kill(os.getpid(), signal.SIGUSR1)", "pass"))
    result = run_python(str(script), "spawn", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    headers = [line for line in report["printed"].splitlines() if line.startswith("Async trace")]
    assert headers == ["Async trace (most recent call last):"]  # the default style, not the child's own choice
    assert report["notes"] is None
    assert result.stderr == ""
    # And in this process (pytest imported async_trace, never ran the command line):
    assert _children.HOOKS.active is False
    assert "async_trace" not in multiprocessing.spawn.get_preparation_data("x")
    assert not hasattr(signal.signal, "__wrapped__")  # our wrappers keep what they wrap there
    assert not hasattr(subprocess.Popen._execute_child, "__wrapped__")  # type: ignore[attr-defined]
    assert not hasattr(os.execv, "__wrapped__")


RESTORE = """\
    import json
    import multiprocessing.spawn
    import os
    import signal
    import subprocess

    import async_trace

    def state():
        return {
            "prep": "async_trace" in multiprocessing.spawn.get_preparation_data("x"),
            "signal": hasattr(signal.signal, "__wrapped__"),
            "popen": hasattr(subprocess.Popen._execute_child, "__wrapped__"),
            "execv": hasattr(os.execv, "__wrapped__"),
        }

    on = state()
    async_trace.disable_tracing()
    off = state()
    async_trace.enable_tracing()
    print(json.dumps([on, off, state()]))
"""


def test_disable_tracing_restores_what_the_command_line_patched(tmp_path: Path) -> None:
    """disable_tracing() puts back every attribute the child hooks replaced; enable_tracing() re-installs them."""
    script = write(tmp_path / "restore.py", RESTORE)
    result = run_python("-m", "async_trace", "--dump-signal", "USR1", str(script), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    on = {"prep": True, "signal": True, "popen": True, "execv": True}
    off = {"prep": False, "signal": False, "popen": False, "execv": False}
    assert json.loads(result.stdout) == [on, off, on]


UNTRACED = """\
    import os
    import signal
    import subprocess
    import sys

    for _ in range(2):
        subprocess.run([sys.executable, "-c", "pass"], check=True)  # one warning for both
    subprocess.run([sys.executable, "-m", "async_trace", "--version"], check=True, capture_output=True)
    subprocess.run(["true"], check=True)  # not Python
    os.waitpid(os.posix_spawn(sys.executable, [sys.executable, "-c", "pass"], os.environ), 0)
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # handler
    signal.signal(signal.SIGUSR1, signal.SIG_DFL)  # once
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable, "-c", "print('replaced')"])
"""


def test_untraced_python_children_and_a_replaced_dump_handler_warn_once(tmp_path: Path) -> None:
    """subprocess, os.posix_spawn and os.exec of a Python: one warning per program and way, naming it."""
    script = write(tmp_path / "untraced.py", UNTRACED)
    result = run_python("-m", "async_trace", "--dump-signal", "USR1", str(script), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "replaced\n"
    exe = sys.executable
    exec_code = "print('replaced')"
    assert result.stderr.splitlines() == [
        f"{PROG}: warning: child process not traced: {shlex.join([exe, '-c', 'pass'])} (started with subprocess, not "
        f"multiprocessing); run it as '{PROG} ...' to trace it",
        f"{PROG}: warning: child process not traced: {shlex.join([exe, '-c', 'pass'])} (started with "
        f"os.posix_spawn, not multiprocessing); run it as '{PROG} ...' to trace it",
        f"{PROG}: warning: process {_pid_of(result.stderr)} set its own handler for SIGUSR1 "
        f"(at {script}:{marker_line(script, 'handler')}): --dump-signal SIGUSR1 dumps no longer come from it; "
        "choose a signal the program does not use",
        f"{PROG}: warning: child process not traced: {shlex.join([exe, '-c', exec_code])} (started with os.execv, "
        f"not multiprocessing); run it as '{PROG} ...' to trace it",
    ]


def _pid_of(stderr: str) -> str:
    return stderr.split("warning: process ", 1)[1].split(" ", 1)[0]


# --- uvicorn --workers 2 ------------------------------------------------------------------------

APP = """\
    import asyncio
    import json
    import os

    from async_trace import collect_async_trace, format_exception


    async def fail():
        raise ValueError("boom")


    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        trace = collect_async_trace()  # collect
        try:
            await asyncio.create_task(fail())
        except ValueError as exc:
            notes = getattr(exc, "__notes__", None)
            printed = "".join(format_exception(exc))
        frames = [[f["name"], os.path.basename(f["filename"] or "")] for f in trace["frames"]]
        headers = [line for line in printed.splitlines() if line.startswith("Async trace")]
        body = json.dumps({"pid": os.getpid(), "frames": frames, "line": trace["frames"][0]["line"],
                           "notes": notes is not None, "headers": headers}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})
"""


def get_unix(path: Path) -> dict[str, Any] | None:
    """GET / over the unix socket ``path`` on a new connection: the JSON body, or ``None`` if not served yet."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(str(path))
            sock.sendall(b"GET / HTTP/1.0\r\nHost: test\r\n\r\n")  # 1.0: no chunked body
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
    except OSError:
        return None
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), data
    result: dict[str, Any] = json.loads(body)
    return result


@contextlib.contextmanager
def server(cmd: list[str], cwd: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``cmd`` with stdout and stderr to ``log``; on the way out, stop it and whatever it left.

    The server leads a new process group: killing the group on the way out also takes the workers a
    supervisor would start again after one of them was killed alone.
    """
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONIOENCODING": "utf-8"},
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)


#: A request's trace in a worker: the app, uvicorn's request task, the connection's callback, the line
#: that started the server (uvicorn's ``startup``) out to ``Server.serve``; then the worker's own frames
#: (gunicorn's) and the root.
REQUEST_FRAMES = [
    ["app", "app.py"],
    ["__call__", "proxy_headers.py"],
    ["run_asgi", "h11_impl.py"],
    ["handle_events", "h11_impl.py"],
    ["data_received", "h11_impl.py"],
    ["startup", "server.py"],
    ["_serve", "server.py"],
    ["serve", "server.py"],
]


def assert_traced(answers: dict[int, Any], app: Path, worker: list[list[str]]) -> None:
    """Each worker answered with the request's exact chain, in the arrows style (--style arrows)."""
    for reply in answers.values():
        assert reply["frames"] == [*REQUEST_FRAMES, *worker, ["Task-1", ""]], json.dumps(reply["frames"])
        assert reply["line"] == marker_line(app, "collect")
        assert reply["headers"] == ["Async trace:"]
        assert reply["notes"] is NOTES


def both_answer(sock: Path, workers: list[int], log: Path) -> dict[int, dict[str, Any]]:
    """GET / on new connections until each of ``workers`` answered (bounded in count and time)."""
    answers: dict[int, dict[str, Any]] = {}
    end = time.monotonic() + DEADLINE
    for _ in range(500):
        if len(answers) == len(workers) or time.monotonic() > end:
            break
        reply = get_unix(sock)
        if reply is None:  # not listening yet
            time.sleep(0.05)
            continue
        answers[reply["pid"]] = reply
    assert sorted(answers) == workers, log.read_text()
    return answers


def worker_pids(supervisor: int, *, all_children: bool = False) -> list[int]:
    """The live children of ``supervisor`` that are not multiprocessing's resource tracker (``all_children``: all)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if int(stat[1]) == supervisor and stat[0] != "Z" and (all_children or b"resource_tracker" not in cmdline):
            out.append(int(entry))
    return sorted(out)


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="finds the workers through /proc")
def test_uvicorn_workers_are_traced_and_dump_on_the_signal(tmp_path: Path) -> None:
    """uvicorn --workers 2 under the command line: both workers traced with its options, each dumps on SIGUSR1."""
    pytest.importorskip("uvicorn")
    app = write(tmp_path / "app.py", APP)
    sock = tmp_path / "s.sock"
    cmd = [sys.executable, "-m", "async_trace", "--style", "arrows", "--dump-signal", "USR1",
           "-m", "uvicorn", "app:app", "--uds", str(sock), "--workers", "2",
           "--loop", "asyncio", "--http", "h11", "--no-access-log"]  # fmt: skip
    log = tmp_path / "server.log"
    with server(cmd, tmp_path, log) as proc:
        workers = wait_for(lambda: len(worker_pids(proc.pid)) == 2 and worker_pids(proc.pid), "two workers")
        answers = both_answer(sock, workers, log)
        assert_traced(answers, app, [])

        before = log.read_text()
        assert before.count("Async task dump") == 0
        os.kill(workers[0], signal.SIGUSR1)
        text = wait_for(lambda: "Task tree (" in log.read_text() and log.read_text(), "the dump")
        time.sleep(0.3)
        text = log.read_text()
        assert text.count("Async task dump: 1 running event loop\n") == 1, text
        dump = text[text.index("Async task dump") :]
        assert "\nTask-1 (pending)\n" in dump, dump
        assert all(alive(pid) for pid in workers), "a dump must not stop the worker"

        # uvicorn's supervisor takes SIGUSR1 itself: the one warning says so.
        warnings = [line for line in text.splitlines() if line.startswith(f"{PROG}: warning")]
        assert len(warnings) == 1, warnings
        assert warnings[0].startswith(f"{PROG}: warning: process {proc.pid} set its own handler for SIGUSR1 (at ")
        assert "multiprocess.py:" in warnings[0]

        children = worker_pids(proc.pid, all_children=True)  # the workers, and the resource tracker if any
        assert set(workers) <= set(children)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(DEADLINE) == 0, log.read_text()
        wait_for(lambda: not any(alive(pid) for pid in children), "every child to exit")


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="finds the workers through /proc")
def test_gunicorn_uvicorn_workers_are_traced_and_dump_on_a_free_signal(tmp_path: Path) -> None:
    """gunicorn -k uvicorn.workers.UvicornH11Worker forks its workers: they inherit tracing and the dump signal.

    gunicorn resets and takes USR1, USR2, HUP, TTIN, TTOU, WINCH in the arbiter and its workers: a signal it does
    not use (URG, ignored by default) dumps each worker's tree; the loop is uvloop's where installed.
    """
    gunicorn_config = pytest.importorskip("gunicorn.config")
    pytest.importorskip("uvicorn")
    app = write(tmp_path / "app.py", APP)
    sock = tmp_path / "g.sock"
    cmd = [sys.executable, "-W", "ignore::DeprecationWarning", "-m", "async_trace", "--style", "arrows",
           "--dump-signal", "URG", "-m", "gunicorn", "-k", "uvicorn.workers.UvicornH11Worker", "-w", "2",
           "--chdir", str(tmp_path), "-b", f"unix:{sock}", "app:app"]  # fmt: skip
    if "control_socket" in gunicorn_config.Config().settings:
        cmd.insert(cmd.index("app:app"), "--no-control-socket")  # gunicorn 25+: not in the home directory
    log = tmp_path / "server.log"
    with server(cmd, tmp_path, log) as proc:
        workers = wait_for(lambda: len(worker_pids(proc.pid)) == 2 and worker_pids(proc.pid), "two workers")
        answers = both_answer(sock, workers, log)
        # The request task is created in a protocol callback, whose capture stops at the loop's
        # Handle._run: no frame of the code that started the loop (uvicorn's asyncio_run on 3.10).
        assert_traced(answers, app, [["_serve", "workers.py"]])  # UvicornWorker._serve: await server.serve(...)

        assert "Async task dump" not in log.read_text()
        os.kill(workers[1], signal.SIGURG)
        wait_for(lambda: "Task tree (" in log.read_text(), "the dump")
        time.sleep(0.3)
        text = log.read_text()
        assert text.count("Async task dump: 1 running event loop\n") == 1, text
        assert "\nTask-1 (pending)\n" in text[text.index("Async task dump") :]
        assert all(alive(pid) for pid in workers)
        assert f"{PROG}: warning" not in text

        children = worker_pids(proc.pid, all_children=True)  # the workers, and the resource tracker if any
        assert set(workers) <= set(children)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(DEADLINE) == 0, log.read_text()
        wait_for(lambda: not any(alive(pid) for pid in children), "every child to exit")


OTHER_COPY = """\
    import json
    import multiprocessing
    import os
    import signal
    import sys


    def target(queue):
        queue.put(signal.getsignal(signal.SIGUSR1) not in (signal.SIG_DFL, None))


    if __name__ == "__main__":
        os.environ["PYTHONPATH"] = sys.argv[1]  # the child's interpreter finds this copy first
        context = multiprocessing.get_context("spawn")
        queue = context.Queue()
        process = context.Process(target=target, args=(queue,))
        process.start()
        traced = queue.get(timeout=60)
        process.join(60)
        print(json.dumps({"traced": traced, "exitcode": process.exitcode, "pid": process.pid}))
"""


@pytest.mark.parametrize(
    ("copy", "traced"),
    [("raise ImportError('not this one')\n", True), ("raise RuntimeError('broken copy')\n", False)],
    ids=["falls-back-to-the-parents-copy", "warns"],
)
def test_a_child_that_finds_another_async_trace(tmp_path: Path, copy: str, traced: bool) -> None:
    """The child imports async_trace from its own sys.path; an ImportError there: the parent's copy; anything
    else: the child runs untraced and says so."""
    other = tmp_path / "other"
    (other / "async_trace").mkdir(parents=True)
    (other / "async_trace" / "__init__.py").write_text(copy, encoding="utf-8")
    script = write(tmp_path / "other_copy.py", OTHER_COPY)
    result = run_python("-m", "async_trace", "--dump-signal", "USR1", str(script), str(other), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["traced"], report["exitcode"]) == (traced, 0)
    expected = (
        []
        if traced
        else [
            f"{PROG}: warning: child process {report['pid']} ({sys.executable}) is not traced: "
            "RuntimeError: broken copy"
        ]
    )
    assert result.stderr.splitlines() == expected
