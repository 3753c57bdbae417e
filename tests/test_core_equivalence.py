"""The compiled core and the pure-Python path record the same: nodes, traces, notes and trees.

Each example is a program (tests/core_program.py) built from a random spawn tree, run on asyncio
or uvloop, with no task factory, a custom one, one that wraps the coroutine (started lazily or
eagerly) or asyncio's eager one, once with the compiled core and once with
``ASYNC_TRACE_NO_EXTENSIONS=1``: both print exactly the same. The core's own checks (the choice,
its fallback when it fails) follow.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import subprocess
import sys
import sysconfig
import warnings
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import async_trace
from async_trace import _capture, _frames, _speedups, _stack

from .strategies import SpawnTree, spawn_trees

PROGRAM = Path(__file__).with_name("core_program.py")
ROOT = PROGRAM.parent.parent
EDGES = ["create_task", "gather", "ensure_future", "loop_create_task", "task_direct", "await", "executor", "to_thread"]
EDGES += ["create_task_deep", "executor_deep"]  # past max_frames: elided alike
EDGES += ["call_soon", "call_soon_create_task"]  # from a callback of a task: no task runs
if sys.version_info >= (3, 11):
    EDGES += ["task_group", "create_task_context"]  # context=: a context of the caller's
if sys.version_info >= (3, 12):
    EDGES.append("task_direct_eager")  # asyncio.Task(coro, eager_start=True), as aiohttp builds its handlers
if sys.version_info >= (3, 14):
    EDGES.append("eager_start")  # asyncio.create_task(coro, eager_start=True), as aiohttp calls it
FACTORIES = ["none", "custom", "wrapping", *(["eager", "wrapping_eager"] if sys.version_info >= (3, 12) else [])]
LOOPS = ["asyncio", *(["uvloop"] if sys.implementation.name == "cpython" and sys.platform != "win32" else [])]

#: Whether a process without ASYNC_TRACE_NO_EXTENSIONS runs the core (this one may run with it set).
CORE_BUILT = _speedups.CORE is not None or (
    _speedups.REASON == "ASYNC_TRACE_NO_EXTENSIONS is set"
    and importlib.util.find_spec("async_trace._ccore") is not None
)
needs_core = pytest.mark.skipif(_speedups.CORE is None, reason=f"the compiled core is not in use: {_speedups.REASON}")


def run_program(spec: dict[str, Any], *, python_path: bool) -> tuple[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "ASYNC_TRACE_NO_EXTENSIONS"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    if python_path:
        env["ASYNC_TRACE_NO_EXTENSIONS"] = "1"
    done = subprocess.run(
        [sys.executable, str(PROGRAM), json.dumps(spec)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout, done.stderr.strip().splitlines()[-1]


@needs_core
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spawn_trees(EDGES, max_leaves=6, max_depth=4), st.sampled_from(LOOPS), st.sampled_from(FACTORIES))
def test_both_paths_record_the_same(tree: SpawnTree, loop: str, factory: str) -> None:
    # uvloop's create_task passes 3.13+'s eager factory a keyword it refuses, traced or not.
    assume(not (loop == "uvloop" and factory == "eager"))
    spec = {"tree": tree, "loop": loop, "factory": factory}
    compiled, compiled_status = run_program(spec, python_path=False)
    python, python_status = run_program(spec, python_path=True)
    assert (compiled_status, python_status) == ("c 0", "python 0")
    assert compiled == python
    assert compiled.count("leaf ") >= 1


def test_the_choice_is_said_once_where_users_look() -> None:
    """``python -m async_trace --version`` and ``async_trace.implementation`` name the path."""
    env = {k: v for k, v in os.environ.items() if k != "ASYNC_TRACE_NO_EXTENSIONS"}
    for forced in (False, True):
        run_env = {**env, "ASYNC_TRACE_NO_EXTENSIONS": "1"} if forced else env
        command = [sys.executable, "-c", "import async_trace; print(async_trace.implementation)"]
        implementation = subprocess.run(command, capture_output=True, text=True, env=run_env, check=True).stdout
        version = subprocess.run(
            [sys.executable, "-m", "async_trace", "--version"], capture_output=True, text=True, env=run_env, check=True
        ).stdout
        if forced or not CORE_BUILT:
            assert implementation == "python\n"
            assert version.startswith(f"async-trace {async_trace.__version__} (pure Python: ")
        else:
            assert implementation == "c\n"
            assert version == f"async-trace {async_trace.__version__} (compiled core)\n"
    if forced:
        assert "(pure Python: ASYNC_TRACE_NO_EXTENSIONS is set)" in version


@needs_core
def test_the_core_reads_interpreter_frames_where_cpython_installed_its_internal_headers() -> None:
    """3.11+: built with CPython's internal headers, the core makes no frame object to read the creating stack."""
    core = _speedups.CORE
    assert core is not None
    headers = Path(sysconfig.get_path("include"), "internal", "pycore_frame.h").exists()
    public_only = os.environ.get("ASYNC_TRACE_PUBLIC_API_ONLY", "") not in ("", "0")
    assert core.INTERPRETER_FRAMES is (sys.version_info >= (3, 11) and headers and not public_only)


async def _background() -> None:
    pass


async def _handler(made: list[asyncio.Task[None]]) -> None:
    made.append(asyncio.create_task(_background()))  # in the handler's eager first step
    await asyncio.sleep(0)


async def _connection(made: list[asyncio.Task[None]]) -> None:
    loop = asyncio.get_running_loop()
    for _ in range(3):
        # aiohttp's pattern (3.12+): each request's handler task built directly and started eagerly.
        await asyncio.Task(_handler(made), loop=loop, eager_start=True)  # type: ignore[call-arg]
    # uvicorn's: a callback (no task runs) creates each request's task.
    got: asyncio.Future[asyncio.Task[None]] = loop.create_future()
    loop.call_soon(lambda: got.set_result(loop.create_task(_background())))
    made.append(await got)


@needs_core
@pytest.mark.skipif(sys.version_info < (3, 12), reason="eager tasks are 3.12+")
def test_servers_request_creations_run_no_python_code_of_ours() -> None:
    """An eager handler's first-step creation and a callback's creation stay in the core: no Python call of ours.

    With interpreter frames the eager first step's node is found in C (``_lineage.in_first_step``'s
    common case); a callback's creation under a task's node is compiled on every build.
    """
    core = _speedups.CORE
    assert core is not None
    calls: list[str] = []
    package = os.path.dirname(async_trace.__file__)

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "call" and frame.f_code.co_filename.startswith(package):
            calls.append(frame.f_code.co_name)

    async def main() -> list[asyncio.Task[None]]:
        made: list[asyncio.Task[None]] = []
        await asyncio.create_task(_connection(made))
        sys.setprofile(profile)
        try:
            await asyncio.create_task(_connection(made))
        finally:
            sys.setprofile(None)
        await asyncio.gather(*made)
        return made

    made = asyncio.run(main())
    assert len(made) == 8
    python_steps = {"in_first_step", "repaired_node", "running_node", "capture", "create_task"}
    expected = set() if core.INTERPRETER_FRAMES else {"in_first_step", "repaired_node", "running_node"}
    assert python_steps & set(calls) == expected, calls


def test_the_variable_is_read_only_as_documented() -> None:
    """Only ``""`` and ``"0"`` leave the core on."""
    for value, expected in (("", "c"), ("0", "c"), ("1", "python"), ("yes", "python")):
        env = {**os.environ, "ASYNC_TRACE_NO_EXTENSIONS": value}
        command = [sys.executable, "-c", "import async_trace; print(async_trace.implementation)"]
        got = subprocess.run(command, capture_output=True, text=True, env=env, check=True).stdout.strip()
        assert got == (expected if CORE_BUILT else "python"), value


@needs_core
def test_the_compiled_walk_is_the_python_walk() -> None:
    """The same flat stack data from the same frames, elided alike past ``max_frames``."""
    c_walk = _stack.c_walk
    assert c_walk is not None

    def deep(n: int) -> Any:
        if n:
            return deep(n - 1)
        frame = sys._getframe()
        out = []
        for walk in (_stack.py_walk, c_walk):
            out.append(walk(frame, None, remember=False))
        return out

    def lines(frames: Any) -> list[Any]:
        # On 3.11/3.12 the calling frame's offset differs by a few bytes between calling a Python
        # and a C function (the call's inline cache): the same instruction, the same line.
        return [
            (frames[i], frames[i + 1] if frames[i] is None else _frames.line_at(frames[i], frames[i + 1]))
            for i in range(0, len(frames), 2)
        ]

    for depth in (0, 3, 200):  # 200: past max_frames, elided as the Python walk does
        python, compiled = deep(depth)
        assert lines(python) == lines(compiled)


@needs_core
async def test_the_compiled_collection_is_the_python_collection() -> None:
    """append_chain, append_frames and resolve_uncached: the same frame dicts, boundaries and roots.

    Through every kind of hop a chain has here: task hops (some deeper than ``max_frames``, elided),
    an executor hop, a chain elided past ``max_depth``, a root; with the creator known, and not
    (a callback, where the created task is looked up among the loop's tasks).
    """
    from async_trace import _chain, _collect

    assert _collect.append_chain is not _collect.py_append_chain
    assert _frames.resolve_uncached is not _frames.py_resolve_uncached
    checked: list[str] = []
    names: list[str] = []
    executor: list[bool] = []
    loop = asyncio.get_running_loop()

    def compare(what: str, task: Any, known: bool) -> None:
        frame = sys._getframe(1)
        node = _chain.CURRENT.get()
        assert node is not None
        stack = _stack.py_walk(frame, None, remember=False)
        assert _frames.py_resolve_uncached(stack) == _frames.resolve_uncached(stack), what
        results = []
        for append_frames, append_chain in (
            (_collect.py_append_frames, _collect.py_append_chain),
            (_collect.append_frames, _collect.append_chain),
        ):
            frames: list[Any] = []
            append_frames(frames, _frames.resolve_uncached(stack), task, False)
            boundaries, root = append_chain(frames, node, task, known, task, loop)
            results.append((frames, boundaries, root))
        python, compiled = results
        assert compiled == python, what
        # The same keys in the same order (what reprs and JSON show), not only equal dicts.
        assert [list(f) for f in compiled[0]] == [list(f) for f in python[0]], what
        assert len(python[0]) > 1, what
        checked.append(what)
        names.extend(f["name"] for f in python[0])
        executor.extend(f["is_executor"] for f in python[0])

    def deep(n: int, what: str, task: Any) -> None:
        if n:
            return deep(n - 1, what, task)
        compare(what, task, True)

    async def leaf(depth: int) -> None:
        deep(depth, f"task hops, stack {depth} deep", asyncio.current_task())
        loop.call_soon(compare, "a callback (creator unknown)", None, False)
        await asyncio.sleep(0)
        await loop.run_in_executor(None, compare, "an executor hop", None, True)

    async def link(n: int, depth: int) -> None:
        if n:
            await asyncio.create_task(link(n - 1, depth))
        else:
            await leaf(depth)

    await asyncio.create_task(link(4, 2))
    await asyncio.create_task(link(2, 300))  # past max_frames: elision markers in a hop
    saved = _capture._settings.max_depth
    _capture._settings.max_depth = 3  # a chain elided past max_depth
    try:
        await asyncio.create_task(link(6, 1))
    finally:
        _capture._settings.max_depth = saved
    assert len(checked) == 9
    # Each kind of entry was there to compare.
    assert any("frames elided" in name for name in names)
    assert any("task hops elided" in name for name in names)
    assert any(executor)


@needs_core
@pytest.mark.skipif(sys.version_info >= (3, 14), reason="3.14+ keeps tasks in C lists: no registration hook")
async def test_the_compiled_registration_hook_is_the_python_one() -> None:
    """A task built directly with ``asyncio.Task(...)``: the same trace and registry through either ``add``."""
    from async_trace import _direct_tasks

    assert _direct_tasks.installed()
    compiled_add = _direct_tasks._Registry.add
    assert compiled_add is not _direct_tasks.py_registry_add

    async def child() -> list[str]:
        await asyncio.sleep(0)
        return async_trace.format_trace()

    async def build() -> tuple[list[str], bool]:
        task = asyncio.Task(child())  # the line each trace names
        registered = task in asyncio.all_tasks()
        return await task, registered

    results = []
    for add in (compiled_add, _direct_tasks.py_registry_add):
        _direct_tasks._Registry.add = add  # type: ignore[method-assign]
        try:
            results.append(await asyncio.create_task(build()))
        finally:
            _direct_tasks._Registry.add = compiled_add  # type: ignore[method-assign]
    compiled, python = results
    assert compiled == python
    line = build.__code__.co_firstlineno + 1
    assert any(f"build() at line {line}" in entry for entry in compiled[0]), compiled[0]
    assert compiled[1]


@needs_core
async def test_a_failing_core_falls_back_to_untraced_creation_and_warns_once() -> None:
    """A failure inside the core: tasks and executor calls are made all the same, untraced; one warning; then healed."""

    class Broken:
        """A settings object whose bounds cannot be read: the core's walk and task_node raise."""

        def __getattr__(self, name: str) -> Any:
            raise RuntimeError(f"broken setting {name}")

    import async_trace._ccore as core

    async def child(n: int) -> list[str]:
        return async_trace.format_trace()

    async def parent() -> Any:
        calls = [await asyncio.get_running_loop().run_in_executor(None, len, "abc") for _ in range(2)]
        assert calls == [3, 3]  # executor calls too: made, untraced
        return [await asyncio.create_task(child(n)) for n in range(3)]

    before = async_trace.internal_errors().count
    core.setup_walk(_stack.HANDLE_RUN, Broken())
    core.forget()  # no cached capture to return without reading the bounds
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            results = await asyncio.create_task(parent())
    finally:
        core.setup_walk(_stack.HANDLE_RUN, _capture._settings)
    assert len(results) == 3  # every task ran
    assert async_trace.internal_errors().count > before
    assert "broken setting max_frames" in (async_trace.internal_errors().last or "")
    assert len([w for w in caught if issubclass(w.category, async_trace.AsyncTraceWarning)]) <= 1
    # Healed: the next tasks are traced again, through the core.
    lines = await asyncio.create_task(parent())
    assert any("parent()" in line for line in lines[0])


def plain_and_traced(program: str) -> dict[str, str]:
    """The output of ``python -c program MODE`` for MODE ``plain`` (it disables tracing) and ``traced`` (the core)."""
    env = {k: v for k, v in os.environ.items() if k != "ASYNC_TRACE_NO_EXTENSIONS"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return {
        mode: subprocess.run(
            [sys.executable, "-c", program, mode], capture_output=True, text=True, env=env, check=True
        ).stdout
        for mode in ("plain", "traced")
    }


@needs_core
@pytest.mark.skipif(sys.version_info < (3, 11), reason="3.10 runs the Python create_task wrapper (no context=)")
def test_the_loop_s_own_errors_show_no_frame_of_ours_with_the_core() -> None:
    """A create_task that fails (a non-coroutine, a task factory's error): the traceback is plain's exactly."""
    program = (
        "import asyncio, sys, traceback\n"
        "import async_trace\n"
        "if sys.argv[1] == 'plain':\n"
        "    async_trace.disable_tracing()\n"
        "async def main():\n"
        "    loop = asyncio.get_running_loop()\n"
        "    try:\n"
        "        loop.create_task(42)\n"
        "    except TypeError:\n"
        "        traceback.print_exc(file=sys.stdout)\n"
        "    loop.set_task_factory(lambda loop, coro, **kwargs: 1 / 0)\n"
        "    coro = asyncio.sleep(0)\n"
        "    try:\n"
        "        asyncio.create_task(coro)\n"
        "    except ZeroDivisionError:\n"
        "        traceback.print_exc(file=sys.stdout)\n"
        "    coro.close()\n"
        "    loop.set_task_factory(None)\n"
        "asyncio.run(main())\n"
    )
    out = plain_and_traced(program)
    assert out["traced"] == out["plain"]
    assert out["plain"].count("Traceback (most recent call last):") == 2
    assert "async_trace" not in out["traced"]


@needs_core
@pytest.mark.parametrize("how", ["run_in_executor", "to_thread"])
def test_a_shut_down_executor_s_error_shows_no_frame_of_ours_with_the_core(how: str) -> None:
    """run_in_executor on a shut-down executor (directly, and through to_thread): the traceback is plain's."""
    call = (
        "await loop.run_in_executor(pool, print)"
        if how == "run_in_executor"
        else "loop.set_default_executor(pool)\n        await asyncio.to_thread(print)"
    )
    program = (
        "import asyncio, concurrent.futures, sys, traceback\n"
        "import async_trace\n"
        "if sys.argv[1] == 'plain':\n"
        "    async_trace.disable_tracing()\n"
        "async def main():\n"
        "    loop = asyncio.get_running_loop()\n"
        "    pool = concurrent.futures.ThreadPoolExecutor()\n"
        "    pool.shutdown()\n"
        "    try:\n"
        f"        {call}\n"
        "    except RuntimeError:\n"
        "        traceback.print_exc(file=sys.stdout)\n"
        "    print(async_trace.implementation if sys.argv[1] == 'traced' else 'c')\n"
        "asyncio.run(main())\n"
    )
    out = plain_and_traced(program)
    assert out["traced"] == out["plain"]
    assert "cannot schedule new futures after shutdown" in out["plain"]
    assert "async_trace" not in out["traced"]


@needs_core
def test_a_subinterpreter_runs_the_python_path(tmp_path: Path) -> None:
    """The core's state is process-wide: a (legacy) subinterpreter traces on the Python path."""
    testcapi = pytest.importorskip("_testcapi")
    if not hasattr(testcapi, "run_in_subinterp"):
        pytest.skip("no _testcapi.run_in_subinterp")
    out = tmp_path / "sub.txt"
    code = (
        "import asyncio, async_trace\n"
        "async def child():\n"
        "    return async_trace.format_trace()\n"
        "async def main():\n"
        "    return await asyncio.create_task(child())\n"
        "lines = asyncio.run(main())\n"
        f"open({str(out)!r}, 'w').write(async_trace.implementation + ' ' + ''.join(lines))\n"
    )
    assert testcapi.run_in_subinterp(code) == 0
    implementation, _, trace = out.read_text().partition(" ")
    assert implementation == "python"
    assert "child()" in trace
    assert "main()" in trace
    assert async_trace.implementation == "c"


@pytest.mark.skipif(sys.version_info < (3, 11), reason="3.10 passes no context to tasks: no sibling contexts compared")
async def test_creating_tasks_while_siblings_are_compared_is_safe() -> None:
    """A context variable's value whose ``__eq__`` creates tasks: the sibling check re-enters create_task."""
    import contextvars

    var: contextvars.ContextVar[Any] = contextvars.ContextVar("hostile")
    made: list[asyncio.Task[Any]] = []

    async def child() -> list[str]:
        return async_trace.format_trace()

    class Hostile:
        def __eq__(self, other: object) -> bool:
            made.append(asyncio.create_task(child()))  # re-enters the wrapper mid-comparison
            return False

        __hash__ = object.__hash__

    async def spawner() -> list[list[str]]:
        var.set(Hostile())
        tasks = [asyncio.create_task(child()) for _ in range(2)]  # the second makes the sibling template
        for _ in range(3):
            var.set(Hostile())  # the creator's context changed: compared with the template's snapshot
            tasks += [asyncio.create_task(child()) for _ in range(2)]
        return [await task for task in tasks]

    traces = await asyncio.create_task(spawner())
    traces += [await task for task in made]
    assert made, "the comparison never ran the value's __eq__"
    assert len(traces) == 8 + len(made)
    assert all(any("spawner()" in line for line in lines) for lines in traces)
