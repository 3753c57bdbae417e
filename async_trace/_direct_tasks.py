"""Tasks built directly with ``asyncio.Task(...)``: the registration hook (3.10-3.13; none on 3.14+).

``asyncio.Task``'s C constructor registers every new task in a Python
``weakref.WeakSet`` (``asyncio.tasks._all_tasks`` on 3.10/3.11,
``_scheduled_tasks`` on 3.12/3.13) by calling that set's ``add`` method, from
the frame that built the task. Tracing swaps the set's class for a subclass
(:class:`_Registry`, same layout, so ``__class__`` assignment is allowed)
whose ``add`` registers the task as before and, when the task was not built by
``loop.create_task`` (which traces it itself), captures its creation point
from the calling frame and puts the node into the task's context before its
first step:

- 3.12/3.13: ``task.get_context()``.
- 3.10/3.11: the task's first step was just scheduled with ``loop.call_soon``
  (the constructor does that right before registering), so the last handle of
  the loop's ready queue holds the task's context.

Nothing about the tasks changes: their type, ``isinstance`` and the
registry's contents are exactly as without tracing. ``disable_tracing()``
puts the registry's class back.

Eager tasks (3.12+ ``eager_start=True``) register only once their first step
has suspended, after it ran; a capture made during that first step is given
the creation point by :func:`._lineage.in_first_step` instead (its creator is
known only once the task registers, when this hook replaces the node). An
eager task that finishes in its first step never registers: its node names
no creator. 3.14+ keeps tasks in C lists: no hook there.

A hook set of :mod:`._hooks` with no attribute to replace: its ``on``/``off``
swap the registry's class.
"""

from __future__ import annotations

import asyncio
import asyncio.base_events
import sys
import weakref
from typing import Any, Final

from . import _capture
from ._capture import capture
from ._chain import CURRENT, RootNode, TaskNode, coro_code, note_task_code, retagged
from ._compat import ASYNCIO_REGISTRY, frame_module, new_task_context
from ._failsafe import warn_internal
from ._hooks import HookSet, task_watchers
from ._lineage import is_in_flight
from ._speedups import CORE

__all__: list[str] = []

#: The registry the C constructor calls ``add`` on, or ``None`` (3.14+: C lists).
_REGISTRY: Final[Any] = ASYNCIO_REGISTRY
_getframe: Final = sys._getframe
_frame_module: Final = frame_module
#: Modules of the callers in ``_traced_callers`` (``functools.wraps`` gives our
#: wrapper asyncio's module name; a wrapper of uvloop's keeps ours).
_TRACED_MODULES: Final = frozenset({"asyncio.base_events", _capture.__name__})
_weak_ref: Final = weakref.ref

#: Codes of the frames that call ``Task()`` for a task already traced: asyncio's
#: ``create_task`` (which our wrapper calls) and the wrappers themselves.
_traced_callers: set[int] = set()
_traced_codes: list[Any] = []

_active = False


def skip_caller(code: Any) -> None:
    """Tasks built from a frame running ``code`` are traced already (a create_task wrapper)."""
    if id(code) not in _traced_callers:
        _traced_callers.add(id(code))
        _traced_codes.append(code)  # keeps the id valid


skip_caller(asyncio.base_events.BaseEventLoop.create_task.__code__)
# Our create_task wrapper (every one shares this code): uvloop's create_task, in C, builds the task from it.
skip_caller(_capture.WRAPPER_CODE)


class _Registry(weakref.WeakSet):  # type: ignore[type-arg]
    """``asyncio``'s task registry while tracing: ``add`` also traces tasks built directly."""

    __slots__ = ()

    def add(self, item: Any) -> None:
        # weakref.WeakSet.add, inlined (its private attributes are not in the stubs).
        me: Any = self
        if me._pending_removals:
            me._commit_removals()
        me.data.add(_weak_ref(item, me._remove))
        if _active:
            # 3.12+: the module of asyncio's create_task (or of our wrapper) is
            # known without materialising its frame object (~0.2 us a task).
            if _frame_module is not None and _frame_module(1) in _TRACED_MODULES:
                return
            frame = _getframe(1)
            if id(frame.f_code) not in _traced_callers:
                _trace_safely(item, frame)


#: The Python definition, the reference; the compiled core's (:mod:`._speedups`) replaces it.
py_registry_add: Final = _Registry.add


def _trace_safely(task: Any, frame: Any) -> None:
    try:
        _trace_built(task, frame)
    except Exception as exc:  # noqa: BLE001 - never break task creation
        warn_internal(exc, "tracing a task built directly")


def _trace_built(task: Any, frame: Any) -> None:
    ctx = new_task_context(task)
    if ctx is None:
        return
    coro = task.get_coro()
    code = coro_code(coro)
    if code is None:
        return  # a coroutine-like object: no code to tell its node from an inherited one
    note_task_code(code)  # 3.10/3.11: see _chain.task_codes
    node = ctx.get(CURRENT)
    kind = type(node)
    loop = task.get_loop()
    if node is not None:
        # Traced by a create_task wrapper, a task factory of the user's between: the node was made
        # for this task, by the running task (a root: by none). A factory that wrapped the
        # coroutine (Sentry's asyncio integration does) gives the task another code: the node is
        # renamed for it. Else the node is the creator's, inherited: with the same code, a
        # recursion (a task built directly from a task running the same coroutine function).
        creator = asyncio.current_task(loop)
        ref = node.creator_ref if kind is TaskNode else None
        # Made by no task (a callback's creation, e.g. a protocol's): the wrapper holds it in flight.
        if kind is TaskNode and (ref() is creator if ref is not None else creator is None and is_in_flight(node)):
            if node.code is not code:
                ctx.run(CURRENT.set, retagged(node, code))
            return
        if kind is RootNode and creator is None and node.code is code:
            return
    node = capture(TaskNode, loop, frame, code)
    ctx.run(CURRENT.set, node)
    for watcher in task_watchers:
        watcher(task)  # 3.10/3.11 eager notes (see _record_callbacks)


if CORE is not None:
    CORE.setup_registry(_TRACED_MODULES, _traced_callers, _trace_safely)
    _Registry.add = CORE.registry_method(_Registry)  # type: ignore[method-assign]


def _on() -> None:
    global _active
    if _REGISTRY is not None and type(_REGISTRY) is weakref.WeakSet:
        _REGISTRY.__class__ = _Registry
    _active = True
    if CORE is not None:
        CORE.set_registry_active(True)


def _off() -> None:
    global _active
    _active = False
    if CORE is not None:
        CORE.set_registry_active(False)
    if _REGISTRY is not None and type(_REGISTRY) is _Registry:
        _REGISTRY.__class__ = weakref.WeakSet  # type: ignore[assignment]


def installed() -> bool:
    """Whether asyncio's registry has our class now."""
    return _REGISTRY is not None and type(_REGISTRY) is _Registry


#: The registration hook, switched by ``enable_tracing()`` / ``disable_tracing()`` (``_api.HOOK_SETS``).
HOOKS: Final = HookSet("registry", list, on=_on, off=_off)
