"""The pytest entry point of async_trace's plugin, importable without the ``async_trace`` package.

Installing async-trace registers this module with pytest (entry point
``pytest11``, under its own name: ``-p no:async_trace_pytest`` blocks it). Importing ``async_trace`` turns tracing
on, and a suite that did not ask for the plugin must run exactly as without
it, so this module only declares the command-line options, the ini settings
and the marker. Only when ``--async-trace=warn|fail`` (or the ini setting
``async_trace``) asks for it does it import and register
:mod:`async_trace.pytest_plugin`, which does the work. Where the package is
not installed (only on ``sys.path``) load it with ``-p async_trace_pytest``.
"""

from __future__ import annotations

from typing import Final

import pytest

__all__: list[str] = []

#: The modes, for the option, the ini setting and the marker.
MODES: Final = ("off", "warn", "fail")
#: The name the implementation is registered under.
PLUGIN_NAME: Final = "async_trace_leftovers"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("async-trace", "async-trace: what tests leave behind, with creation chains")
    group.addoption(
        "--async-trace",
        dest="async_trace",
        choices=MODES,
        default=None,
        help="report tasks, timers and threads a test leaves behind, each with the chain of lines "
        "that started it: 'warn' (a warning), 'fail' (the test errors at teardown) or 'off' "
        "(default: the ini setting async_trace, else off)",
    )
    group.addoption(
        "--async-trace-stall",
        dest="async_trace_stall",
        metavar="SECONDS",
        default=None,
        help="also report each time a test blocks its event loop longer than SECONDS "
        "(default: the ini setting async_trace_stall, else no stall detection)",
    )
    parser.addini("async_trace", "async-trace plugin mode: off (default), warn or fail", default="off")
    parser.addini(
        "async_trace_stall",
        "async-trace: report event-loop stalls longer than this many seconds (empty: no stall detection)",
        default="",
    )
    parser.addini(
        "async_trace_allow",
        "async-trace: leftovers to allow, one per line: 'module' or 'module:function' (any frame of the "
        "creation chain, or the task's coroutine, the timer's callback or the thread's target), then the reason",
        type="linelist",
        default=[],
    )


def mode(config: pytest.Config) -> str:
    """The session's mode: the option, else the ini setting."""
    chosen = config.getoption("async_trace", None)
    if chosen is None:
        chosen = str(config.getini("async_trace")).strip() or "off"
    if chosen not in MODES:
        raise pytest.UsageError(f"async_trace: mode must be one of {', '.join(MODES)}, not {chosen!r}")
    return str(chosen)


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "async_trace(mode=None, *, stall=None, allow=()): async-trace's leftover report for this test: "
        "mode 'off', 'warn' or 'fail'; stall: seconds past which a blocked event loop is reported "
        "(0: none); allow: more 'module[:function]' entries (used only when the plugin is on)",
    )
    if mode(config) == "off":
        return
    # Imported here, once asked for: importing async_trace turns tracing on.
    from async_trace import pytest_plugin

    config.pluginmanager.register(pytest_plugin.Plugin(config), PLUGIN_NAME)
