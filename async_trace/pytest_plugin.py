"""The pytest plugin: what async tests leave behind, each with the chain of lines that started it.

Registered by the entry point :mod:`async_trace_pytest` only when
``--async-trace=warn|fail`` (or the ini setting ``async_trace``) asks for it:
installing async-trace changes no one's suite. When on, it reports, per test:

- tasks still pending at the end of the test (those its own code or its
  function-scoped fixtures created) and at the end of each event loop (just
  before the loop's runner cancels them: ``asyncio.Runner``, ``asyncio.run``,
  pytest-asyncio's and anyio's runners; or a loop closed by hand);
- timers (``call_later`` / ``call_at``) still armed then, unless the task
  that armed them is itself reported (an ``asyncio.sleep`` in a pending task);
- threads started during the test and still running after a short grace;
- "Task was destroyed but it is pending!", "Task exception was never
  retrieved" and unraisable exceptions of a traced task, in the report of the
  test during which they surface, naming the test whose line created the task;
- with a stall threshold, each time the test blocked its event loop longer.

Each entry shows its creation chain (``format_async_trace``'s arrows), cut at
the test function or fixture line that started it. Mode ``warn`` issues a
:class:`LeftoverWarning`; ``fail`` makes the test error at teardown; a marker
``@pytest.mark.async_trace("off" | "warn" | "fail", stall=..., allow=[...])``
sets them per test. While pytest formats a failure, the async-trace note
leaves out every frame pytest's traceback already shows.

Fail-safe like the rest of the package: a failure of the plugin's own
bookkeeping goes through ``warn_internal`` and the test runs as untraced.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Generator
from types import FrameType
from typing import Any

import pytest

import async_trace_pytest

from . import _capture
from ._api import format_async_trace
from ._chain import ExecutorNode, Node
from ._collect import chain_trace
from ._exceptions import exception_trace
from ._failsafe import warn_internal
from ._hooks import tracing_enabled
from ._lineage import node_of_task
from ._notes import leaving_out_shown_frames
from ._pytest_support import (
    CORO_REPR,
    LOST_TASK_MESSAGES,
    MODES,
    THREAD_GRACE,
    Allow,
    ById,
    Entry,
    Owner,
    Started,
    TestState,
    Timers,
    allowed,
    base_id,
    callable_name,
    creator_pending,
    is_armed,
    is_runner,
    line_range,
    machinery,
    open_loops,
    parse_allow,
    parse_seconds,
    pending_tasks,
    places,
    report_text,
    runner_paths,
    thread_now,
    timer_callback,
    waiting_at,
)
from ._stall import watch_stalls
from ._types import StallReport, TraceData, TraceFrame

__all__ = ["LeftoverWarning", "Plugin"]


class LeftoverWarning(pytest.PytestWarning):
    """A test left tasks, timers or threads behind, or blocked its loop (mode ``warn``)."""


# --- where things were started ------------------------------------------------


# --- allow-lists --------------------------------------------------------------


# --- rendering ------------------------------------------------------------------


# --- the plugin -------------------------------------------------------------------


class Plugin:
    """The plugin object :mod:`async_trace_pytest` registers when the mode is not ``off``."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.mode = async_trace_pytest.mode(config)
        self.allow = parse_allow(config.getini("async_trace_allow"))
        stall = config.getoption("async_trace_stall", None)
        if stall is None:
            stall = str(config.getini("async_trace_stall")).strip() or "0"
        self.stall = parse_seconds(stall, "async_trace_stall")
        self._lock = threading.RLock()
        self._owners: dict[str, list[Owner]] = {}
        self._test_modes: dict[str, str] = {}
        self._timers = Timers()
        self._threads: weakref.WeakKeyDictionary[threading.Thread, Started] = weakref.WeakKeyDictionary()
        self._reported: weakref.WeakSet[Any] = weakref.WeakSet()
        #: Tasks reported pending, readable in their finalizer (``True``).
        self._reported_tasks = ById()
        #: The task name and chain of each reported task's coroutine (see ``_remember_coro``).
        self._coros = ById()
        #: Unraisable exceptions of coroutines not known yet: ``(id(coroutine), text)``, kept
        #: for the rest of the garbage collection that finalizes them (dropped between tests).
        self._orphans: list[tuple[int, str]] = []
        self._current: TestState | None = None
        self._session_entries: list[Entry] = []
        self._patches: list[tuple[Any, str, bool, Any]] = []
        self._patch_all()
        self._previous_unraisablehook = sys.unraisablehook
        sys.unraisablehook = self._unraisablehook
        config.add_cleanup(self._unpatch_all)

    # --- patching ------------------------------------------------------------

    def _patch(self, owner: Any, name: str, make: Callable[[Any], Any]) -> None:
        original = getattr(owner, name, None)
        if original is None or getattr(original, "__async_trace_plugin__", False):
            return
        wrapper = make(original)
        wrapper.__async_trace_plugin__ = True
        self._patches.append((owner, name, name in vars(owner), vars(owner).get(name)))
        setattr(owner, name, wrapper)

    def _patch_all(self) -> None:
        """Patch what is imported now; called again before each test, for modules imported since."""
        self._patch(threading.Thread, "start", self._make_thread_start)
        self._patch(asyncio.BaseEventLoop, "call_at", self._make_call_at)
        self._patch(asyncio.BaseEventLoop, "close", self._make_close)
        self._patch(asyncio.BaseEventLoop, "call_exception_handler", self._make_call_exception_handler)
        uvloop = sys.modules.get("uvloop")
        if uvloop is not None and isinstance(getattr(uvloop, "Loop", None), type):
            # uvloop's call_later does not go through call_at: both, on its Python subclass.
            self._patch(uvloop.Loop, "call_at", self._make_call_at)
            self._patch(uvloop.Loop, "call_later", self._make_call_at)
            self._patch(uvloop.Loop, "close", self._make_close)
            self._patch(uvloop.Loop, "call_exception_handler", self._make_call_exception_handler)
        # Where runners cancel what is left before closing their loop.
        for module_name in ("asyncio.runners", "backports.asyncio.runner.runner", "anyio._backends._asyncio"):
            module = sys.modules.get(module_name)
            if module is not None and callable(getattr(module, "_cancel_all_tasks", None)):
                self._patch(module, "_cancel_all_tasks", self._make_cancel_all_tasks)

    def _unpatch_all(self) -> None:
        for owner, name, had_own, original in reversed(self._patches):
            if had_own:
                setattr(owner, name, original)
            else:
                with contextlib.suppress(AttributeError):
                    delattr(owner, name)
        self._patches.clear()
        if sys.unraisablehook == self._unraisablehook:
            sys.unraisablehook = self._previous_unraisablehook

    def _started_here(self, loop: Any, frame: FrameType | None) -> Started:
        """The record of a timer or thread started from ``frame`` now."""
        node: Node | None = None
        try:
            # Looked up at each call, as the package's own hooks do (tests replace it). Not while
            # tracing is off: capture() may store a root in the running task's context, which the
            # tasks it creates would inherit once tracing is on again.
            if tracing_enabled():
                node = _capture.capture(ExecutorNode, loop, frame)
        except Exception as exc:  # noqa: BLE001 - a debugging aid must not break the call
            warn_internal(exc, "recording where a timer or thread was started")
        current = self._current
        test = current.item.nodeid if current is not None else None
        return Started(node, test, weakref.ref(loop) if loop is not None else None)

    def _make_thread_start(self, original: Callable[..., Any]) -> Callable[..., Any]:
        plugin = self

        def start(self: threading.Thread) -> None:
            record = plugin._started_here(asyncio.events._get_running_loop(), sys._getframe(1))
            with plugin._lock:
                plugin._threads[self] = record
            original(self)

        return start

    def _make_call_at(self, original: Callable[..., Any]) -> Callable[..., Any]:
        plugin = self
        # asyncio's call_later calls call_at: its frame is machinery, not the line that armed the timer.
        skip = asyncio.BaseEventLoop.call_later.__code__

        def call_at(self: Any, *args: Any, **kwargs: Any) -> Any:
            handle = original(self, *args, **kwargs)
            frame: FrameType | None = sys._getframe(1)
            if frame is not None and frame.f_code is skip:
                frame = frame.f_back
            record = plugin._started_here(self, frame)
            with plugin._lock:
                plugin._timers.add(handle, record)
            return handle

        call_at.__name__ = original.__name__
        call_at.__qualname__ = getattr(original, "__qualname__", original.__name__)
        return call_at

    def _make_cancel_all_tasks(self, original: Callable[..., Any]) -> Callable[..., Any]:
        plugin = self

        def _cancel_all_tasks(loop: Any) -> Any:
            plugin._safely(plugin._loop_ends, loop)
            return original(loop)

        return _cancel_all_tasks

    def _make_close(self, original: Callable[..., Any]) -> Callable[..., Any]:
        plugin = self

        def close(self: Any) -> Any:
            if not self.is_running() and not self.is_closed():
                plugin._safely(plugin._loop_ends, self, timers=True)
            return original(self)

        return close

    def _make_call_exception_handler(self, original: Callable[..., Any]) -> Callable[..., Any]:
        plugin = self

        def call_exception_handler(self: Any, context: dict[str, Any]) -> Any:
            plugin._safely(plugin._lost_task, context)
            return original(self, context)

        return call_exception_handler

    def _unraisablehook(self, unraisable: Any) -> None:
        self._safely(self._unraisable, unraisable)
        self._previous_unraisablehook(unraisable)

    def _safely(self, func: Callable[..., None], *args: Any, **kwargs: Any) -> None:
        try:
            func(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - the test run must go on, untraced
            warn_internal(exc, "reporting what a test left behind")

    # --- owners ----------------------------------------------------------------

    def _add_owner(self, func: Any, label: str, scope: str, test: str | None) -> None:
        found = line_range(func)
        if found is None:
            return
        filename, first, last = found
        owners = self._owners.setdefault(filename, [])
        owner = Owner(first, last, label, scope, test)
        if owner not in owners:
            owners.append(owner)

    def _owner_in(self, frames: list[TraceFrame]) -> tuple[Owner | None, int]:
        """The innermost frame of ``frames`` in a test function or fixture, and its index (-1: none)."""
        for i, frame in enumerate(frames):
            line = frame["line"]
            if line is None or frame["filename"] is None:
                continue
            # By line range: a function defined inside a test (a main() it runs) is the test's.
            for owner in self._owners.get(frame["filename"], ()):
                if owner.first <= line <= owner.last:
                    return owner, i
        return None, -1

    # --- describing -------------------------------------------------------------

    def _chain(self, node: Node | None, task: Any, hop: bool) -> list[TraceFrame]:
        if node is None:
            return []
        frames = chain_trace(node, task)[0]
        if hop:
            # Captured as a hop (a timer or thread): no "[EXECUTOR]" mark on its first frame.
            for i, frame in enumerate(frames):
                if frame["line"] is not None:
                    frames[i] = {**frame, "is_executor": False}
                    break
        return frames

    def _describe(self, head: str, frames: list[TraceFrame]) -> Entry:
        """``head`` then the chain, cut after the test or fixture line that started it."""
        owner, at = self._owner_in(frames)
        if at >= 0:
            frames = frames[: at + 1]
        else:
            runner = runner_paths()
            for i, frame in enumerate(frames):
                if is_runner(frame["filename"], runner):
                    frames = frames[:i]
                    break
        label = owner.label if owner is not None else None
        head = head.replace("{of}", f" of {label}" if label is not None else "")
        lines = [head]
        if frames:
            shown: list[TraceFrame] = [{**frame, "indent": i} for i, frame in enumerate(frames)]
            trace: TraceData = {"frames": shown, "current_task": None, "in_executor": False}
            lines.extend("    " + line for line in format_async_trace(trace))
        else:
            lines.append("    (where is not known: created where async-trace could not follow)\n")
        return Entry("".join(lines), label)

    def _owner_test_is_off(self, frames: list[TraceFrame]) -> bool:
        owner, _ = self._owner_in(frames)
        return owner is not None and owner.test is not None and self._test_modes.get(owner.test) == "off"

    def _task_entry(self, task: Any, when: str) -> tuple[Entry, list[TraceFrame]] | None:
        frames = self._chain(node_of_task(task), task, hop=False)
        coro = None
        with contextlib.suppress(Exception):
            coro = task.get_coro()
        code = getattr(coro, "cr_code", None)
        if machinery(code) or allowed(self._allow_now(), places(frames, code)):
            return None
        self._remember_coro(task, frames)
        self._reported_tasks.put(task, True)
        name = task.get_name() if hasattr(task, "get_name") else repr(task)
        waiting = waiting_at(task)
        where = f", waiting in {waiting}" if waiting else ""
        return self._describe(f"task {name!r}{{of}} still pending{when}{where}; created at:\n", frames), frames

    def _timer_entry(self, handle: Any, record: Started, when: str) -> tuple[Entry, list[TraceFrame]] | None:
        callback = timer_callback(handle)
        frames = self._chain(record.node, None, hop=True)
        if machinery(callback) or allowed(self._allow_now(), places(frames, callback)):
            return None
        due = ""
        loop = record.loop() if record.loop is not None else None
        with contextlib.suppress(Exception):
            due = f" in {max(0.0, handle.when() - loop.time()):.1f} s" if loop is not None else ""
        head = f"timer{{of}} still armed{when}, to call {callable_name(callback)}{due}; armed at:\n"
        return self._describe(head, frames), frames

    def _allow_now(self) -> list[Allow]:
        current = self._current
        return current.allow if current is not None else self.allow

    def _add(self, entry: Entry) -> None:
        current = self._current
        with self._lock:
            (current.entries if current is not None else self._session_entries).append(entry)

    # --- what is left: at the end of a loop --------------------------------------

    def _loop_ends(self, loop: Any, *, timers: bool = False) -> None:
        """Report the loop's pending tasks (and with ``timers``, its armed timers) not reported yet."""
        current = self._current
        if current is not None and current.mode == "off":
            return
        for task in pending_tasks(loop):
            if task in self._reported:
                continue
            self._reported.add(task)
            made = self._task_entry(task, " when its event loop closed")
            if made is not None and not self._owner_test_is_off(made[1]):
                self._add(made[0])
        if not timers:
            return
        with self._lock:
            live = self._timers.live()
        for handle, record, entry in live:
            if record.loop is None or record.loop() is not loop:
                continue
            if not is_armed(handle) or creator_pending(record):
                continue
            entry[2] = True
            made_timer = self._timer_entry(handle, record, " when its event loop closed")
            if made_timer is not None and not self._owner_test_is_off(made_timer[1]):
                self._add(made_timer[0])

    # --- what is left: at the end of a test ----------------------------------------

    def _test_ends(self, state: TestState) -> None:
        nodeid = state.item.nodeid
        test = base_id(nodeid)

        def ours(frames: list[TraceFrame]) -> bool:
            # Started by this test's code or one of its function-scoped fixtures.
            owner, _ = self._owner_in(frames)
            return owner is not None and owner.scope == "function" and owner.test in (None, test)

        for loop in open_loops():
            for task in pending_tasks(loop):
                if task in state.before or task in self._reported:
                    continue
                frames = self._chain(node_of_task(task), task, hop=False)
                if not ours(frames):
                    continue
                self._reported.add(task)
                made = self._task_entry(task, "")
                if made is not None:
                    self._add(made[0])
        with self._lock:
            timers = self._timers.live()
            threads = list(self._threads.items())
        for handle, record, entry in timers:
            loop = record.loop() if record.loop is not None else None
            if record.test != nodeid or loop is None or loop.is_closed():
                continue
            if not is_armed(handle) or creator_pending(record):
                continue
            made_timer = self._timer_entry(handle, record, "")
            if made_timer is not None and ours(made_timer[1]):
                entry[2] = True
                self._add(made_timer[0])
        deadline = time.monotonic() + THREAD_GRACE
        for thread, record in threads:
            if record.test != nodeid or thread in self._reported or thread is threading.current_thread():
                continue
            if not thread.is_alive():
                continue
            frames = self._chain(record.node, None, hop=True)
            owner, _ = self._owner_in(frames)
            if owner is not None and owner.scope != "function":
                continue  # a wider fixture's: it may run on past this test
            thread.join(max(0.0, deadline - time.monotonic()))
            if not thread.is_alive():
                continue
            target = getattr(thread, "_target", None)
            if machinery(target) or allowed(state.allow, places(frames, target)):
                continue
            self._reported.add(thread)
            daemon = " (daemon)" if thread.daemon else ""
            now = thread_now(thread)
            where = f", now in {now}" if now else ""
            head = f"thread {thread.name!r}{daemon}{{of}} still running{where}; started at:\n"
            self._add(self._describe(head, frames))

    # --- lost tasks and unraisable exceptions -------------------------------------

    def _lost_task(self, context: dict[str, Any]) -> None:
        message = context.get("message")
        task = context.get("task", context.get("future"))
        if message not in LOST_TASK_MESSAGES or task is None or not hasattr(task, "get_coro"):
            return
        if message == LOST_TASK_MESSAGES[0] and self._reported_tasks.get(task):
            return  # reported pending already, with the same chain
        current = self._current
        if current is not None and current.mode == "off":
            return
        frames = self._chain(node_of_task(task), task, hop=False)
        if not frames or self._owner_test_is_off(frames):
            return
        coro = None
        with contextlib.suppress(Exception):
            coro = task.get_coro()
        if allowed(self._allow_now(), places(frames, getattr(coro, "cr_code", None))):
            return
        self._reported.add(task)
        self._remember_coro(task, frames)
        exc = context.get("exception")
        detail = f" ({type(exc).__name__}: {exc})" if isinstance(exc, BaseException) else ""
        head = f"{message!r}{detail} for task {task.get_name()!r}{{of}}, created at:\n"
        self._add(self._describe(head, frames))
        if self._orphans and coro is not None:
            with self._lock:
                mine = [text for ident, text in self._orphans if ident == id(coro)]
                self._orphans = [(ident, text) for ident, text in self._orphans if ident != id(coro)]
            for text in mine:
                self._add_unraisable(text, f"task {task.get_name()!r}", frames)

    def _remember_coro(self, task: Any, frames: list[TraceFrame]) -> None:
        """Keep a lost task's chain by its coroutine, for an unraisable exception its closing raises."""
        with contextlib.suppress(Exception):  # a coroutine-like object without weak references
            coro = task.get_coro()
            if coro is not None:
                # Without the frames' task references: this must not keep the task alive.
                kept: list[TraceFrame] = [{**frame, "task": None} for frame in frames]
                with self._lock:
                    self._coros.put(coro, (task.get_name(), kept))

    def _unraisable(self, unraisable: Any) -> None:
        exc = getattr(unraisable, "exc_value", None)
        if not isinstance(exc, BaseException):
            return
        current = self._current
        if current is not None and current.mode == "off":
            return
        obj = getattr(unraisable, "object", None)
        inside = getattr(obj, "__qualname__", None)
        ident = id(obj)
        if obj is None:
            # 3.14+: "Exception ignored while closing generator <coroutine object f at 0x...>", no object.
            found = CORO_REPR.search(str(getattr(unraisable, "err_msg", None) or ""))
            if found is None:
                return
            inside, ident = found.group(1), int(found.group(2), 16)
        known = self._coros.get_id(ident)
        where = f" in {inside}()" if isinstance(inside, str) else ""
        text = f"unraisable exception{where} ({type(exc).__name__}: {exc})"
        if known is not None:
            name, frames = known
            what = f"task {name!r}"
        else:
            trace = exception_trace(exc)
            if trace is None or not trace["frames"]:
                if obj is None or hasattr(obj, "cr_code"):
                    # A lost task's coroutine finalized before the task, in one collection:
                    # the task's report, coming next, takes this along (see _lost_task).
                    with self._lock:
                        self._orphans.append((ident, text))
                return
            frames = list(trace["frames"])
            what = "a task"
        self._add_unraisable(text, what, frames)

    def _add_unraisable(self, text: str, what: str, frames: list[TraceFrame]) -> None:
        if self._owner_test_is_off(frames) or allowed(self._allow_now(), places(frames, None)):
            return
        self._add(self._describe(f"{text}, of {what}{{of}}, created at:\n", frames))

    # --- hooks ------------------------------------------------------------------------

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            self._state_for(item)  # a bad marker is a usage error, before anything runs
            func = getattr(item, "function", None)
            if func is not None:
                self._add_owner(func, base_id(item.nodeid), "function", base_id(item.nodeid))

    @pytest.hookimpl(wrapper=True)
    def pytest_fixture_setup(self, fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest) -> Any:
        with contextlib.suppress(Exception):
            self._add_owner(fixturedef.func, f"fixture {fixturedef.argname!r}", fixturedef.scope, None)
        return (yield)

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> Generator[None, None, None]:
        state = self._state_for(item)  # checked at collection: does not raise here
        self._test_modes[base_id(item.nodeid)] = state.mode
        self._safely(self._begin, state)
        self._current = state
        if state.mode != "off" and state.stall > 0:
            self._safely(self._watch_stalls, state)
        return (yield)

    @pytest.hookimpl(wrapper=True, trylast=True)
    def pytest_runtest_teardown(self, item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, None, None]:
        try:
            result = yield
        except BaseException:
            self._finish(item, raising=False)
            raise
        self._finish(item, raising=True)
        return result

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
        # The report formats the failure here: its async-trace note skips what pytest shows.
        with leaving_out_shown_frames():
            return (yield)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        entries = self._session_entries
        if not entries:
            return
        terminalreporter.section("async-trace: left behind outside any test")
        for entry in entries:
            terminalreporter.write(entry.text)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self._session_entries and self.mode == "fail" and session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    # --- per test ---------------------------------------------------------------------

    def _state_for(self, item: pytest.Item) -> TestState:
        mode = self.mode
        allow = list(self.allow)
        stall = self.stall
        for marker in reversed(list(item.iter_markers("async_trace"))):  # the closest marker wins
            if marker.args:
                chosen = marker.args[0]
                if chosen not in MODES:
                    raise pytest.UsageError(
                        f"{item.nodeid}: async_trace marker: mode must be one of {', '.join(MODES)}, not {chosen!r}"
                    )
                mode = str(chosen)
            if "mode" in marker.kwargs:
                chosen = marker.kwargs["mode"]
                if chosen not in MODES:
                    raise pytest.UsageError(
                        f"{item.nodeid}: async_trace marker: mode must be one of {', '.join(MODES)}, not {chosen!r}"
                    )
                mode = str(chosen)
            if "stall" in marker.kwargs:
                stall = parse_seconds(marker.kwargs["stall"] or 0, f"{item.nodeid}: async_trace marker: stall")
            if "allow" in marker.kwargs:
                extra = marker.kwargs["allow"]
                try:
                    allow.extend(parse_allow([extra] if isinstance(extra, str) else list(extra)))
                except (TypeError, ValueError) as exc:
                    raise pytest.UsageError(f"{item.nodeid}: async_trace marker: {exc}") from None
        return TestState(item, mode, allow, stall)

    def _begin(self, state: TestState) -> None:
        self._patch_all()  # uvloop, anyio's backend and the like, imported since
        with self._lock:
            self._reported_tasks.prune()
            self._coros.prune()
            self._orphans.clear()
            for loop in open_loops():
                state.before.update(pending_tasks(loop))

    def _watch_stalls(self, state: TestState) -> None:
        """Start the stall watchdog for this test: every loop that runs during it, found within a quarter threshold."""

        def on_stall(report: StallReport) -> None:  # in the watchdog thread
            self._safely(self._stalled, state, report)

        quarter = max(state.stall / 4, 0.005)
        state.watch = watch_stalls(
            state.stall,
            on_stall=on_stall,
            log=False,
            dedup_interval=0,
            max_reports_per_minute=1000,
            discover_interval=quarter,
        )

    def _stalled(self, state: TestState, report: StallReport) -> None:
        if report.ongoing:
            return  # the report made once the loop runs again says it all
        frames = [*report.stack, *report.chain]
        if allowed(state.allow, places(frames, None)):
            return
        task = f", in task {report.task_name!r}" if report.task_name is not None else ""
        head = (
            f"event loop blocked for {report.duration:.3f} s (threshold {report.threshold:g} s, "
            f"{report.kind}){task}{{of}}; at:\n"
        )
        entry = self._describe(head, frames)
        with self._lock:
            state.entries.append(entry)

    def _finish(self, item: pytest.Item, *, raising: bool) -> None:
        state = self._current
        self._current = None
        if state is None or state.item is not item:
            return
        watch = state.watch
        if watch is not None:
            state.watch = None
            self._safely(watch.stop)
        if state.mode != "off":
            self._current = state  # what the check finds goes to this test
            try:
                self._safely(self._test_ends, state)
            finally:
                self._current = None
        if state.mode == "off" or not state.entries:
            return
        text = report_text(item, state.entries)
        if not raising:
            item.add_report_section("teardown", "async-trace", text)
        elif state.mode == "fail":
            pytest.fail(text, pytrace=False)
        else:
            _, lineno, _ = item.location
            warnings.warn_explicit(
                LeftoverWarning(text),
                LeftoverWarning,
                filename=str(item.path),
                lineno=(lineno or 0) + 1,
                module=item.nodeid,
            )


# --- small helpers --------------------------------------------------------------------
