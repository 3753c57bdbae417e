"""Recording origins on 3.10/3.11 (no unwind hook): done callbacks, and a TaskGroup's own.

The strategy :mod:`._recorders` chooses where ``sys.monitoring`` does not
exist. With eager notes on, the capture hooks hand each task they create,
and each executor call's future with its node, to the observers in
:mod:`._hooks`; this module subscribes there and adds a done callback that
records the origin and adds the note as the task or call fails. The callback
is added at creation, before anything can await the task, so it runs before
the wakeup of whoever awaits it (callbacks run in the order they were added,
one loop iteration after the task finished; a ``TaskGroup``'s or
``gather``'s callback is added after ours too): an exception that left a
traced task is recorded, naming the innermost task it left, before any other
task can catch it. While it is on, an exception with no record caught in a
task did not leave a traced task, as with 3.12+'s unwind hook
(:func:`._origins.set_recording`).

Without eager notes no task gets a callback (it would show in every task's
``repr()``, and cost about a microsecond per task): origins are found when
printed (:mod:`._origins`). One case is recorded all the same, at no cost to
other tasks: a ``TaskGroup`` child that fails, in the group's own done
callback (``TaskGroup._on_task_done``, wrapped), since the child is gone by
the time its exception is printed from the group's ``ExceptionGroup``.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any, Final

from ._chain import Node
from ._config import settings
from ._failsafe import warn_internal
from ._hooks import call_watchers, task_watchers
from ._notes import note
from ._origins import Origin, failure, origin_of_task, record_of, set_recording, store

__all__: list[str] = []

_tuple_new: Final = tuple.__new__
_Task: Final = asyncio.Task


def _task_done(task: Any) -> None:
    """Done callback of each task the wrappers create, on 3.10/3.11.

    Added as the task is created, so it runs before the callbacks of whoever
    awaits the task (they are added later, and run in order): the record (and
    with eager notes the note) is there before the exception reaches them.
    The exception left this task, so the task (or an inner one, which
    finished first and recorded it) is its origin.
    """
    try:
        # The common case first: the task succeeded (``_exception``, unlike ``exception()``,
        # does not mark the exception retrieved; a cancelled task stores none).
        if getattr(task, "_exception", None) is None:
            return
        exc = failure(task)
        if exc is None:
            return
        if record_of(exc) is None:
            origin = origin_of_task(task)
            if origin is None:
                return  # created while tracing was off
            store(exc, origin)
        if settings.eager_notes:
            note(exc, settings.note_style)
    except Exception as err:  # noqa: BLE001 - a callback of the program's task must not fail
        warn_internal(err, "recording a task's exception origin")


def make_on_task_done(original: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap ``TaskGroup._on_task_done``: record a failed child's origin, then run the group's own.

    The group's callback of each child (3.11+), which keeps the child's exception for its
    ``ExceptionGroup`` and lets go of the child; recorded here, while the child is alive.
    """

    @functools.wraps(original)
    def _on_task_done(self: Any, task: Any) -> Any:
        if _groups_watched:
            try:
                exc = failure(task)
                if exc is not None and record_of(exc) is None:
                    origin = origin_of_task(task)
                    if origin is not None:
                        store(exc, origin)
            except Exception as err:  # noqa: BLE001 - the group's own callback must run
                warn_internal(err, "recording a TaskGroup child's exception origin")
        return original(self, task)

    _on_task_done.__async_trace_wrapper__ = True  # type: ignore[attr-defined]
    return _on_task_done


#: Read by the TaskGroup wrapper: off, it is a pass-through (left inside someone else's patch).
_groups_watched = False


def watch_groups(on: bool) -> None:
    """Record failed TaskGroup children's origins (``on``), or stop."""
    global _groups_watched
    _groups_watched = on


def _call_done(node: Node, future: Any) -> None:
    """Done callback of an executor call's future, on 3.10/3.11: the call is the origin."""
    try:
        exc = failure(future)
        if exc is None:
            return
        if record_of(exc) is None:
            store(exc, _tuple_new(Origin, (node, None, None)))
        if settings.eager_notes:
            note(exc, settings.note_style, early=True)
    except Exception as err:  # noqa: BLE001 - a callback of the program's future must not fail
        warn_internal(err, "recording an executor call's exception origin")


def _watch_task(task: Any) -> None:
    kind = type(task)
    # Looked up on the class: a Future-like object from a custom factory may refuse
    # attribute reads (its ``__getattr__`` raising anything), and is no task to watch.
    if kind is _Task or (getattr(kind, "get_coro", None) is not None and hasattr(kind, "add_done_callback")):
        task.add_done_callback(_task_done)


def _watch_call(future: Any, node: Node) -> None:
    future.add_done_callback(functools.partial(_call_done, node))


def watch(on: bool) -> None:
    """Subscribe to the tasks and calls the capture hooks create (``on``), or stop."""
    if on and _watch_task not in task_watchers:
        task_watchers.append(_watch_task)
        call_watchers.append(_watch_call)
    elif not on and _watch_task in task_watchers:
        task_watchers.remove(_watch_task)
        call_watchers.remove(_watch_call)
    set_recording(on)
