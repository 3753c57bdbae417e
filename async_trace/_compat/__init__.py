"""Every fact that differs by Python version, chosen once.

As asyncio picks its platform's event loop module once, this picks the module
of the running Python's version (:mod:`.py310`, :mod:`.py311`, :mod:`.py312`,
:mod:`.py314`; each starts from the previous one and overrides what changed)
and exports its facts by name. Nothing else in the package reads
``sys.version_info`` (``tests/test_layout.py`` checks it; the command line may),
and a behaviour that differs by version is a strategy module chosen once from
these facts (:mod:`.._recorders`, :mod:`.._notes_py310`, :mod:`.._direct_tasks`).

Names bound as module globals with ``from ._compat import X`` cost nothing on
the hot path.
"""

from __future__ import annotations

import sys

if sys.version_info >= (3, 14):
    from . import py314 as _impl
elif sys.version_info >= (3, 12):
    from . import py312 as _impl
elif sys.version_info >= (3, 11):
    from . import py311 as _impl
else:
    from . import py310 as _impl

__all__ = [
    "ASYNCIO_REGISTRY",
    "C_TASK_LISTS",
    "EAGER_TASKS",
    "HAS_CODE_POSITIONS",
    "HAS_CONTEXT_ARG",
    "HAS_EAGER_TASKS",
    "HAS_MONITORING",
    "HAS_NOTES",
    "PYTHON_VERSION",
    "STDLIB_DIR_NAME",
    "TASK_REGISTRIES",
    "add_note",
    "awaited_by",
    "coro_of",
    "frame_module",
    "in_eager_first_step",
    "is_coroutine_function",
    "new_task_context",
    "task_context",
    "work_item_fn",
]

#: ``"3.12.1"``: the running Python, for reports.
PYTHON_VERSION = ".".join(map(str, sys.version_info[:3]))
#: The standard library's directory name under ``<prefix>/lib``.
STDLIB_DIR_NAME = f"python{sys.version_info[0]}.{sys.version_info[1]}"

#: 3.11+: ``loop.create_task(coro, context=...)`` and ``Task(..., context=...)``.
HAS_CONTEXT_ARG = _impl.HAS_CONTEXT_ARG
#: 3.11+: ``code.co_positions()``, the columns of each instruction.
HAS_CODE_POSITIONS = _impl.HAS_CODE_POSITIONS
#: 3.11+: PEP 678 notes (``BaseException.add_note``).
HAS_NOTES = _impl.HAS_NOTES
#: 3.12+: eager tasks (``eager_start=``, ``asyncio.eager_task_factory``): a first step inside the constructor.
HAS_EAGER_TASKS = _impl.HAS_EAGER_TASKS
#: 3.12+: ``sys.monitoring`` (the ``PY_UNWIND`` event).
HAS_MONITORING = _impl.HAS_MONITORING
#: 3.14+: C tasks live in per-thread lists no Python registry shows.
C_TASK_LISTS = _impl.C_TASK_LISTS
#: The ``WeakSet`` a C ``Task`` constructor registers each new task in by calling its ``add``; ``None`` on 3.14+.
ASYNCIO_REGISTRY = _impl.ASYNCIO_REGISTRY
#: asyncio's registries of live tasks, every loop's (on 3.14+, pure-Python tasks only).
TASK_REGISTRIES = _impl.TASK_REGISTRIES
#: 3.12/3.13: the tasks running their eager first step (a set asyncio's C code fills); else ``None``.
EAGER_TASKS = _impl.EAGER_TASKS
#: ``sys._getframemodulename`` (3.12+: a caller's module without materialising its frame), else ``None``.
frame_module = _impl.frame_module
task_context = _impl.task_context
new_task_context = _impl.new_task_context
coro_of = _impl.coro_of
in_eager_first_step = _impl.in_eager_first_step
awaited_by = _impl.awaited_by
work_item_fn = _impl.work_item_fn
add_note = _impl.add_note
is_coroutine_function = _impl.is_coroutine_function
