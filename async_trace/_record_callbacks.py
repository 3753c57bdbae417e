"""Eager notes on 3.10/3.11 (no unwind hook): a done callback given to each task and executor future.

The strategy :mod:`._recorders` chooses where ``sys.monitoring`` does not
exist. With eager notes on, the capture hooks hand each task they create, and
each executor call's future with its node, to the observers in
:mod:`._hooks`; this module subscribes there and adds a done callback that
records the origin and adds the note as the task or call fails. The callback
is added at creation, so it runs before the callback of whoever awaits the
task: the note is in ``__notes__`` when the awaiting code catches the
exception.
"""

from __future__ import annotations

import functools
from typing import Any, Final

from ._chain import Node
from ._config import settings
from ._failsafe import warn_internal
from ._hooks import call_watchers, task_watchers
from ._notes import note
from ._origins import Origin, failure, origin_of_task, record_of, store

__all__: list[str] = []

_tuple_new: Final = tuple.__new__


def _task_done(task: Any) -> None:
    """Done callback of each task the wrappers create, with eager notes on 3.10/3.11.

    Added as the task is created, so it runs before the callbacks of whoever
    awaits the task (they are added later, and run in order): the note is in
    ``__notes__`` before the exception reaches them. The exception left this
    task, so the task (or an inner one, which finished first and recorded
    it) is its origin.
    """
    try:
        exc = failure(task)
        if exc is None:
            return
        if record_of(exc) is None:
            origin = origin_of_task(task)
            if origin is None:
                return  # created while tracing was off
            store(exc, origin)
        note(exc, settings.note_style)
    except Exception as err:  # noqa: BLE001 - a callback of the program's task must not fail
        warn_internal(err, "adding a task's origin note")


def _call_done(node: Node, future: Any) -> None:
    """Done callback of an executor call's future, with eager notes on 3.10/3.11: the call is the origin."""
    try:
        exc = failure(future)
        if exc is None:
            return
        if record_of(exc) is None:
            store(exc, _tuple_new(Origin, (node, None, None)))
        note(exc, settings.note_style, early=True)
    except Exception as err:  # noqa: BLE001 - a callback of the program's future must not fail
        warn_internal(err, "adding an executor call's origin note")


def _watch_task(task: Any) -> None:
    add = getattr(task, "add_done_callback", None)
    if add is not None and hasattr(task, "get_coro"):  # not a Future-like object from a custom factory
        add(_task_done)


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
