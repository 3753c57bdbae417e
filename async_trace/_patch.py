"""Hooks into asyncio: where nodes are pushed.

Every stdlib creation path (``asyncio.create_task``, ``ensure_future``,
``gather``, ``TaskGroup``, ``Runner``, anyio's ``start_soon``) ends in
``loop.create_task``, so that is the one hook for tasks; it wraps the loop's
task factory call, so user factories and ``eager_task_factory`` keep working
and see the node. ``loop.run_in_executor`` is the hook for executor hops
(``asyncio.to_thread`` goes through it). uvloop implements both methods in
Cython, so they are patched on ``uvloop.Loop`` as well, when uvloop is
imported.

Patches are recorded and undone exactly. If someone patched over us, our
wrapper stays in their chain as a pass-through until tracing is enabled again.
"""

from __future__ import annotations

import asyncio
import asyncio.base_events
import asyncio.tasks
import contextlib
import functools
import importlib.abc
import importlib.machinery
import sys
import threading
from collections.abc import Callable, Sequence
from contextvars import Context, copy_context
from types import ModuleType
from typing import Any, Final, NamedTuple
from weakref import WeakKeyDictionary
from weakref import ref as _weakref

from ._chain import (
    _EMPTY as _EMPTY_FRAMES,
)
from ._chain import (
    CURRENT,
    ExecutorNode,
    Node,
    PendingNode,
    RootNode,
    TaskNode,
    _coro_code,
    capture,
    config,
    make,
    make_root,
    name_root,
    walk,
    warn_internal,
)

__all__: list[str] = []

_THIS_FILE: Final = __file__.removesuffix("c")  # a .pyc path never shows in tracebacks

#: Read on every hooked call: flipped by enable/disable so that a wrapper left
#: inside someone else's patch becomes a pass-through.
_active = False
_lock: Final = threading.RLock()


class _Patch:
    __slots__ = ("had_own", "name", "original", "owner", "wrapper")

    def __init__(self, owner: Any, name: str, wrapper: Callable[..., Any]) -> None:
        self.owner = owner
        self.name = name
        self.had_own = name in vars(owner)
        self.original = vars(owner)[name] if self.had_own else None
        self.wrapper = wrapper


# --- task creation --------------------------------------------------------


#: The latest task node and the context it was pushed into, for sharing with
#: the next sibling: ``(node, creator_snapshot, template)``, the last two
#: ``None`` until a second sibling is created. Consecutive
#: spawns from the same place by the same creator (a loop of create_task, a
#: gather of many coroutines) have identical nodes, so they share one node
#: and one template context; each task then gets ``template.copy()``, which
#: shares the template's variables (an O(1) copy) instead of allocating new
#: ones. ``creator_snapshot`` is the creator's context when the template was
#: made: ``Context.__eq__`` is O(1) while the creator's variables are
#: unchanged. Replaced whole, never mutated, so threads race on it harmlessly.
#: The contexts hold the creator's variables, so the entry also holds a weak
#: reference to the creator whose callback drops the entry when the creator
#: dies: nothing a finished task kept in a ContextVar (its loop, a request)
#: outlives it here. ``disable_tracing()`` clears it too.
class _Hot(NamedTuple):
    """The sibling cache (see above); made with ``tuple.__new__`` on the hot path."""

    #: The latest task node.
    node: Node
    #: The creator's context when ``template`` was made, or ``None``.
    snapshot: Context | None
    #: A context holding ``node``, copied for each further sibling, or ``None``.
    template: Context | None
    #: A weak reference to the creator (its callback clears the cache), or ``None``.
    owner_ref: Any


#: Matches no real node: a new one is made on the first creation.
_NO_NODE: Final = make(TaskNode, None, 0, None, _EMPTY_FRAMES)
_EMPTY_HOT: Final = _Hot(_NO_NODE, None, None, None)
_hot: _Hot = _EMPTY_HOT


#: Loops that created a root task while tracing was on (``asyncio.run``,
#: ``run_until_complete``, a loop in a thread), with the thread they did it
#: in. From 3.14 C tasks live in per-thread lists that Python cannot
#: enumerate, so this is how a dump finds a loop running in another thread
#: when no Python frame of it shows (uvloop runs its loop in C, and keeps its
#: thread id where Python cannot read it). Roots are rare: the hot path never
#: touches it.
_loops: Final[WeakKeyDictionary[Any, int]] = WeakKeyDictionary()


def _note_loop(loop: Any) -> None:
    with contextlib.suppress(TypeError):  # a loop type without weak references
        _loops[loop] = threading.get_ident()


def seen_loops() -> list[tuple[Any, int]]:
    """``(loop, thread id)`` for the loops :data:`_loops` holds (copied; retried if another thread changes it)."""
    for _ in range(100):
        try:
            return list(_loops.items())
        except RuntimeError:
            continue
    return []


def clear_caches() -> None:
    global _hot
    _hot = _EMPTY_HOT


def _drop_hot(ref: Any) -> None:
    # Called by the garbage collector, in any thread, when the creator dies.
    global _hot
    if _hot.owner_ref is ref:
        _hot = _EMPTY_HOT


def _make_create_task(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def create_task(self: Any, coro: Any, **kwargs: Any) -> Any:
        global _hot
        if not _active:
            return original(self, coro, **kwargs)
        try:
            # The common case inlined (a traced task creating a child); every
            # other case goes through capture(). See _chain for the layout.
            parent = _get_current()
            creator: Any = _current_task(self) if parent is not None else None
            if _pushed_by_outer_wrapper(parent, creator):
                # Our wrapper inside another of ours (a third-party patch that
                # kept the one it replaced): the outer one traces this call.
                return original(self, coro, **kwargs)
            node: Node
            kind = type(parent)
            if parent is not None and creator is not None and (kind is TaskNode or kind is RootNode):
                creator_coro: Any = creator.get_coro()
                if parent.code is creator_coro.cr_code and parent.depth < _config.max_depth:
                    if kind is RootNode and parent.name is None:  # type: ignore[attr-defined]
                        parent = name_root(parent, creator)  # type: ignore[arg-type]
                    if _frame_module is not None:
                        # 3.12+: step over asyncio's own callers (create_task,
                        # gather...) without materialising their frame objects;
                        # collection would drop them anyway.
                        depth = 1
                        while _frame_module(depth) in _ASYNCIO_CALLERS:
                            depth += 1
                        frames = walk(sys._getframe(depth), creator_coro.cr_frame)
                    else:
                        frames = walk(sys._getframe(1), creator_coro.cr_frame)
                    tag = getattr(coro, "cr_code", None)
                    creator_ref = _weakref(creator)  # the existing ref when there is one
                    node = _hot.node
                    if (
                        node.parent is not parent
                        or node.frames is not frames
                        or node.code is not tag
                        or node.creator_ref is not creator_ref
                    ):
                        node = make(TaskNode, parent, parent.depth + 1, tag, frames, creator_ref)
                else:
                    node = capture(TaskNode, self, sys._getframe(1), _coro_code(coro))
            else:
                node = capture(TaskNode, self, sys._getframe(1), _coro_code(coro))
            if type(node) is RootNode and kwargs and kwargs.get("name") is not None:
                # Named before the task exists, so also where its context is out of reach.
                node = make_root(node.code, str(kwargs["name"]))
        except Exception as exc:  # noqa: BLE001 - never break task creation
            warn_internal(exc, "capturing a task creation")
            return original(self, coro, **kwargs)
        context = kwargs.get("context") if kwargs else None
        if context is not None:
            # The caller chose the task's context; our private variable is
            # set in it, so the task still runs in exactly that Context.
            try:
                context.run(_set_current, node)
            except Exception as exc:  # noqa: BLE001 - e.g. the context is entered elsewhere
                warn_internal(exc, "entering a caller-supplied context")
            task = original(self, coro, **kwargs)
        elif (
            _HAS_CONTEXT_ARG
            and (not kwargs or kwargs.keys() <= _NAME_AND_CONTEXT)
            and (getattr(self, "_task_factory", _UNKNOWN) is None or _passes_context(self))
        ):
            # 3.11+: hand the task its context (see _hot).
            ctx = _copy_context()
            hot = _hot
            if hot.node is not node:
                # A new node: this copy becomes the task's context. A template
                # is only made if a sibling follows (see _hot).
                ctx.run(_set_current, node)
                _hot = _tuple_new(_Hot, (node, None, None, None))
            elif hot.snapshot is not None and hot.snapshot == ctx and hot.template is not None:
                ctx = hot.template.copy()
            else:
                owner = creator if creator is not None else _current_task(self)
                template = ctx.copy()
                template.run(_set_current, node)
                if owner is not None:
                    _hot = _tuple_new(_Hot, (node, ctx, template, _weakref(owner, _drop_hot)))
                ctx = template.copy()
            kwargs["context"] = ctx
            task = original(self, coro, **kwargs)
        else:
            # The task copies the current context: put the node there for the
            # duration of the call only.
            token = _set_current(node)
            rooting = type(node) is RootNode
            if rooting:
                _roots_in_flight.node = node
            try:
                task = original(self, coro, **kwargs)
            finally:
                CURRENT.reset(token)
                if rooting:
                    _roots_in_flight.node = None
        if type(node) is RootNode:
            _note_loop(self)
        if getattr(task, "_source_traceback", None):
            _trim_source_traceback(task)
        return task

    create_task.__async_trace_wrapper__ = True  # type: ignore[attr-defined]
    return create_task


#: 3.11+ ``create_task`` takes ``context=`` and hands it to the task factory.
_HAS_CONTEXT_ARG: Final = sys.version_info >= (3, 11)
_UNKNOWN: Final = object()
#: What asyncio itself passes (3.13's asyncio.create_task always passes name=).
_NAME_AND_CONTEXT: Final = frozenset({"name", "context"})
_CONTEXT_FACTORIES: Final = tuple(f for f in (getattr(asyncio, "eager_task_factory", None),) if f is not None)
_copy_context: Final = copy_context
_set_current: Final = CURRENT.set
_get_current: Final = CURRENT.get
_current_task: Final = asyncio.current_task
_tuple_new: Final = tuple.__new__
_config: Final = config
_frame_module: Final[Callable[[int], str | None] | None] = getattr(sys, "_getframemodulename", None)
#: Modules whose frames lead from a user's call to loop.create_task.
_ASYNCIO_CALLERS: Final = frozenset({"asyncio.tasks", "asyncio.taskgroups", "asyncio.base_events"})


#: The root node a create_task call of this thread has put in its current
#: context for the duration of the call (the path without ``context=``).
_roots_in_flight: Final = threading.local()


def _pushed_by_outer_wrapper(parent: Any, creator: Any) -> bool:
    """Whether ``parent`` was pushed by a create_task wrapper still on the stack.

    A task's own node never names that task as its creator; a root is in
    flight only while its create_task call runs.
    """
    kind = type(parent)
    if kind is TaskNode:
        ref = parent.creator_ref
        return creator is not None and ref is not None and ref() is creator
    return kind is RootNode and creator is None and getattr(_roots_in_flight, "node", None) is parent


def _passes_context(loop: Any) -> bool:
    """Whether ``loop.create_task(coro, context=ctx)`` is safe to call.

    Only when the loop calls Task() itself, or its factory is asyncio's
    eager_task_factory: a factory written for 3.10 may not accept ``context=``.
    """
    factory = getattr(loop, "_task_factory", _UNKNOWN)
    if factory is _UNKNOWN:  # not a BaseEventLoop (uvloop)
        try:
            factory = loop.get_task_factory()
        except Exception:  # noqa: BLE001 - an exotic loop: do not guess
            return False
    return factory is None or factory in _CONTEXT_FACTORIES


def _trim_source_traceback(obj: Any) -> None:
    # Debug mode records where a future was created and drops the loop's own
    # create_task frame; drop ours too so that the last entry stays the user's.
    try:
        tb = obj._source_traceback
        if tb and isinstance(tb, list):  # a traceback.StackSummary
            tb[:] = [entry for entry in tb if entry.filename != _THIS_FILE]
    except Exception:  # noqa: BLE001 - a Future-like object from a custom factory
        pass


# --- executor hops --------------------------------------------------------

# asyncio's own predicates, as its debug-mode check uses them (public before 3.14).
_is_coroutine: Final = asyncio.coroutines.iscoroutine
_is_coroutine_function: Final[Callable[[Any], bool]] = (
    getattr(asyncio.coroutines, "_iscoroutinefunction", None) or asyncio.coroutines.iscoroutinefunction
)


def _unwrapped(func: Callable[..., Any]) -> Callable[..., Any]:
    return func


class _ContextCall:
    """``func`` run in ``ctx``, for an executor: what ``to_thread`` does, made picklable.

    A ``contextvars.Context`` cannot be pickled, so an executor that pickles
    its calls (a process pool, whatever the loop's default executor is) gets
    the bare function: such hops run untraced instead of failing.
    """

    __slots__ = ("ctx", "func")

    def __init__(self, ctx: Context, func: Callable[..., Any]) -> None:
        self.ctx = ctx
        self.func = func

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.ctx.run(self.func, *args, **kwargs)

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[Callable[..., Any]]]:
        return _unwrapped, (self.func,)

    def __repr__(self) -> str:
        return f"{self.func!r} (in an async_trace context)"


def _is_context_run(func: Any) -> Context | None:
    """The Context of ``functools.partial(ctx.run, ...)``, as asyncio.to_thread builds it."""
    if type(func) is functools.partial:
        target = func.func
        owner = getattr(target, "__self__", None)
        if type(owner) is Context and getattr(target, "__name__", None) == "run":
            return owner
    return None


def _make_run_in_executor(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def run_in_executor(self: Any, executor: Any, func: Any, *args: Any) -> Any:
        if not _active:
            return original(self, executor, func, *args)
        try:
            debug_rejects = self.get_debug() and (_is_coroutine(func) or _is_coroutine_function(func))
            if debug_rejects or not callable(func):
                # Leave it to the loop: its checks must see exactly what they see untraced.
                return original(self, executor, func, *args)
            node = capture(ExecutorNode, self, sys._getframe(1))
            ctx = _is_context_run(func)
            if ctx is not None:
                # asyncio.to_thread copied the context before calling us:
                # push the node into that copy, not a new one.
                ctx.run(_set_current, node)
            else:
                ctx = copy_context()
                ctx.run(_set_current, node)
                func = _ContextCall(ctx, func)
        except Exception as exc:  # noqa: BLE001 - never break the hop
            warn_internal(exc, "capturing an executor call")
        future = original(self, executor, func, *args)
        _trim_source_traceback(future)
        return future

    run_in_executor.__async_trace_wrapper__ = True  # type: ignore[attr-defined]
    return run_in_executor


# --- run_coroutine_threadsafe ----------------------------------------------


def _make_run_coroutine_threadsafe(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def run_coroutine_threadsafe(coro: Any, loop: Any) -> Any:
        if not _active:
            return original(coro, loop)
        try:
            # The task is created later by a callback on ``loop``; that
            # callback runs in a copy of this context, where the pending node
            # tells create_task which line submitted it.
            here = asyncio.events._get_running_loop()
            node = capture(PendingNode, here, sys._getframe(1))
            ctx = copy_context()
            ctx.run(CURRENT.set, node)
        except Exception as exc:  # noqa: BLE001
            warn_internal(exc, "capturing run_coroutine_threadsafe")
            return original(coro, loop)
        return ctx.run(original, coro, loop)

    run_coroutine_threadsafe.__async_trace_wrapper__ = True  # type: ignore[attr-defined]
    return run_coroutine_threadsafe


# --- installing -----------------------------------------------------------

Maker = Callable[[Callable[..., Any]], Callable[..., Any]]

#: One wrapper per original, so that names bound to the same function
#: (``asyncio.run_coroutine_threadsafe`` and ``asyncio.tasks.…``) stay one.
_wrappers: dict[int, tuple[Callable[..., Any], Callable[..., Any]]] = {}


def _wrapper_for(original: Callable[..., Any], make: Maker) -> Callable[..., Any]:
    cached = _wrappers.get(id(original))
    if cached is not None and cached[0] is original:
        return cached[1]
    wrapper = make(original)
    _wrappers[id(original)] = (original, wrapper)
    return wrapper


def _in_chain(obj: Any, wrapper: Callable[..., Any]) -> bool:
    # Patches made with functools.wraps keep the patched object in __wrapped__.
    for _ in range(16):
        if obj is wrapper:
            return True
        obj = getattr(obj, "__wrapped__", None)
        if obj is None:
            return False
    return False


class Patcher:
    """The attributes one part of the library replaces, and how to put each back exactly.

    Shared by the tracing hooks and the exception hooks (:mod:`._exceptions`).
    """

    __slots__ = ("patches",)

    def __init__(self) -> None:
        #: Every wrapper installed and not yet removed, keyed by (id(owner), name).
        self.patches: dict[tuple[int, str], _Patch] = {}

    def install(self, owner: Any, name: str, make: Maker) -> None:
        key = (id(owner), name)
        patch = self.patches.get(key)
        if patch is not None:
            current = vars(owner).get(name)
            if current is patch.wrapper or (current is not None and _in_chain(current, patch.wrapper)):
                return  # still in place, or inside someone else's patch: _active re-arms it
            del self.patches[key]  # we were dropped from the chain: wrap what is there now
        current = getattr(owner, name)
        if getattr(current, "__async_trace_wrapper__", False):
            # One of our wrappers, put back by someone (a mock.patch exiting):
            # register it again instead of wrapping it twice.
            original = current.__wrapped__
            patch = _Patch(owner, name, current)
            patch.had_own = not any(vars(base).get(name) is original for base in getattr(owner, "__mro__", ())[1:])
            patch.original = original if patch.had_own else None
            self.patches[key] = patch
            return
        patch = _Patch(owner, name, _wrapper_for(current, make))
        self.patches[key] = patch
        setattr(owner, name, patch.wrapper)

    def uninstall_all(self) -> None:
        for key, patch in list(self.patches.items()):
            if vars(patch.owner).get(patch.name) is patch.wrapper:
                if patch.had_own:
                    setattr(patch.owner, patch.name, patch.original)
                else:
                    delattr(patch.owner, patch.name)
                del self.patches[key]
            # else: someone patched over us; leave their patch (and our
            # pass-through wrapper inside it) in place.


_patcher: Final = Patcher()


def _targets() -> list[tuple[Any, str, Maker]]:
    targets: list[tuple[Any, str, Maker]] = [
        (asyncio.base_events.BaseEventLoop, "create_task", _make_create_task),
        (asyncio.base_events.BaseEventLoop, "run_in_executor", _make_run_in_executor),
        (asyncio.tasks, "run_coroutine_threadsafe", _make_run_coroutine_threadsafe),
        (asyncio, "run_coroutine_threadsafe", _make_run_coroutine_threadsafe),
    ]
    uvloop = sys.modules.get("uvloop")
    loop_cls = getattr(uvloop, "Loop", None) if uvloop is not None else None
    if isinstance(loop_cls, type):
        targets.append((loop_cls, "create_task", _make_create_task))
        targets.append((loop_cls, "run_in_executor", _make_run_in_executor))
    return targets


def _install_targets() -> None:
    for owner, name, factory in _targets():
        _patcher.install(owner, name, factory)


def patched_attributes() -> list[tuple[Any, str]]:
    """The (owner, name) pairs tracing replaces (for tests of exact restore)."""
    return [(owner, name) for owner, name, _ in _targets()]


def enable() -> None:
    global _active
    with _lock:
        _install_targets()
        _ImportHook.install()
        _active = True


def disable() -> None:
    global _active
    with _lock:
        _active = False
        _patcher.uninstall_all()
        clear_caches()
        _ImportHook.uninstall()


def is_active() -> bool:
    return _active


# --- uvloop imported after us ----------------------------------------------

#: Called once uvloop is imported after us (the exception hooks patch its loop too).
_on_uvloop: list[Callable[[], None]] = []


def on_uvloop_import(callback: Callable[[], None]) -> None:
    """Call ``callback`` after uvloop is imported, if that happens after us."""
    if callback not in _on_uvloop:
        _on_uvloop.append(callback)


class _ImportHook(importlib.abc.MetaPathFinder):
    """Patches ``uvloop.Loop`` right after uvloop is imported."""

    _instance: _ImportHook | None = None

    @classmethod
    def install(cls) -> None:
        if "uvloop" in sys.modules or cls._instance is not None:
            return
        cls._instance = cls()
        sys.meta_path.insert(0, cls._instance)

    @classmethod
    def uninstall(cls) -> None:
        if cls._instance is not None:
            with contextlib.suppress(ValueError):
                sys.meta_path.remove(cls._instance)
            cls._instance = None

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "uvloop":
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        exec_module = getattr(loader, "exec_module", None)
        if exec_module is None:
            return None

        def exec_and_patch(module: ModuleType) -> None:
            exec_module(module)
            try:
                with _lock:
                    if _active:
                        _install_targets()
                for callback in _on_uvloop:
                    callback()
            except Exception as exc:  # noqa: BLE001
                warn_internal(exc, "patching uvloop")

        try:
            loader.exec_module = exec_and_patch  # type: ignore[union-attr,method-assign]
        except Exception:  # noqa: BLE001 - a read-only loader: leave uvloop untraced
            return None
        _ImportHook.uninstall()
        return spec
