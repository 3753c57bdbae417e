"""The pytest plugin's vocabulary: its modes and records, allow-lists, where a chain belongs, what a loop left.

Module-level helpers of :mod:`.pytest_plugin` (which holds the plugin object
and its hooks): parsing and matching ``module[:function]`` allow-list
entries, telling a test runner's frames from a test's, and reading what a
loop left armed or pending, with no state of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import re
import sys
import threading
import weakref
from collections.abc import Iterable
from types import CodeType, FrameType
from typing import Any, Final, NamedTuple

import pytest

from ._chain import Node
from ._loops import seen_loops
from ._stall import StallWatch
from ._types import TraceFrame

__all__: list[str] = []


MODES: Final = ("off", "warn", "fail")


#: How long, in all, the end of a test waits for threads it started to finish by themselves.
THREAD_GRACE: Final = 0.25


#: How 3.14+ names the coroutine of an unraisable exception raised while closing it (id in CPython: its address).
CORO_REPR: Final = re.compile(r"<coroutine object (\S+) at (0x[0-9a-fA-F]+)>")


#: Messages of the loop's exception handler about a task that was lost.
LOST_TASK_MESSAGES: Final = ("Task was destroyed but it is pending!", "Task exception was never retrieved")


class Owner(NamedTuple):
    """A test function or fixture whose code may appear in a creation chain."""

    first: int
    last: int
    #: ``test_x.py::test_a`` or ``fixture 'server'``.
    label: str
    #: The fixture's scope; ``"function"`` for a test.
    scope: str
    #: The test's node id without parameters (``None`` for a fixture).
    test: str | None


class Started(NamedTuple):
    """A timer armed or a thread started while the plugin was on."""

    node: Node | None
    #: The node id of the test running then (``None`` between tests).
    test: str | None
    loop: Any  # a weak reference to the timer's loop; None for a thread


class Entry(NamedTuple):
    """One thing to report: its text and the label of the test or fixture that started it."""

    text: str
    owner: str | None


def line_range(func: Any) -> tuple[str, int, int] | None:
    """``(filename, first line, last line)`` of a function, nested functions included, or ``None``."""
    try:
        code = inspect.unwrap(func).__code__
    except (AttributeError, ValueError):
        return None
    last = code.co_firstlineno
    todo = [code]
    for _ in range(10_000):  # bounded: nested code objects
        if not todo:
            break
        inner = todo.pop()
        last = max([last, *(line for _, _, line in inner.co_lines() if line is not None)])
        todo.extend(const for const in inner.co_consts if isinstance(const, CodeType))
    return code.co_filename, code.co_firstlineno, last


def base_id(nodeid: str) -> str:
    """A test's node id without its parameters."""
    cut = nodeid.find("[")
    return nodeid if cut < 0 else nodeid[:cut]


class ById:
    """Values kept by object identity, readable while the object is finalized.

    A weak mapping cannot serve a finalizer: the garbage collector clears an
    object's weak references before it calls ``__del__`` (where a task logs
    "destroyed but it is pending" and its coroutine is closed). So entries
    are keyed by ``id()``, each with a weak reference that tells a live or
    dying object (the reference is its own, or cleared) from a new one at the
    same address; dead entries are dropped between tests.
    """

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        self._entries: dict[int, tuple[weakref.ref[Any], Any]] = {}

    def put(self, obj: Any, value: Any) -> None:
        with contextlib.suppress(TypeError):  # not weakly referenceable: not kept
            self._entries[id(obj)] = (weakref.ref(obj), value)

    def get(self, obj: Any) -> Any:
        return self.get_id(id(obj))

    def get_id(self, ident: int) -> Any:
        """The value kept for the object whose ``id()`` is ``ident``, if that object is the one kept."""
        entry = self._entries.get(ident)
        if entry is None:
            return None
        alive = entry[0]()
        return entry[1] if alive is None or id(alive) == ident else None

    def prune(self) -> None:
        for key, (ref, _) in list(self._entries.items()):
            if ref() is None:
                del self._entries[key]


class Timers:
    """Armed timers and their records, by identity (asyncio's ``TimerHandle`` compares and hashes
    by its time and callback, so two timers can be equal), each dropped when its handle is."""

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        #: ``id(handle)`` -> ``[weak reference, record, reported]``
        self._entries: dict[int, list[Any]] = {}

    def add(self, handle: Any, record: Started) -> None:
        key = id(handle)

        def gone(ref: Any, key: int = key) -> None:  # any thread, from the garbage collector
            entry = self._entries.get(key)
            if entry is not None and entry[0] is ref:
                self._entries.pop(key, None)

        with contextlib.suppress(TypeError):  # a handle type without weak references: not followed
            self._entries[key] = [weakref.ref(handle, gone), record, False]

    def live(self) -> list[tuple[Any, Started, list[Any]]]:
        """``(handle, record, entry)`` of each timer alive and not reported, oldest first."""
        out = []
        for entry in list(self._entries.values()):
            handle = entry[0]()
            if handle is not None and not entry[2]:
                out.append((handle, entry[1], entry))
        return out


class Allow(NamedTuple):
    module: str
    function: str | None


def parse_allow(lines: Iterable[str]) -> list[Allow]:
    """``module`` or ``module:function`` entries, each optionally followed by whitespace and a reason.

    Raises:
        ValueError: an entry with no module.
    """
    out: list[Allow] = []
    for line in lines:
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        spec = text.split()[0]
        module, _, function = spec.partition(":")
        if not module:
            raise ValueError(f"async_trace_allow: {line!r} names no module")
        out.append(Allow(module, function or None))
    return out


_modules_by_file: dict[str, str] = {}


def module_of(filename: str | None) -> str | None:
    """The name of the imported module whose file is ``filename``."""
    if not filename:
        return None
    key = os.path.normcase(os.path.abspath(filename))
    found = _modules_by_file.get(key)
    if found is None:
        _modules_by_file.clear()
        for name, module in list(sys.modules.items()):
            path = getattr(module, "__file__", None)
            if isinstance(path, str):
                _modules_by_file[os.path.normcase(os.path.abspath(path))] = name
        found = _modules_by_file.get(key)
    return found


def allowed(allow: list[Allow], places: Iterable[tuple[str | None, str]]) -> bool:
    """Whether any ``(module, function)`` of ``places`` is on the allow-list."""
    if not allow:
        return False
    for module, function in places:
        if module is None:
            continue
        for entry in allow:
            if module != entry.module and not module.startswith(entry.module + "."):
                continue
            if entry.function is None or function == entry.function or function.endswith("." + entry.function):
                return True
    return False


#: What test runners and the plugin itself leave on purpose, by what it runs (never by a
#: chain frame: a test's own tasks have the runner's frames in their chains):
#: anyio's runner task (cancelled when its runner closes), the stall watchdog's heartbeats.
MACHINERY: Final = (
    Allow("anyio._backends._asyncio", "_run_tests_and_fixtures"),
    Allow("async_trace._stall", None),
    Allow("async_trace._stall_sample", None),  # the heartbeat (LoopState.beat)
)


def machinery(target: Any) -> bool:
    return allowed(list(MACHINERY), places([], target))


def places(frames: list[TraceFrame], target: Any) -> list[tuple[str | None, str]]:
    """The ``(module, function)`` of ``target`` (a function or code) and of every frame of a chain."""
    out: list[tuple[str | None, str]] = []
    code = getattr(target, "__code__", target)
    filename = getattr(code, "co_filename", None)
    if filename is not None:
        out.append((module_of(filename), str(getattr(code, "co_qualname", code.co_name))))
    elif target is not None:
        module = getattr(target, "__module__", None)
        name = getattr(target, "__qualname__", None)
        if isinstance(module, str) and isinstance(name, str):
            out.append((module, name))
    out.extend((module_of(f["filename"]), f["name"]) for f in frames if f["line"] is not None)
    return out


def runner_paths() -> tuple[str, ...]:
    """Files and directories of the test runner: a chain is cut where it reaches them."""
    out: list[str] = []
    for name in ("pytest", "_pytest", "pluggy", "pytest_asyncio", "anyio.pytest_plugin", "async_trace_pytest"):
        module = sys.modules.get(name)
        path = getattr(module, "__file__", None)
        if not isinstance(path, str):
            continue
        if os.path.basename(path) == "__init__.py":
            out.append(os.path.dirname(path) + os.sep)
        else:
            out.append(path)
    out.append(__file__)
    return tuple(out)


def is_runner(filename: str | None, runner: tuple[str, ...]) -> bool:
    return filename is not None and any(filename == p or filename.startswith(p) for p in runner if p)


def where_text(filename: str | None, line: int | None, name: str) -> str:
    base = os.path.basename(filename) if filename else "?"
    return f"{name}() at line {line} [{base}]"


_ASYNCIO_DIR: Final = os.path.dirname(asyncio.__file__) + os.sep


def waiting_at(task: Any) -> str | None:
    """Where a pending task waits: the innermost frame of its ``await`` chain."""
    try:
        coro: Any = task.get_coro()
    except Exception:  # noqa: BLE001 - a Future-like object of a custom factory
        return None
    frame: FrameType | None = None
    for _ in range(1000):
        f = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None) or getattr(coro, "ag_frame", None)
        if f is None:
            break
        if frame is not None and f.f_code.co_filename.startswith(_ASYNCIO_DIR):
            break  # asyncio.sleep, Event.wait ...: the line awaiting it says more
        frame = f
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None) or getattr(coro, "ag_await", None)
        if coro is None:
            break
    if frame is None:
        return None
    return where_text(frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name)


def callable_name(func: Any) -> str:
    inner = getattr(func, "func", None)  # functools.partial
    if inner is not None and callable(inner):
        func = inner
    name = getattr(func, "__qualname__", None) or getattr(func, "__name__", None)
    return f"{name}()" if isinstance(name, str) else repr(func)


class TestState:
    """What one test's run collects: its settings, what was running before it, what it met."""

    __slots__ = ("allow", "before", "entries", "item", "mode", "stall", "watch")

    def __init__(self, item: pytest.Item, mode: str, allow: list[Allow], stall: float) -> None:
        self.item = item
        self.mode = mode
        self.allow = allow
        self.stall = stall
        self.before: weakref.WeakSet[Any] = weakref.WeakSet()
        self.entries: list[Entry] = []
        self.watch: StallWatch | None = None


def parse_seconds(value: Any, what: str) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise pytest.UsageError(f"{what}: a number of seconds, not {value!r}") from None
    if seconds < 0 or seconds != seconds:
        raise pytest.UsageError(f"{what}: a number of seconds >= 0, not {value!r}")
    return seconds


def report_text(item: pytest.Item, entries: list[Entry]) -> str:
    count = len(entries)
    lines = [f"async-trace: {count} report{'s' if count != 1 else ''} at the end of {item.nodeid}:"]
    lines.extend("- " + entry.text.rstrip("\n").replace("\n", "\n  ") for entry in entries)
    return "\n".join(lines)


def all_tasks(loop: Any) -> list[Any]:
    for _ in range(10):
        try:
            return list(asyncio.all_tasks(loop))
        except RuntimeError:  # changed size while copied (another thread's loop): again
            continue
    return []


def pending_tasks(loop: Any) -> list[Any]:
    """The loop's pending tasks, by name (a report in a stable order)."""
    tasks = [task for task in all_tasks(loop) if not task.done()]
    with contextlib.suppress(Exception):  # a Future-like object of a custom factory
        tasks.sort(key=lambda task: str(task.get_name()))
    return tasks


def open_loops() -> list[Any]:
    return [loop for loop, _ in seen_loops() if not loop.is_closed()]


def timer_callback(handle: Any) -> Any:
    callback = getattr(handle, "_callback", None)  # asyncio's TimerHandle
    if callback is None and type(handle).__module__.startswith("uvloop"):
        import gc

        # uvloop's TimerHandle (Cython) shows its callback only to the garbage collector, first.
        referents = gc.get_referents(handle)
        callback = referents[0] if referents and callable(referents[0]) else None
    return callback


def is_armed(handle: Any) -> bool:
    """Whether a timer is still due: not cancelled, not run yet."""
    try:
        if handle.cancelled():
            return False
    except Exception:  # noqa: BLE001 - a handle type of its own
        return False
    scheduled = getattr(handle, "_scheduled", None)  # asyncio's: False once popped to run
    if scheduled is not None:
        return bool(scheduled)
    return timer_callback(handle) is not None  # uvloop's drops its callback once run


def creator_pending(record: Started) -> bool:
    """Whether the task that armed a timer is still pending (and so reported itself)."""
    node = record.node
    creator = node.creator if node is not None else None
    return creator is not None and not creator.done()


def thread_now(thread: threading.Thread) -> str | None:
    ident = thread.ident
    frame = sys._current_frames().get(ident) if ident is not None else None
    if frame is None:
        return None
    # The innermost frame outside the standard library's threading machinery.
    threading_file = threading.__file__
    for _ in range(1000):
        if frame is None or frame.f_code.co_filename != threading_file:
            break
        frame = frame.f_back
    if frame is None:
        return None
    return where_text(frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name)
