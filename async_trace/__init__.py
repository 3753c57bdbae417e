"""async-trace: call stacks for asyncio, across task creations and executor hops.

``import async_trace`` turns tracing on; call :func:`print_trace` anywhere.
"""

# No ``from __future__ import annotations`` here: it would export the name
# ``annotations``, and this module only re-exports.
from ._api import collect_async_trace as collect_async_trace
from ._api import disable_tracing as disable_tracing
from ._api import enable_tracing as enable_tracing
from ._api import format_async_trace as format_async_trace
from ._api import format_trace as format_trace
from ._api import print_async_trace as print_async_trace
from ._api import print_trace as print_trace
from ._dump import cancel_dump_tasks_on_signal as cancel_dump_tasks_on_signal
from ._dump import dump_tasks as dump_tasks
from ._dump import dump_tasks_on_signal as dump_tasks_on_signal
from ._exceptions import exception_trace as exception_trace
from ._exceptions import format_exception as format_exception
from ._exceptions import print_exception as print_exception
from ._failsafe import internal_errors as internal_errors
from ._json import JSONExecutorThread as JSONExecutorThread
from ._json import JSONFrame as JSONFrame
from ._json import JSONLoop as JSONLoop
from ._json import JSONTask as JSONTask
from ._json import JSONTaskTree as JSONTaskTree
from ._json import JSONTrace as JSONTrace
from ._json import JSONTreeTask as JSONTreeTask
from ._json import trace_to_dict as trace_to_dict
from ._json import trace_to_json as trace_to_json
from ._json import tree_to_dict as tree_to_dict
from ._json import tree_to_json as tree_to_json
from ._speedups import IMPLEMENTATION as implementation
from ._stall import StallWatch as StallWatch
from ._stall import watch_stalls as watch_stalls
from ._stall_env import start_from_environment as _start_stall_watch_from_environment
from ._stall_report import format_stall_report as format_stall_report
from ._stall_report import print_stall_report as print_stall_report
from ._stall_summary import reset_stall_summary as reset_stall_summary
from ._stall_summary import stall_summary as stall_summary
from ._tree import format_task_tree as format_task_tree
from ._tree import print_task_tree as print_task_tree
from ._tree import task_tree as task_tree
from ._types import AsyncTraceWarning as AsyncTraceWarning
from ._types import ExecutorThread as ExecutorThread
from ._types import InternalErrors as InternalErrors
from ._types import StallKind as StallKind
from ._types import StallReport as StallReport
from ._types import StallStats as StallStats
from ._types import StallThread as StallThread
from ._types import TaskInfo as TaskInfo
from ._types import TaskOrigin as TaskOrigin
from ._types import TaskState as TaskState
from ._types import TaskTree as TaskTree
from ._types import TraceData as TraceData
from ._types import TraceFrame as TraceFrame
from ._version import __version__ as __version__

__all__ = [
    "AsyncTraceWarning",
    "ExecutorThread",
    "InternalErrors",
    "JSONExecutorThread",
    "JSONFrame",
    "JSONLoop",
    "JSONTask",
    "JSONTaskTree",
    "JSONTrace",
    "JSONTreeTask",
    "StallKind",
    "StallReport",
    "StallStats",
    "StallThread",
    "StallWatch",
    "TaskInfo",
    "TaskOrigin",
    "TaskState",
    "TaskTree",
    "TraceData",
    "TraceFrame",
    "cancel_dump_tasks_on_signal",
    "collect_async_trace",
    "disable_tracing",
    "dump_tasks",
    "dump_tasks_on_signal",
    "enable_tracing",
    "exception_trace",
    "format_async_trace",
    "format_exception",
    "format_stall_report",
    "format_task_tree",
    "format_trace",
    "implementation",
    "internal_errors",
    "print_async_trace",
    "print_exception",
    "print_stall_report",
    "print_task_tree",
    "print_trace",
    "reset_stall_summary",
    "stall_summary",
    "task_tree",
    "trace_to_dict",
    "trace_to_json",
    "tree_to_dict",
    "tree_to_json",
    "watch_stalls",
]

enable_tracing()


_start_stall_watch_from_environment()
del _start_stall_watch_from_environment
