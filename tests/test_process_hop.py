"""The process hop: a call handed to a process pool carries the caller's chain, under every start method."""

from __future__ import annotations

import asyncio
import functools
import gc
import multiprocessing
import os
import pickle
import pickletools
import sys
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

import pytest

import _async_trace_process
import async_trace
from async_trace import _capture, _chain, _config, _contexts, _process

from . import process_workers
from .helpers import line_of

HERE = os.path.basename(__file__)
WORKERS = os.path.basename(process_workers.__file__)
#: Seconds any one pool call may take (a spawned worker starts a fresh interpreter).
TIMEOUT = 60.0

_FORK_WARNING = "ignore:This process .* is multi-threaded, use of fork.*:DeprecationWarning"
METHODS = [
    pytest.param(method, marks=pytest.mark.filterwarnings(_FORK_WARNING), id=method)
    for method in ("fork", "forkserver", "spawn")
    if method in multiprocessing.get_all_start_methods()
]


@pytest.fixture(scope="module", params=METHODS)
def pool(request: pytest.FixtureRequest) -> Iterator[ProcessPoolExecutor]:
    """One worker per start method, shared by the module's tests, shut down at its end."""
    executor = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context(request.param))
    executor.method = request.param  # type: ignore[attr-defined]
    yield executor
    executor.shutdown(wait=True, cancel_futures=True)


@pytest.fixture(scope="module")
def spawn_pool() -> Iterator[ProcessPoolExecutor]:
    """For what does not depend on the start method (what is pickled, and kept, in this process)."""
    executor = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    yield executor
    executor.shutdown(wait=True, cancel_futures=True)


async def caller(pool: ProcessPoolExecutor, func: Callable[..., Any], *args: Any) -> Any:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(pool, func, *args)  # hop


async def main(pool: ProcessPoolExecutor, func: Callable[..., Any], *args: Any) -> tuple[str, Any]:
    """``(root task's name, what func returned)``, through a task named ``caller``."""
    root = asyncio.current_task()
    assert root is not None
    task = asyncio.create_task(caller(pool, func, *args), name="caller")  # spawn
    done, _ = await asyncio.wait({task}, timeout=TIMEOUT)
    assert done, "the pool call timed out"
    return root.get_name(), task.result()


def run(pool: ProcessPoolExecutor, func: Callable[..., Any], *args: Any) -> tuple[str, Any]:
    return asyncio.run(main(pool, func, *args))


def source(func: Callable[..., Any], marker: str) -> str:
    import linecache

    return linecache.getline(func.__code__.co_filename, line_of(func, marker)).strip()


def test_worker_sees_its_frames_the_hop_and_the_parent_chain(pool: ProcessPoolExecutor) -> None:
    """Exact frames: the worker's own, the hop marked with this process's id, the parent's chain to its root."""
    root, got = run(pool, process_workers.report)
    frame = {"task": None, "is_executor": False, "in_app": True}
    assert got["trace"] == {
        "frames": [
            {"name": "report", "line": line_of(process_workers.report, "collect"), "filename": process_workers.__file__,
             "indent": 0, **frame, "is_process": False},
            {"name": "caller", "line": line_of(caller, "hop"), "filename": __file__, "indent": 1, **frame,
             "is_process": True},
            {"name": "main", "line": line_of(main, "spawn"), "filename": __file__, "indent": 2, **frame,
             "is_process": False},
            {"name": root, "line": None, "filename": None, "indent": 3, **frame, "is_process": False},
        ],
        "current_task": None,
        "in_executor": True,
    }  # fmt: skip
    # The marker's pid is the parent's (this process), the one the frames from the hop outwards ran in.
    assert got["pids"] == [None, os.getpid(), None, None]
    assert got["pid"] != os.getpid()
    if pool.method == "fork":  # type: ignore[attr-defined]
        assert (got["loaded"], got["hooked"]) == (True, True)  # inherited with the parent's memory
    else:
        # Unpickling the call imported neither async_trace nor its hooks.
        assert (got["loaded"], got["hooked"]) == (False, False)


def test_print_trace_lines_in_the_worker(pool: ProcessPoolExecutor) -> None:
    """Both styles, every line, in the worker."""
    root, got = run(pool, process_workers.report)
    pid = os.getpid()
    assert got["arrows"] == [
        f"↑ report() at line {line_of(process_workers.report, 'arrows')} [{WORKERS}]\n",
        f"  ↑ caller() at line {line_of(caller, 'hop')} [{HERE}] [PROCESS {pid}]\n",
        f"    ↑ main() at line {line_of(main, 'spawn')} [{HERE}]\n",
        f"      ↑ {root}\n",
    ]
    assert got["traceback"] == [
        "Async trace (most recent call last):\n",
        f"  {root}\n",
        f'  File "{__file__}", line {line_of(main, "spawn")}, in main\n'
        f"    {source(main, 'spawn')}\n"
        "  --- task created here ---\n",
        f'  File "{__file__}", line {line_of(caller, "hop")}, in caller\n'
        f"    {source(caller, 'hop')}\n"
        f"  --- process pool call made here [PROCESS {pid}] ---\n",
        f'  File "{process_workers.__file__}", line {line_of(process_workers.report, "traceback")}, in report\n'
        f"    {source(process_workers.report, 'traceback')}\n",
    ]


def test_tracing_off_in_the_worker_still_shows_the_chain(pool: ProcessPoolExecutor) -> None:
    """The chain is data in the call's context: the worker's tracing need not be on."""
    root, got = run(pool, process_workers.untraced_report)
    assert [(f["name"], f["line"], f["is_process"]) for f in got["frames"]] == [
        ("untraced_report", line_of(process_workers.untraced_report, "off"), False),
        ("caller", line_of(caller, "hop"), True),
        ("main", line_of(main, "spawn"), False),
        (root, None, False),
    ]


def test_event_loop_in_the_worker(pool: ProcessPoolExecutor) -> None:
    """Tasks the call creates in the worker: their chain to the worker's root task, then the hop."""
    root, got = run(pool, process_workers.run_loop)
    worker_root, *lines = got
    assert lines == [
        f"↑ _in_worker_task() at line {line_of(process_workers._in_worker_task, 'worker-task')} [{WORKERS}]\n",
        f"  ↑ _worker_main() at line {line_of(process_workers._worker_main, 'worker-spawn')} [{WORKERS}]\n",
        f"    ↑ {worker_root}\n",
        f"      ↑ caller() at line {line_of(caller, 'hop')} [{HERE}] [PROCESS {os.getpid()}]\n",
        f"        ↑ main() at line {line_of(main, 'spawn')} [{HERE}]\n",
        f"          ↑ {root}\n",
    ]


def _remote_text(exc: BaseException) -> str:
    cause = exc.__cause__
    assert type(cause).__name__ == "_RemoteTraceback"
    return str(cause)


def test_exception_keeps_the_remote_traceback_and_gains_the_origin(
    pool: ProcessPoolExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker's traceback text is what concurrent.futures sends untraced; the note is the call's origin."""
    sent: list[type] = []
    submit = pool.submit

    def recording(fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        sent.append(type(fn))
        return submit(fn, *args, **kwargs)

    monkeypatch.setattr(pool, "submit", recording)
    with pytest.raises(ValueError, match=r"^bad$") as info:
        run(pool, process_workers.fail, "bad")
    traced = info.value
    assert sent == [_process.ProcessHop]
    assert type(traced._async_trace_origin.node) is _chain.ProcessNode  # type: ignore[attr-defined]
    remote = _remote_text(traced)
    assert f'File "{process_workers.__file__}", line {line_of(process_workers.fail, "raise")}, in fail' in remote
    assert "async_trace" not in remote  # no frame of ours, no note
    async_trace.disable_tracing()
    try:
        with pytest.raises(ValueError, match=r"^bad$") as plain_info:
            run(pool, process_workers.fail, "bad")
    finally:
        async_trace.enable_tracing()
    assert remote == _remote_text(plain_info.value)
    text = "".join(async_trace.format_exception(traced))
    root = text.split("Root task ")[1].split("\n")[0]
    note = (
        "Async trace (most recent call last):\n"
        f"  Root task {root}\n"
        f'  File "{__file__}", line {line_of(main, "spawn")}, in main\n'
        f"    {source(main, 'spawn')}\n"
        "  --- task 'caller' created here ---\n"
    )
    # The hop's own line is in the traceback above (the exception came back
    # through the awaiting coroutine): the note does not repeat it.
    assert text.endswith(f"ValueError: bad\n{note}")
    assert text.count(f'File "{__file__}", line {line_of(caller, "hop")}, in caller\n') == 1
    assert remote in text
    origin = async_trace.exception_trace(traced)
    assert origin is not None
    assert [(f["name"], f["is_process"], f["is_executor"]) for f in origin["frames"]] == [
        ("caller", True, False),
        ("main", False, False),
        (root.strip("'"), False, False),
    ]
    assert origin["in_executor"] is True
    assert [f["is_process"] for f in async_trace.trace_to_dict(origin)["frames"]] == [True, False, False]


def test_a_call_done_before_it_is_awaited_gets_the_origin() -> None:
    """A future already failed when ``run_in_executor`` returns (3.14 copies its state at once): origin recorded."""
    import concurrent.futures

    class Answered(ProcessPoolExecutor):
        def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            assert type(fn) is _process.ProcessHop
            done: concurrent.futures.Future[Any] = concurrent.futures.Future()
            done.set_exception(ValueError("early"))
            return done

    pool = Answered(1)  # never starts a process
    with pytest.raises(ValueError, match=r"^early$") as info:
        run(pool, process_workers.double, 1)
    pool.shutdown()
    assert type(info.value._async_trace_origin.node) is _chain.ProcessNode  # type: ignore[attr-defined]
    trace = async_trace.exception_trace(info.value)  # the whole chain (a note leaves out what the traceback shows)
    assert trace is not None
    assert [f["name"] for f in trace["frames"] if f["is_process"]] == ["caller"]


def _sent(pool: ProcessPoolExecutor, func: Callable[..., Any], depth: int = 0) -> bytes:
    """The bytes a traced ``run_in_executor(pool, func)`` hands the pool, from a chain ``depth`` tasks deep."""
    sent: list[Any] = []

    class Recording(ProcessPoolExecutor):
        def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            sent.append(fn)
            return pool.submit(fn, *args, **kwargs)

    recording = Recording(1)  # never starts a process: submit goes to ``pool``

    async def link(n: int) -> Any:
        if n:
            return await asyncio.create_task(link(n - 1))
        return await asyncio.get_running_loop().run_in_executor(recording, func, 21)

    async def start() -> Any:
        return await asyncio.wait_for(link(depth), TIMEOUT)

    assert asyncio.run(start()) == 42
    recording.shutdown()
    assert len(sent) == 1
    assert type(sent[0]) is _process.ProcessHop
    return pickle.dumps(sent[0])


def _globals(data: bytes) -> set[str]:
    """Every global the pickle refers to (``module name`` strings)."""
    found: set[str] = set()
    strings: list[str] = []
    for op, arg, _ in pickletools.genops(data):
        if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
            strings.append(str(arg))
        elif op.name == "STACK_GLOBAL":
            found.add(" ".join(strings[-2:]))
        elif op.name == "GLOBAL":
            found.add(str(arg))
    return found


def test_the_payload_is_symbolized_and_bounded(spawn_pool: ProcessPoolExecutor) -> None:
    """Only the rebuild function and the user's: no code, frame or task objects; bounded for a deep chain."""
    shallow = _sent(spawn_pool, process_workers.double)
    assert _globals(shallow) == {"_async_trace_process rebuild", "tests.process_workers double"}
    rebuilt = pickle.loads(shallow)
    assert type(rebuilt) is _async_trace_process.ProcessCall
    records = rebuilt.ctx[_async_trace_process.CHAIN]
    assert records is not None
    assert all(type(v) in (str, int, type(None)) for record in records for v in record)
    deep = _sent(spawn_pool, process_workers.double, depth=300)
    assert _globals(deep) == {"_async_trace_process rebuild", "tests.process_workers double"}
    deep_records = pickle.loads(deep).ctx[_async_trace_process.CHAIN]
    # 300 task hops, compacted as chains are (max_depth 256): when it reached 256 hops, the chain kept
    # its innermost and outermost quarters and a marker, then grew again.
    names = [record[0] for record in deep_records]
    assert names[0] == "link"
    assert deep_records[0][3] == _async_trace_process.MARK_PROCESS
    (marker,) = [name for name in names if name.endswith(" task hops elided ...")]
    elided = int(marker.split()[1])
    quarter = _config.DEFAULT_MAX_DEPTH // 4
    assert names.count("link") + elided == 301  # every link(n) shown or counted in the marker
    assert elided == _config.DEFAULT_MAX_DEPTH - 2 * quarter  # compacted once, everything but the quarters
    assert names.index(marker) > quarter
    assert names[-2:] == ["start", deep_records[-1][0]]
    assert deep_records[-1][1] is None
    assert len(deep_records) <= _process.max_records()
    assert len(deep) < 8 * 1024, len(deep)


def test_the_payload_is_cut_to_max_records(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past ``max_depth + max_frames`` records: the innermost and a quarter from the outer end, marked."""
    async_trace.enable_tracing(max_frames=4, max_depth=8)
    limit = _process.max_records()
    assert limit == 12

    async def via(n: int, hops: int) -> tuple[Any, ...]:
        if n:
            return await via(n - 1, hops)
        if hops:
            return await asyncio.create_task(hop(hops - 1))
        return _chain_records()

    async def hop(hops: int) -> tuple[Any, ...]:
        return await via(3, hops)

    records = asyncio.run(hop(6))
    monkeypatch.setattr(_process, "max_records", lambda: 10**6)
    whole = asyncio.run(hop(6))
    assert len(whole) > limit
    assert len(records) == limit
    assert records[:8] == whole[:8]
    assert records[8] == (f"... {len(whole) - 11} frames elided ...", None, None, _async_trace_process.MARK_PLAIN, 0)
    assert records[9:-1] == whole[-3:-1]
    assert records[-1][0].startswith("Task-")
    assert records[-1][1:] == (None, None, 0, 0)


def _chain_records() -> tuple[Any, ...]:
    node = _capture.capture(_chain.ExecutorNode, asyncio.get_running_loop(), sys._getframe(1))
    return _process.records_of(_chain.make_process(node, os.getpid()), asyncio.get_running_loop())


def test_an_unpicklable_function_fails_as_untraced(spawn_pool: ProcessPoolExecutor) -> None:
    """Exactly the error, notes and remote text an untraced pool gives."""

    def local() -> None:
        pass

    def outcome() -> tuple[type[BaseException], str, Any, str]:
        with pytest.raises(Exception) as info:  # noqa: PT011 - compared whole below
            run(spawn_pool, local)
        exc = info.value
        return type(exc), str(exc), getattr(exc, "__notes__", None), str(exc.__cause__)

    traced = outcome()
    async_trace.disable_tracing()
    try:
        untraced = outcome()
    finally:
        async_trace.enable_tracing()
    assert traced == untraced
    assert "local" in traced[1]


def test_a_failure_building_the_payload_falls_back(
    spawn_pool: ProcessPoolExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The call goes untraced and one AsyncTraceWarning says so."""

    def broken(*args: Any) -> Any:
        raise RuntimeError("no records")

    monkeypatch.setattr(_process, "records_of", broken)
    with pytest.warns(async_trace.AsyncTraceWarning, match="process-pool call.*no records"):
        _, got = run(spawn_pool, process_workers.untraced_report)
    assert [f["name"] for f in got["frames"]] == ["untraced_report"]


def test_disable_tracing_restores_the_plain_call(pool: ProcessPoolExecutor) -> None:
    """Off: the pool gets the bare function and the worker sees only its own frames."""
    original = _capture.HOOKS.patched_attributes()
    async_trace.disable_tracing()
    try:
        _, got = run(pool, process_workers.untraced_report)
    finally:
        async_trace.enable_tracing()
    assert not any(f["is_process"] for f in got["frames"])
    if pool.method != "fork":  # type: ignore[attr-defined]
        # (A forked worker inherits the context of the task that forked it, hop or no hop.)
        assert [f["name"] for f in got["frames"]] == ["untraced_report"]
    assert _capture.HOOKS.patched_attributes() == original


def test_nothing_is_kept_alive(spawn_pool: ProcessPoolExecutor) -> None:
    """The caller's task and its frames die with it: the hop holds names and numbers only."""
    refs: list[weakref.ref[Any]] = []

    class Marker:
        pass

    async def holder() -> Any:
        local = Marker()
        refs.append(weakref.ref(local))
        task = asyncio.current_task()
        assert task is not None
        refs.append(weakref.ref(task))
        return await asyncio.get_running_loop().run_in_executor(spawn_pool, process_workers.double, 4)

    async def start() -> Any:
        return await asyncio.wait_for(asyncio.create_task(holder()), TIMEOUT)

    assert asyncio.run(start()) == 8
    gc.collect()
    assert [ref() for ref in refs] == [None, None]


def test_thread_pools_are_unchanged() -> None:
    """``run_in_executor`` on a thread pool still hands it a ContextCall, not a process hop."""
    sent: list[Any] = []

    class Recording(ThreadPoolExecutor):
        def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            sent.append(fn)
            return super().submit(fn, *args, **kwargs)

    async def start() -> None:
        with Recording(1) as executor:
            assert await asyncio.get_running_loop().run_in_executor(executor, int, "7") == 7

    asyncio.run(start())
    assert [type(fn) for fn in sent] == [_contexts.ContextCall]


@pytest.mark.skipif(sys.version_info < (3, 14) or sys.platform != "linux", reason="3.14 changed the default on Linux")
def test_default_start_method_is_forkserver_on_314() -> None:
    """The pool a program gets without choosing is the forkserver one, which the module tests explicitly."""
    assert multiprocessing.get_start_method() == "forkserver"


def test_the_marker_in_every_rendering() -> None:
    """Records as the worker reads them: the same pid in both styles and the one-line forms; the flag in JSON."""
    from async_trace import _collect, _render_line
    from async_trace.logging import compact_path

    frames: list[Any] = []
    records = (
        ("caller", 7, "/srv/app.py", _async_trace_process.MARK_PROCESS, 4242),
        ("main", 3, "/srv/app.py", _async_trace_process.MARK_BOUNDARY, 0),
        ("Task-1", None, None, _async_trace_process.MARK_PLAIN, 0),
    )
    assert _collect.append_remote(frames, records) == [1]
    trace: async_trace.TraceData = {"frames": frames, "current_task": None, "in_executor": True}
    assert async_trace.format_async_trace(trace) == [
        "↑ caller() at line 7 [app.py] [PROCESS 4242]\n",
        "  ↑ main() at line 3 [app.py]\n",
        "    ↑ Task-1\n",
    ]
    assert async_trace.format_async_trace(trace, style="traceback") == [
        "Async trace (most recent call last):\n",
        "  Task-1\n",
        '  File "/srv/app.py", line 3, in main\n',
        '  File "/srv/app.py", line 7, in caller\n  --- process pool call made here [PROCESS 4242] ---\n',
    ]
    assert compact_path(trace) == "caller [process 4242] ← main ← Task-1"
    assert _render_line.site_text(frames[0]) == "caller (app.py:7) [process 4242]"
    assert [(f["name"], f["is_process"], f["is_executor"]) for f in async_trace.trace_to_dict(trace)["frames"]] == [
        ("caller", True, False),
        ("main", False, False),
        ("Task-1", False, False),
    ]
    assert '"is_process": true' in async_trace.trace_to_json(trace)


def test_functions_pickle_saves_by_name_are_told_without_pickling() -> None:
    """The fast check agrees with pickle: module-level functions and builtins yes; the rest goes to pickle."""

    def local() -> None:
        pass

    yes: list[Any] = [process_workers.double, abs, os.getpid]
    no: list[Any] = [local, lambda: None, [].append, functools.partial(process_workers.double, 1)]
    assert [_process._by_reference(f) for f in yes] == [True, True, True]
    assert [_process._by_reference(f) for f in no] == [False, False, False, False]
    for f in yes:
        pickle.dumps(f)


def test_consecutive_calls_from_one_place_share_their_records() -> None:
    """A loop of calls builds the records once; a call from another line gets its own."""

    async def start() -> list[tuple[Any, ...]]:
        out = []
        for _ in range(3):
            out.append(_chain_records())
        out.append(_chain_records())  # another line
        return out

    first, second, third, other = asyncio.run(start())
    assert first is second is third
    assert other is not first
    assert [r[1] for r in other][1:] == [r[1] for r in first][1:]
    assert other[0][1] == first[0][1] + 1
