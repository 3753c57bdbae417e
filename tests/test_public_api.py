"""The public namespace is what README.md documents; import turns tracing on."""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

import async_trace

from .helpers import run_python

CORE = {
    "print_trace",
    "format_trace",
    "collect_async_trace",
    "format_async_trace",
    "print_async_trace",
    "enable_tracing",
    "disable_tracing",
    "TraceData",
    "TraceFrame",
    "AsyncTraceWarning",
    "task_tree",
    "tree_to_dict",
    "tree_to_json",
    "JSONTaskTree",
    "JSONTreeTask",
    "JSONLoop",
    "JSONExecutorThread",
}


def test_all_has_the_documented_names() -> None:
    """__all__ holds the README's API, every name in it exists, none is private."""
    assert set(async_trace.__all__) >= CORE
    for name in async_trace.__all__:
        assert hasattr(async_trace, name)
        assert not name.startswith("_")


#: The whole public namespace, pinned: a name added or removed is a decision, made here too.
PUBLIC = CORE | {
    # Which implementation runs: "c" (the compiled core) or "python" (docs/performance.md).
    "implementation",
    "ExecutorThread",
    "InternalErrors",
    "JSONFrame",
    "JSONTask",
    "JSONTrace",
    "TaskInfo",
    "TaskOrigin",
    "TaskState",
    "TaskTree",
    "cancel_dump_tasks_on_signal",
    "dump_tasks",
    "dump_tasks_on_signal",
    "exception_trace",
    "format_exception",
    "format_task_tree",
    "internal_errors",
    "print_exception",
    "print_task_tree",
    "trace_to_dict",
    "trace_to_json",
    # The stall watchdog (docs/stalls.md).
    "StallKind",
    "StallReport",
    "StallStats",
    "StallThread",
    "StallWatch",
    "format_stall_report",
    "print_stall_report",
    "reset_stall_summary",
    "stall_summary",
    "watch_stalls",
}


def test_public_namespace_is_exactly_this() -> None:
    """``__all__`` is exactly the pinned set, and the package exports nothing else without an underscore."""
    assert set(async_trace.__all__) == PUBLIC
    assert len(async_trace.__all__) == len(PUBLIC)  # no name listed twice
    # Submodules that are public API of their own (imported on demand) may appear once imported.
    modules = {"logging", "otel", "sentry", "pytest_plugin"}
    # pytest rewrites the asserts of an installed plugin's distribution, which adds "@py_..." helpers.
    exported = {name for name in vars(async_trace) if not name.startswith(("_", "@"))} - modules
    assert exported == PUBLIC


def test_public_functions_are_documented_in_readme() -> None:
    """Every public name appears in README.md."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    for name in async_trace.__all__:
        assert f"`{name}" in readme, name


def test_version_matches_metadata() -> None:
    """__version__ is the installed distribution's version."""
    assert async_trace.__version__ == version("async-trace")


def test_warning_category() -> None:
    """AsyncTraceWarning is a RuntimeWarning, so it can be filtered as one."""
    assert issubclass(async_trace.AsyncTraceWarning, RuntimeWarning)


def test_import_turns_tracing_on() -> None:
    """In a fresh interpreter, importing async_trace replaces loop.create_task."""
    code = (
        "import asyncio.base_events as b; before = b.BaseEventLoop.create_task; "
        "import async_trace; assert b.BaseEventLoop.create_task is not before; print('on')"
    )
    out = run_python("-c", code)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "on\n"


def test_frame_dict_keys() -> None:
    """A frame dict, and its JSON form, has exactly the documented keys (``is_process``, ``in_app``)."""
    keys = frozenset({"name", "line", "filename", "indent", "task", "is_executor", "is_process", "in_app"})
    assert async_trace.TraceFrame.__required_keys__ == keys
    assert async_trace.JSONFrame.__required_keys__ == keys
    assert async_trace.TraceFrame.__optional_keys__ == async_trace.JSONFrame.__optional_keys__ == frozenset()


def test_every_format_and_print_function_takes_library_frames() -> None:
    """``library_frames`` on each, keyword-only: ``"collapse"`` by default (for exceptions ``None``: as configured)."""
    import inspect

    from async_trace.logging import AsyncTraceFilter, compact_path

    collapse: list[Any] = [
        async_trace.format_trace,
        async_trace.print_trace,
        async_trace.format_async_trace,
        async_trace.print_async_trace,
        async_trace.format_task_tree,
        async_trace.print_task_tree,
        async_trace.dump_tasks,
        compact_path,
        AsyncTraceFilter,
    ]
    configured: list[Any] = [async_trace.format_exception, async_trace.print_exception, async_trace.enable_tracing]
    for func, default in [*((f, "collapse") for f in collapse), *((f, None) for f in configured)]:
        param = inspect.signature(func).parameters["library_frames"]
        assert param.kind is inspect.Parameter.KEYWORD_ONLY, func
        assert param.default == default, func
    for name in ("in_app_include", "in_app_exclude"):
        assert inspect.signature(async_trace.enable_tracing).parameters[name].default is None
    assert "in_app" in async_trace.TraceFrame.__annotations__
