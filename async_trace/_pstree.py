"""``python -m async_trace ps|pstree PID``: another process's task trees, with creation origins.

``sys.remote_exec`` (PEP 768, Python 3.14+) runs :data:`AGENT` in the target
at its next safe point (in its main thread, between two bytecodes). The agent
writes the target's task trees as JSON into a private directory made here:
with ``async_trace`` imported there, :func:`async_trace._dump.remote_snapshot`
(every running loop's tree with creation origins and executor threads);
without it, what ``asyncio.capture_call_graph`` gives (the await graph). A
target whose only thread sleeps in an idle event loop never reaches a safe
point: after ``--timeout`` seconds, asyncio's own out-of-process reader
(``_remote_debugging``, as ``python -m asyncio pstree`` uses it) gives the
await graph instead, without creation origins.

The directory (``mkdtemp``: mode 0700, given to the target's user when this
runs as root) is removed on every path. The agent writes only into it, and
only through a rename after checking it still exists, so an agent that runs
after the caller gave up writes nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any, Final, cast

from ._render_remote import ps_lines, pstree_lines, remote_trace_frames
from ._types import ExecutorThread, TaskInfo, TaskTree
from ._writer import write

__all__ = ["COMMANDS", "main"]

PROG: Final = "python -m async_trace"
COMMANDS: Final = ("ps", "pstree")
DEFAULT_TIMEOUT: Final = 5.0

# Exit statuses (documented in docs/task-tree.md; keep them stable).
OK: Final = 0
FAILED: Final = 1  # the target's script failed, or an unexpected error
USAGE: Final = 2
NEEDS_314: Final = 3  # this Python is older than 3.14
NO_PROCESS: Final = 4
UNSUPPORTED_PYTHON: Final = 5  # not Python, older than 3.14, or another version than this one
DISABLED: Final = 6  # remote debugging disabled in the target
PERMISSION: Final = 7
NO_LOOP: Final = 8
TIMEOUT: Final = 9  # no answer in time: asyncio's await graph was printed instead
NO_ANSWER: Final = 10  # no answer in time, and asyncio's reader failed too

#: Run in the target by ``sys.remote_exec``; ``DIRECTORY`` becomes the private directory's path.
#: Everything is inside a function, deleted at the end: the target's namespaces
#: are left as they were. It never raises into the target.
AGENT: Final = """\
def _async_trace_agent(directory):
    import json, os, sys

    def call_graph():
        import asyncio, gc, threading

        def frames(graph):
            out = []
            for entry in graph.call_stack:
                code = entry.frame.f_code
                if code.co_filename == "<string>":
                    continue  # this script's own frames (remote_exec compiles it so)
                out.append({"name": code.co_name, "line": entry.frame.f_lineno, "filename": code.co_filename,
                            "indent": len(out), "task": None, "is_executor": False, "is_process": False})
            return out

        names = {thread.ident: thread.name for thread in threading.enumerate()}
        here = asyncio.events._get_running_loop()
        found = [here] if here is not None else []
        found += [o for o in gc.get_objects() if asyncio.AbstractEventLoop in type(o).__mro__]
        seen, graphs = set(), []
        for loop in found:
            if id(loop) in seen or not loop.is_running():
                continue
            seen.add(id(loop))
            ident = getattr(loop, "_thread_id", None)
            tasks = []
            for task in list(asyncio.all_tasks(loop)):
                graph = asyncio.capture_call_graph(task)
                if graph is None:
                    continue
                tasks.append({"id": id(task), "name": task.get_name(), "frames": frames(graph),
                              "awaited_by": [{"id": id(g.future), "frames": frames(g)} for g in graph.awaited_by]})
            graphs.append({"thread_id": ident, "thread_name": names.get(ident), "tasks": tasks})
        return {"source": "capture_call_graph", "python": ".".join(map(str, sys.version_info[:3])),
                "loops": [], "await_graph": graphs}

    if not os.path.isdir(directory):
        return  # the caller gave up
    try:
        dump = sys.modules.get("async_trace._dump")
        snapshot = getattr(dump, "remote_snapshot", None)
        data = snapshot() if snapshot is not None else call_graph()
    except Exception as exc:
        data = {"source": "error", "error": type(exc).__name__ + ": " + str(exc)}
    tmp = os.path.join(directory, "result.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f)
        os.rename(tmp, os.path.join(directory, "result.json"))
    except Exception:
        pass  # the directory is gone: the caller gave up


try:
    _async_trace_agent(DIRECTORY)
finally:
    del _async_trace_agent
"""


class RemoteError(Exception):
    """A one-line message for stderr and the exit status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


# --- the command line ---------------------------------------------------------


def build_parser(command: str) -> argparse.ArgumentParser:
    what = "a table of every task" if command == "ps" else "the task tree of every running event loop"
    parser = argparse.ArgumentParser(
        prog=f"{PROG} {command}",
        description=(
            f"Print {what} of the Python 3.14+ process PID, with the line that created each task\n"
            "(if it imported async_trace) and the executor threads working for them."
        ),
        allow_abbrev=False,
    )
    parser.add_argument("pid", type=int, help="the process to inspect")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"how long to wait for the process to answer (default {DEFAULT_TIMEOUT:g})",
    )
    return parser


def main(command: str, argv: Sequence[str]) -> int:
    """Run ``python -m async_trace COMMAND ARGV``; return the exit status."""
    parser = build_parser(command)
    options = parser.parse_args(list(argv))
    if options.timeout <= 0:
        parser.error("--timeout must be positive")
    try:
        if not hasattr(sys, "remote_exec"):  # before 3.14
            version = ".".join(map(str, sys.version_info[:2]))
            raise RemoteError(
                f"needs Python 3.14+ (sys.remote_exec); this is {version}: "
                f"run the program under `{PROG} --dump-signal USR1` and send it SIGUSR1 instead",
                NEEDS_314,
            )
        result = collect(options.pid, options.timeout)
    except RemoteError as exc:
        _say(command, str(exc))
        return exc.status
    if result.get("note"):
        _say(command, result["note"])
    if options.json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    else:
        if command == "ps":
            write(format_ps(result), sys.stdout)
        else:
            write(lambda plain: format_pstree(result, ascii_only=plain), sys.stdout)
    sys.stdout.flush()
    return TIMEOUT if result["source"] == "remote_debugging" else OK


def _say(command: str, message: str) -> None:
    sys.stderr.write(f"{PROG} {command}: {message}\n")


# --- collecting -----------------------------------------------------------------


def target_version(pid: int) -> tuple[int, int] | None:
    """The target's Python ``(major, minor)`` from its executable's name (Linux ``/proc``); ``None``: not known."""
    for source in (f"/proc/{pid}/exe", f"/proc/{pid}/status"):
        try:
            if source.endswith("exe"):
                text = os.path.basename(os.path.realpath(source))
            else:
                with open(source, encoding="utf-8", errors="replace") as f:
                    text = f.readline()  # "Name:\tpython3.14"
        except OSError:
            continue
        match = re.search(r"python(\d)\.(\d+)", text)
        if match:
            return int(match[1]), int(match[2])
    return None


def _check_process(pid: int) -> None:
    if pid <= 0:
        raise RemoteError(f"no process with PID {pid}", NO_PROCESS)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        raise RemoteError(f"no process with PID {pid}", NO_PROCESS) from None
    except PermissionError:
        pass  # it exists; remote_exec says whether we may attach


def _check_version(pid: int, version: tuple[int, int] | None) -> None:
    here = sys.version_info[:2]
    if version is None or version == here:
        return
    shown = f"{version[0]}.{version[1]}"
    if version < (3, 14):
        raise RemoteError(
            f"process {pid} runs Python {shown}; reading a process needs 3.14+: "
            f"run it under `{PROG} --dump-signal USR1` and send it SIGUSR1 instead",
            UNSUPPORTED_PYTHON,
        )
    raise RemoteError(
        f"process {pid} runs Python {shown}, this is {here[0]}.{here[1]}: "
        f"run `python{shown} -m async_trace` (the versions must match)",
        UNSUPPORTED_PYTHON,
    )


def _attach_error(pid: int, exc: BaseException) -> RemoteError:
    """``sys.remote_exec``'s (or the reader's) exception as our message and status."""
    text = str(exc)
    if isinstance(exc, PermissionError):
        return RemoteError(
            f"no permission to attach to process {pid} (run as its user or as root; "
            "see https://docs.python.org/3/howto/remote_debugging.html#permission-requirements)",
            PERMISSION,
        )
    if isinstance(exc, ProcessLookupError):
        return RemoteError(f"no process with PID {pid}", NO_PROCESS)
    if "not enabled" in text:
        return RemoteError(
            f"remote debugging is disabled in process {pid} (PYTHON_DISABLE_REMOTE_DEBUG or -X disable-remote-debug)",
            DISABLED,
        )
    match = re.search(r"to a Python (\d+)\.(\d+) process", text)
    if match:
        try:
            _check_version(pid, (int(match[1]), int(match[2])))
        except RemoteError as error:
            return error
    if "PyRuntime" in text or "debug offsets" in text:
        version = target_version(pid)
        try:
            _check_version(pid, version)
        except RemoteError as error:
            return error
        return RemoteError(f"process {pid} is not a Python 3.14+ process ({text})", UNSUPPORTED_PYTHON)
    return RemoteError(f"cannot attach to process {pid}: {text}", FAILED)


def _private_dir(pid: int) -> str:
    """A fresh directory (mode 0700) that only we and the target's user can use."""
    directory = tempfile.mkdtemp(prefix="async-trace-")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        try:
            info = os.stat(f"/proc/{pid}")
        except OSError:
            return directory
        if info.st_uid != 0:  # the target must read the script and write the result
            os.chown(directory, info.st_uid, info.st_gid)
    return directory


def collect(pid: int, timeout: float) -> dict[str, Any]:
    """The target's task trees (or await graph) as the ``--json`` document; :class:`RemoteError` on failure."""
    _check_process(pid)
    _check_version(pid, target_version(pid))
    directory = _private_dir(pid)
    try:
        agent = os.path.join(directory, "agent.py")
        fd = os.open(agent, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(AGENT.replace("DIRECTORY", repr(directory)))
        try:
            sys.remote_exec(pid, agent)  # type: ignore[attr-defined,unused-ignore]
        except Exception as exc:  # noqa: BLE001 - every failure is one of our messages
            raise _attach_error(pid, exc) from None
        data = _wait(pid, os.path.join(directory, "result.json"), timeout)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    if data is None:
        return _fallback(pid, timeout)
    return _finish(pid, data)


def _wait(pid: int, path: str, timeout: float) -> dict[str, Any] | None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            # Not through a link the target may have put there (it may own the directory).
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise RemoteError(f"cannot read the answer of process {pid}: {exc}", FAILED) from None
        else:
            with os.fdopen(fd, encoding="utf-8") as f:
                try:
                    data = json.load(f)
                except ValueError as exc:
                    raise RemoteError(f"the answer of process {pid} is not valid: {exc}", FAILED) from None
            if not isinstance(data, dict):
                raise RemoteError(f"the answer of process {pid} is not valid: {type(data).__name__}", FAILED)
            return data
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            raise RemoteError(f"process {pid} exited before it answered", NO_PROCESS) from None
        except PermissionError:
            pass
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.01)


def _finish(pid: int, data: dict[str, Any]) -> dict[str, Any]:
    source = data.get("source")
    if source == "error":
        raise RemoteError(f"the script failed in process {pid}: {data.get('error')}", FAILED)
    result: dict[str, Any] = {
        "pid": pid,
        "python": data.get("python"),
        "source": source,
        "creation_origins": source == "async_trace",
        "note": None,
        "loops": data.get("loops", []),
        "await_graph": data.get("await_graph", []),
    }
    if not result["loops"] and not result["await_graph"]:
        raise RemoteError(f"no event loop is running in process {pid}", NO_LOOP)
    if source != "async_trace":
        result["note"] = (
            f"process {pid} did not import async_trace: creation origins are missing; "
            "showing asyncio's await graph (asyncio.capture_call_graph)"
        )
    return result


def _fallback(pid: int, timeout: float) -> dict[str, Any]:
    """asyncio's own out-of-process reader, for a target that did not run the agent in time."""
    late = f"process {pid} did not run the async-trace script within {timeout:g} s (an idle event loop never does)"
    try:
        from _remote_debugging import RemoteUnwinder  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        raise RemoteError(f"{late}, and asyncio's reader is not available", NO_ANSWER) from None
    error: BaseException | None = None
    for _ in range(3):  # the reader can meet the target's memory mid-change
        try:
            threads = RemoteUnwinder(pid).get_all_awaited_by()
            break
        except Exception as exc:  # noqa: BLE001 - reported below
            error = exc
    else:
        assert error is not None
        if "AsyncioDebug" in str(error):  # asyncio is not even imported there
            raise RemoteError(f"no event loop is running in process {pid} ({late})", NO_LOOP) from None
        raise RemoteError(f"{late}, and asyncio's reader failed: {_attach_error(pid, error)}", NO_ANSWER) from None
    graphs = [_awaited_info(info) for info in threads]
    graphs = [g for g in graphs if g["tasks"]]
    if not graphs:
        raise RemoteError(f"no event loop is running in process {pid} ({late})", NO_LOOP)
    return {
        "pid": pid,
        "python": None,
        "source": "remote_debugging",
        "creation_origins": False,
        "note": f"{late}: creation origins could not be collected; showing asyncio's await graph, read from outside",
        "loops": [],
        "await_graph": graphs,
    }


def _frames(call_stack: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for frame in call_stack:
        line = getattr(frame, "lineno", None)
        if line is None:  # 3.15: frame.location.lineno
            line = getattr(getattr(frame, "location", None), "lineno", None)
        out.append(
            {
                "name": frame.funcname,
                "line": line,
                "filename": frame.filename or None,
                "indent": len(out),
                "task": None,
                "is_executor": False,
                "is_process": False,
            }
        )
    return out


def _awaited_info(info: Any) -> dict[str, Any]:
    tasks = []
    for task in info.awaited_by:
        frames = [f for coro in task.coroutine_stack for f in _frames(coro.call_stack)]
        for i, frame in enumerate(frames):
            frame["indent"] = i
        tasks.append(
            {
                "id": task.task_id,
                "name": task.task_name,
                "frames": frames,
                "awaited_by": [{"id": coro.task_name, "frames": _frames(coro.call_stack)} for coro in task.awaited_by],
            }
        )
    return {"thread_id": info.thread_id, "thread_name": None, "tasks": tasks}


# --- printing -------------------------------------------------------------------


def _tree(data: dict[str, Any]) -> TaskTree:
    """A :class:`TaskTree` (without task objects or loop) from :func:`async_trace.tree_to_dict`'s data."""
    tasks = data["tasks"]
    built: dict[int, TaskInfo] = {}
    for entry in reversed(tasks):  # children come after their parent
        built[entry["key"]] = TaskInfo(
            name=entry["name"],
            id=entry["id"],
            state=entry["state"],
            origin=entry["origin"],
            task=None,
            created_at=remote_trace_frames(entry["created_at"]),
            suspended_at=remote_trace_frames(entry["suspended_at"]),
            executor_threads=tuple(
                ExecutorThread(t["name"], t["ident"], remote_trace_frames(t["frames"]))
                for t in entry["executor_threads"]
            ),
            children=tuple(built[key] for key in entry["children"]),
            awaited_by=tuple(entry.get("awaited_by", ())),
            age=entry.get("age"),  # absent from an older version's data
            idle=entry.get("idle"),
        )
    return TaskTree(loop=cast(Any, None), roots=tuple(built[key] for key in data["roots"]))


def format_pstree(result: dict[str, Any], *, ascii_only: bool = False) -> list[str]:
    """``pstree``'s lines: each loop's task tree (as ``dump_tasks`` prints it), or the await graph."""
    trees = [_tree(data) for data in result["loops"]] if result["source"] == "async_trace" else []
    return pstree_lines(result, trees, ascii_only=ascii_only)


def format_ps(result: dict[str, Any]) -> list[str]:
    """``ps``'s lines: one row per task of every loop."""
    return ps_lines(result)
