"""Sampling a blocked loop's thread mid-stall: its stack, what it waits on, its running task's chain.

Read from the watchdog thread (:mod:`._stall`) while the loop thread is
blocked: ``sys._current_frames()`` gives the loop thread's frame, the stack is
kept as trace frames (no frame objects), the kind of stall is told from where
that stack stands (a blocking call, a wait on a lock, event, thread or future
another thread holds, the loop's own poll, a debugger), and the running
task's chain comes from its node, as for any trace. Also the garbage
collector's time (a ``gc.callbacks`` entry while a watch runs), which tells a
``gc`` stall. Nothing here keeps a frame, a task or a lock.
"""

from __future__ import annotations

import ast
import asyncio
import collections
import contextvars
import gc
import inspect
import linecache
import os
import re
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from types import CodeType, FrameType
from typing import Any, Final

from ._chain import stop_frame, task_name
from ._collect import append_chain, append_frames
from ._compat import HAS_CODE_POSITIONS, coro_of, task_context
from ._frames import USER, frame_kind, resolve_uncached
from ._inapp import in_app
from ._lineage import is_own, node_of_task, running_node
from ._loops import loop_thread
from ._stack import walk
from ._types import StallKind, StallThread, TraceFrame

__all__: list[str] = []


_gc_total = 0.0
_gc_started = 0.0
_gc_users = 0
_gc_lock = threading.Lock()


def _on_gc(phase: str, info: dict[str, Any]) -> None:
    global _gc_total, _gc_started
    if phase == "start":
        _gc_started = time.monotonic()
    elif _gc_started:
        _gc_total += time.monotonic() - _gc_started
        _gc_started = 0.0


def gc_watch(on: bool) -> None:
    """Count garbage collection time while at least one watch runs (a callback per collection)."""
    global _gc_users
    with _gc_lock:
        _gc_users += 1 if on else -1
        if on and _gc_users == 1:
            gc.callbacks.append(_on_gc)
        elif not on and _gc_users == 0:
            while _on_gc in gc.callbacks:
                gc.callbacks.remove(_on_gc)


#: Modules whose functions wait for another thread: the frame that called into them is the waiter.
_WAIT_MODULES: Final = frozenset(
    {"threading", "queue", "concurrent.futures._base", "concurrent.futures.thread", "multiprocessing.synchronize"}
)
#: Modules of debuggers: a loop thread stopped in one of them is not stalled.
_DEBUGGER_PREFIXES: Final = ("bdb", "pdb", "pydevd", "_pydevd", "_pydev", "debugpy")
#: Method names that wait, on the object they are called on.
_WAIT_METHODS: Final = frozenset({"acquire", "wait", "wait_for", "join", "result", "get", "put", "exception"})
_LOCK_TYPES: Final = (
    type(threading.Lock()),
    type(threading.RLock()),
    threading.Condition,
    threading.Semaphore,
    threading.Event,
    threading.Barrier,
    threading.Thread,
)
#: What a ``with`` statement waits on when entered.
_ENTERED: Final = (type(threading.Lock()), type(threading.RLock()), threading.Condition, threading.Semaphore)
_WAITABLE: Final = _LOCK_TYPES
_OWNER: Final = re.compile(r"owner=(\d+)")
_SELECTORS_FILE: Final = os.path.abspath(__import__("selectors").__file__ or "")
_RUN_ONCE: Final[CodeType] = getattr(asyncio.base_events.BaseEventLoop, "_run_once").__code__  # noqa: B009 - private
_HANDLE_RUN: Final = asyncio.events.Handle._run.__code__
_MAX_STACK: Final = 2000


def _module(frame: FrameType) -> str:
    name = frame.f_globals.get("__name__")
    return name if isinstance(name, str) else "?"


def _shown(top: FrameType | None, stop: FrameType | None) -> list[TraceFrame]:
    frames: list[TraceFrame] = []
    append_frames(frames, resolve_uncached(walk(top, stop, remember=False)), None, False)
    return frames


def _frames_to(top: FrameType, stop: FrameType | None) -> list[FrameType]:
    out: list[FrameType] = []
    frame: FrameType | None = top
    while frame is not None and len(out) < _MAX_STACK:
        out.append(frame)
        if frame is stop:
            break
        frame = frame.f_back
    return out


def _source_of(frames: list[FrameType]) -> str | None:
    """``module:function`` of the innermost frame of the program's own code, if any."""
    for frame in frames:
        code = frame.f_code
        if in_app(code.co_filename) and frame_kind(code) == USER:
            return f"{_module(frame)}:{code.co_name}"
    return None


_module_by_file: dict[str, str] = {}


def _module_of_file(filename: str) -> str:
    """The name of the loaded module whose file is ``filename`` (else the file's stem)."""
    found = _module_by_file.get(filename)
    if found is not None:
        return found
    for name, module in list(sys.modules.items()):
        if getattr(module, "__file__", None) == filename:
            found = name
            break
    else:
        found = os.path.splitext(os.path.basename(filename))[0]
    if len(_module_by_file) < 4096:
        _module_by_file[filename] = found
    return found


def _chain_source(chain: Iterable[TraceFrame]) -> str | None:
    for frame in chain:
        if frame["in_app"] and frame["filename"] is not None:
            return f"{_module_of_file(frame['filename'])}:{frame['name']}"
    return None


def _in_debugger(frames: list[FrameType]) -> bool:
    return any(_module(frame).startswith(_DEBUGGER_PREFIXES) for frame in frames)


def _idle(top: FrameType, base: CodeType | None) -> bool:
    """Whether the loop thread sits in the loop's poll (selectors), or in the C loop that called our beat."""
    code = top.f_code
    if code is _RUN_ONCE or os.path.abspath(code.co_filename) == _SELECTORS_FILE:
        return True
    return base is not None and code is base


def _static(obj: Any, name: str) -> Any:
    """``obj.name`` without running any code of the program (no properties, no ``__getattr__``)."""
    value = inspect.getattr_static(obj, name)
    if hasattr(type(value), "__get__") and not isinstance(value, _LOCK_TYPES):
        raise AttributeError(name)  # a descriptor: calling it would run code
    return value


def _evaluate(node: ast.expr, frame: FrameType) -> Any:
    """A name or an attribute chain of the frame's scope, read statically; ``AttributeError`` if not that."""
    if isinstance(node, ast.Name):
        local = frame.f_locals
        if node.id in local:
            return local[node.id]
        if node.id in frame.f_globals:
            return frame.f_globals[node.id]
        raise AttributeError(node.id)
    if isinstance(node, ast.Attribute):
        return _static(_evaluate(node.value, frame), node.attr)
    raise AttributeError("not a name")


def _call_text(frame: FrameType) -> str | None:
    """The source of the expression the frame is evaluating now (3.11+), or of its line (3.10)."""
    code = frame.f_code
    lasti = frame.f_lasti
    if HAS_CODE_POSITIONS and lasti >= 0:
        positions = list(code.co_positions())  # type: ignore[attr-defined,unused-ignore]  # 3.11+
        index = lasti // 2
        if index < len(positions):
            line, end_line, col, end_col = positions[index]
            if line is not None and end_line is not None and col is not None and end_col is not None:
                lines = [linecache.getline(code.co_filename, n) for n in range(line, end_line + 1)]
                if lines and all(lines):
                    if len(lines) == 1:
                        return lines[0][col:end_col]
                    return lines[0][col:] + "".join(lines[1:-1]) + lines[-1][:end_col]
    text = linecache.getline(code.co_filename, frame.f_lineno).strip()
    return text or None


def _parsed(text: str) -> ast.AST | None:
    """``text`` (an expression, a statement, or a compound statement's first line) parsed, or ``None``."""
    text = text.strip()
    first = text.splitlines()[0] if text else ""
    for candidate, mode in ((text, "eval"), (text, "exec"), (first + "\n    pass", "exec"), (first, "exec")):
        try:
            return ast.parse(candidate, mode=mode)
        except SyntaxError:
            continue
    return None


def _waited_object(frame: FrameType) -> Any:
    """The lock, event, thread or future the frame's current expression waits on, or ``None``."""
    text = _call_text(frame)
    if not text:
        return None
    tree = _parsed(text)
    if tree is None:
        return None
    # A call of a waiting method (``lock.acquire()``, ``event.wait()``, ``thread.join()``,
    # ``future.result()``), or a ``with`` entering a lock (the whole expression on 3.13+).
    calls: list[ast.expr] = []
    entered: list[ast.expr] = []
    if isinstance(tree, ast.Expression) and isinstance(tree.body, (ast.Name, ast.Attribute)):
        entered.append(tree.body)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in _WAIT_METHODS:
            calls.append(node.func.value)
        elif isinstance(node, ast.withitem):
            entered.append(node.context_expr)
    for targets, types in ((calls, _WAITABLE), (entered, _ENTERED)):
        for target in targets:
            try:
                obj = _evaluate(target, frame)
            except Exception:  # noqa: BLE001 - not a plain name chain, or gone: not this one
                continue
            if isinstance(obj, types) or (types is _WAITABLE and _is_future(obj)):
                return obj
    return None


def _is_future(obj: Any) -> bool:
    import concurrent.futures
    import queue

    return isinstance(obj, (concurrent.futures.Future, queue.Queue))


def _holds(frame: FrameType, obj: Any) -> bool:
    """Whether the frame's code refers to ``obj``: a local, ``self``'s attribute, or a global it names."""
    try:
        local = frame.f_locals
    except Exception:  # noqa: BLE001 - another thread's frame changes under us
        return False
    for value in list(local.values()):
        if value is obj:
            return True
    owner = local.get("self")
    attrs = getattr(owner, "__dict__", None)
    if type(attrs) is dict and any(value is obj for value in list(attrs.values())):
        return True
    if isinstance(owner, threading.Thread) and owner is obj:
        return True
    scope = frame.f_globals
    return any(scope.get(name) is obj for name in frame.f_code.co_names)


def _waiters_for(obj: Any, stacks: dict[int, FrameType], skip: set[int]) -> list[StallThread]:
    """The threads (other than ``skip``) that hold ``obj`` or that ``obj`` stands for."""
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    wanted: set[int] = set()
    if isinstance(obj, threading.Thread) and obj.ident is not None:
        wanted.add(obj.ident)
    elif isinstance(obj, type(threading.RLock())):
        match = _OWNER.search(repr(obj))
        if match and int(match.group(1)):
            wanted.add(int(match.group(1)))
    if not wanted:
        for ident, top in stacks.items():
            if ident in skip:
                continue
            if any(_holds(frame, obj) for frame in _frames_to(top, None)):
                wanted.add(ident)
    out: list[StallThread] = []
    for ident in sorted(wanted):
        found = stacks.get(ident)
        if found is None or ident in skip:
            continue
        out.append(StallThread(names.get(ident, f"<thread {ident}>"), ident, tuple(_shown(found, None))))
    return out


def _waiting(
    frames: list[FrameType], stacks: dict[int, FrameType], skip: set[int]
) -> tuple[bool, Any, list[StallThread]]:
    """``(waiting, what on, holders)`` for the loop thread's frames, innermost first."""
    in_wait_module = False
    index = 0
    while index < len(frames) and _module(frames[index]) in _WAIT_MODULES:
        in_wait_module = True
        index += 1
    candidates = [frames[index]] if index < len(frames) else []
    if in_wait_module and index > 0:
        # ``self`` of the outermost waiting primitive (Thread.join, Future.result, Event.wait).
        owner = frames[index - 1].f_locals.get("self")
        if isinstance(owner, _LOCK_TYPES) or _is_future(owner):
            return True, owner, _waiters_for(owner, stacks, skip)
    for frame in candidates:
        obj = _waited_object(frame)
        if obj is not None:
            return True, obj, _waiters_for(obj, stacks, skip)
    return in_wait_module, None, []


def _type_name(obj: Any) -> str | None:
    if obj is None:
        return None
    kind = type(obj)
    return f"{kind.__module__}.{kind.__qualname__}"


def thread_cpu(ident: int | None) -> float | None:
    if ident is None:
        return None
    try:
        return time.clock_gettime(time.pthread_getcpuclockid(ident))
    except (AttributeError, OSError, ValueError, OverflowError):
        return None


@dataclass(slots=True)
class Sample:
    """What the watchdog saw on the loop thread mid-stall."""

    key: float
    kind: StallKind
    source: str
    stack: tuple[TraceFrame, ...]
    task: Any
    task_name: str | None
    chain: tuple[TraceFrame, ...]
    context: contextvars.Context | None
    waiting_on: str | None
    waiting_for: tuple[StallThread, ...]
    cpu_at: float | None
    debugger: bool = False
    ongoing_reported: bool = False


def sample(loop: Any, ident: int | None, base: CodeType | None, key: float) -> Sample | None:
    """The loop thread's stack, running task and its chain, now; ``None`` if the thread is not found."""
    if ident is None:
        return None
    stacks = sys._current_frames()
    top = stacks.get(ident)
    if top is None:
        return None
    cpu_at = thread_cpu(ident)
    task = asyncio.current_task(loop)
    stop = stop_frame(coro_of(task)) if task is not None else None
    live = _frames_to(top, stop)
    if stop is not None and live[-1] is not stop:
        # The task's frame is not on the stack (it is between steps): a callback runs, not the task.
        task, stop = None, None
        live = _frames_to(top, None)
    stack = tuple(_shown(top, stop))
    chain = _task_chain(task, loop) if task is not None else ()
    name = task_name(task) if task is not None else None
    debugger = _in_debugger(live)
    kind: StallKind
    waiting_on: Any = None
    holders: list[StallThread] = []
    if _idle(top, base):
        kind = "starved"
        source = "<starved>"
    else:
        waiting, waiting_on, holders = _waiting(live, stacks, {ident, threading.get_ident()})
        kind = "waiting" if waiting else "blocking"
        source = _source_of(live) or _chain_source(chain) or _chain_source(stack) or _innermost(stack)
    context = task_context(task) if task is not None else None
    return Sample(
        key, kind, source, stack, task, name, chain, context, _type_name(waiting_on), tuple(holders), cpu_at, debugger
    )


def _task_chain(task: Any, loop: Any) -> tuple[TraceFrame, ...]:
    """Where ``task`` was created, innermost first, to the root: as a trace collected in it would show."""
    node = node_of_task(task)
    coro = coro_of(task)
    if node is not None and not is_own(node, coro):
        # An eager task built directly, in its first step; else a task no hook saw being built.
        # Worked out in a context of our own: running_node() stores the node it finds in the current one.
        node = contextvars.Context().run(running_node, task, coro, node)
    frames: list[TraceFrame] = []
    append_chain(frames, node, task, True, task, loop)
    return tuple(frames)


def _innermost(stack: tuple[TraceFrame, ...]) -> str:
    for frame in stack:
        if frame["filename"] is not None:
            return f"{_module_of_file(frame['filename'])}:{frame['name']}"
    return "<unknown>"


class LoopState:
    """The heartbeat on one loop, and what the watchdog knows of it."""

    __slots__ = (
        "base",
        "based",
        "ctx",
        "gaps",
        "gc_mark",
        "handle",
        "ident",
        "interval",
        "last",
        "limit",
        "loop",
        "next_beat",
        "pid",
        "sample",
        "stopped",
        "wake",
    )

    def __init__(self, loop: Any, interval: float, threshold: float, wake: threading.Event) -> None:
        self.loop = loop
        self.interval = interval
        #: A gap between two beats past this is a stall.
        self.limit = interval + threshold
        #: Set on a beat the watchdog thread must see at once (the first, a gap's end): it sleeps otherwise.
        self.wake = wake
        #: ``time.monotonic()`` of the last beat; ``None`` until the first (or after the loop stopped).
        self.last: float | None = None
        #: ``(previous beat, this beat)`` of each gap past ``limit``, appended by the loop thread.
        self.gaps: collections.deque[tuple[float, float]] = collections.deque(maxlen=16)
        self.handle: Any = None
        self.stopped = False
        #: The code that called our beat when it is not Python's ``Handle._run`` (a loop in C: uvloop).
        self.base: CodeType | None = None
        self.based = False
        self.ident: int | None = None
        self.sample: Sample | None = None
        self.gc_mark = gc_time()
        self.pid = os.getpid()
        # Our own (empty) context: the beat never runs in, or copies, a context of the program's.
        self.ctx = contextvars.Context()
        #: ``self.beat`` bound once: no new bound method per beat.
        self.next_beat = self.beat

    def beat(self) -> None:
        if self.stopped:
            return
        now = time.monotonic()
        last = self.last
        self.last = now
        if last is None or now - last > self.limit:
            # Rare: the first beat (the watchdog does not look at this loop before it) or the end of a stall.
            if last is not None:
                self.gaps.append((last, now))
            self.wake.set()
        if not self.based:
            self.based = True
            self.ident = threading.get_ident()
            caller = sys._getframe(1)
            self.base = None if caller.f_code is _HANDLE_RUN else caller.f_code
        self.handle = self.loop.call_later(self.interval, self.next_beat, context=self.ctx)

    def start(self, here: bool) -> None:
        """Arm the first beat: now if called on the loop's own thread, else through ``call_soon_threadsafe``."""
        if here:
            self.last = time.monotonic()
            self.ident = threading.get_ident()
            self.handle = self.loop.call_later(self.interval, self.next_beat, context=self.ctx)
        else:
            self.ident = loop_thread(self.loop)
            self.handle = self.loop.call_soon_threadsafe(self.next_beat, context=self.ctx)

    def stop(self) -> None:
        self.stopped = True
        handle = self.handle
        if handle is None:
            return
        try:
            if asyncio.events._get_running_loop() is self.loop:
                handle.cancel()
            elif not self.loop.is_closed():
                self.loop.call_soon_threadsafe(handle.cancel, context=self.ctx)
        except Exception:  # noqa: BLE001 - a loop closing under us: its timers go with it
            pass


def gc_time() -> float:
    """Seconds the garbage collector ran while any watch was on (a running total)."""
    return _gc_total


def after_fork() -> None:
    """In a forked child: no watch runs there yet (the parent's threads are gone)."""
    global _gc_users, _gc_lock
    _gc_lock = threading.Lock()
    _gc_users = 0
    while _on_gc in gc.callbacks:
        gc.callbacks.remove(_on_gc)
