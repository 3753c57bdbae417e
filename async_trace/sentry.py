"""Sentry: events that say where the failing task came from (``pip install '.[sentry]'`` in a clone).

:class:`AsyncTraceIntegration` is a ``sentry-sdk`` 2.x integration. For an
event made from an exception raised in a traced task or executor function
(``sentry_sdk.capture_exception()``, an integration's report, a logged error
with ``exc_info``), it adds the exception's origin chain
(:func:`async_trace.exception_trace`):

- as structured context, ``contexts["async_trace"]``: ``path`` (the chain in
  one line, innermost first), ``frames`` (the chain's frames as JSON-ready
  dicts, innermost first, see :func:`async_trace.trace_to_dict`),
  ``in_executor`` and ``task`` (the name of the task that raised it, or
  ``None``);
- as extra frames at the outer end of that exception's stacktrace (Sentry
  orders frames oldest first): one per line of the chain, the root first,
  each with ``in_app`` ``False`` where it comes from the standard library
  or an installed package (``site-packages``), ``True`` otherwise.

Each exception of the event's chain (causes, contexts) gets its own frames;
of an exception group, the group itself. Events without a known origin pass
unchanged. The processor never raises: an internal error warns once
(:class:`async_trace.AsyncTraceWarning`) and the event goes out as it was.

::

    sentry_sdk.init(dsn=..., integrations=[AsyncTraceIntegration()])

:func:`capture_stall` sends a stall report (:func:`async_trace.watch_stalls`) as an event.

This module imports ``sentry_sdk`` (``import async_trace`` does not).
"""

from __future__ import annotations

import builtins
import linecache
import os
import sys
from typing import Any, Final

try:
    import sentry_sdk
    from sentry_sdk.integrations import Integration
    from sentry_sdk.scope import add_global_event_processor
    from sentry_sdk.utils import walk_exception_chain
except ImportError as _err:  # pragma: no cover - exercised in a subprocess
    raise ImportError(
        "async_trace.sentry needs sentry-sdk 2: pip install '.[sentry]' in a clone of async-trace, or "
        "pip install 'sentry-sdk>=2' (not 'async-trace[sentry]': that is an unrelated project on the package "
        f"index); {_err}"
    ) from _err

from ._chain import task_name
from ._collect import has_line
from ._exceptions import exception_trace
from ._failsafe import warn_internal
from ._inapp import is_library, resolved_path
from ._json import trace_to_dict
from ._render_line import chain_line
from ._stall_report import headline
from ._types import StallReport, TraceData, TraceFrame

__all__ = ["CONTEXT", "AsyncTraceIntegration", "capture_stall", "origin_context", "origin_frames", "stall_event"]

#: The key of the event's ``contexts`` entry.
CONTEXT: Final = "async_trace"

_MAX_FRAMES: Final = 64
_MAX_LENGTH: Final = 2048
#: ``BaseExceptionGroup`` (3.11+), else ``None``.
_GROUP: Final[type[BaseException] | None] = getattr(builtins, "BaseExceptionGroup", None)


def origin_frames(trace: TraceData) -> list[dict[str, Any]]:
    """Sentry stacktrace frames for the lines of an origin chain, outermost (the root's side) first."""
    out: list[dict[str, Any]] = []
    for frame in reversed(trace["frames"]):
        filename, line = frame["filename"], frame["line"]
        if filename is None or line is None:
            continue  # the root frame and elision markers have no line
        entry: dict[str, Any] = {
            "filename": _relative(filename),
            "abs_path": filename,
            "function": frame["name"],
            "lineno": line,
            "in_app": frame.get("in_app", not is_library(filename)),
        }
        source = linecache.getline(filename, line)
        if source:
            entry["context_line"] = source.rstrip("\r\n")
        out.append(entry)
    return out


def _relative(filename: str) -> str:
    """The path below the longest ``sys.path`` entry holding it, as sentry-sdk names its frames' files."""
    best = ""
    for entry in sys.path:
        root = os.path.join(resolved_path(entry or os.curdir), "")
        if filename.startswith(root) and len(root) > len(best):
            best = root
    return filename[len(best) :] if best else os.path.basename(filename)


def origin_context(trace: TraceData) -> dict[str, Any]:
    """The ``contexts["async_trace"]`` entry for an origin chain."""
    task = trace["current_task"]
    frames: list[TraceFrame] = trace["frames"]
    return {
        "path": chain_line(frames, _MAX_FRAMES, _MAX_LENGTH),
        "frames": trace_to_dict(trace)["frames"],
        "in_executor": trace["in_executor"],
        "task": task_name(task) if task is not None else None,
    }


def _origin(exc: BaseException | None) -> TraceData | None:
    if exc is None:
        return None
    trace = exception_trace(exc)
    return trace if trace is not None and has_line(trace["frames"]) else None


def _exceptions_of(exc_info: Any, count: int) -> list[BaseException | None]:
    """The exceptions behind ``event["exception"]["values"]``, in that order (``None``: not known).

    sentry-sdk lists an exception's chain (``walk_exception_chain``) outermost
    last; of an exception group, whose members it lists too, only the group
    itself (the last value) is matched.
    """
    exc = exc_info[1]
    if _GROUP is not None and isinstance(exc, _GROUP):
        return [*([None] * (count - 1)), exc]
    chain = [value for _, value, _ in walk_exception_chain(exc_info)]
    chain.reverse()
    if len(chain) != count:
        return [*([None] * (count - 1)), exc]
    return chain


def add_origin(event: dict[str, Any], hint: dict[str, Any] | None) -> dict[str, Any]:
    """The event processor: adds the origin of the event's exceptions (see the module's docstring)."""
    exc_info = (hint or {}).get("exc_info")
    if not exc_info or not isinstance(exc_info[1], BaseException):
        return event
    values = (event.get("exception") or {}).get("values")
    if not isinstance(values, list) or not values:
        return event
    # Everything is computed first: a failure on the way leaves the event as it was.
    context: dict[str, Any] | None = None
    changes: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for value, exc in zip(values, _exceptions_of(exc_info, len(values)), strict=True):
        trace = _origin(exc)
        if trace is None or not isinstance(value, dict):
            continue
        stacktrace = value.get("stacktrace")
        old = stacktrace.get("frames") if isinstance(stacktrace, dict) else None
        frames = [*origin_frames(trace), *(old if isinstance(old, list) else [])]
        changes.append(
            (value, {**stacktrace, "frames": frames} if isinstance(stacktrace, dict) else {"frames": frames})
        )
        if exc is exc_info[1] or context is None:
            context = origin_context(trace)
    if context is None:
        return event
    for value, stacktrace in changes:
        value["stacktrace"] = stacktrace
    contexts = event.get("contexts")
    if isinstance(contexts, dict):
        contexts[CONTEXT] = context
    else:
        event["contexts"] = {CONTEXT: context}
    return event


class AsyncTraceIntegration(Integration):
    """Adds the origin chain of exceptions raised in tasks and executor functions to Sentry events."""

    identifier = "async_trace"

    @staticmethod
    def setup_once() -> None:
        add_global_event_processor(_processor)


def _processor(event: Any, hint: Any) -> Any:
    if sentry_sdk.get_client().get_integration(AsyncTraceIntegration) is None:
        return event  # installed once per process, active only for clients that use it
    try:
        return add_origin(event, hint)
    except Exception as err:  # noqa: BLE001 - the event itself must go out
        warn_internal(err, "adding an exception's origin to a Sentry event")
        return event


# --- stall reports: one event per report ----------------------------------------------

_STALL_LOGGER: Final = "async_trace.stall"


def stall_event(report: StallReport) -> dict[str, Any]:
    """The Sentry event for ``report``.

    ``message``: the report's headline; ``level`` ``warning``; ``logger``
    ``async_trace.stall``; ``fingerprint`` ``["async-trace-stall", source]``
    (one issue per source); ``tags`` ``stall.kind`` and ``stall.source``;
    ``contexts["async_trace"]``: the blocking stack and the chain as in
    exception events (``path``, ``frames``, ``in_executor``, ``task``) plus
    ``stall``: ``duration``, ``threshold``, ``kind``, ``source``, ``ongoing``,
    ``suppressed``, ``waiting_on``, ``waiting_for`` (thread names);
    ``threads``: the loop thread with the stack and chain as its stacktrace
    (oldest first, ``in_app`` per frame), then each thread it waited for.
    """
    trace = report.trace
    context = origin_context(trace)
    context["stall"] = {
        "duration": report.duration,
        "threshold": report.threshold,
        "kind": report.kind,
        "source": report.source,
        "ongoing": report.ongoing,
        "suppressed": report.suppressed,
        "waiting_on": report.waiting_on,
        "waiting_for": [thread.name for thread in report.waiting_for],
    }
    threads: list[dict[str, Any]] = [
        {"name": report.thread, "current": True, "crashed": False, "stacktrace": {"frames": origin_frames(trace)}}
    ]
    for thread in report.waiting_for:
        data = {"frames": list(thread.frames), "current_task": None, "in_executor": False}
        threads.append(
            {"id": thread.ident, "name": thread.name, "stacktrace": {"frames": origin_frames(data)}}  # type: ignore[arg-type]
        )
    return {
        "message": headline(report),
        "level": "warning",
        "logger": _STALL_LOGGER,
        "fingerprint": ["async-trace-stall", report.source],
        "tags": {"stall.kind": report.kind, "stall.source": report.source},
        "contexts": {"async_trace": context},
        "threads": {"values": threads},
    }


def capture_stall(report: StallReport) -> str | None:
    """Send ``report`` to Sentry as :func:`stall_event`; the event id (``None`` if not sent).

    Use it as the watch's callback: ``watch_stalls(on_stall=async_trace.sentry.capture_stall)``.
    """
    return sentry_sdk.capture_event(stall_event(report))  # type: ignore[arg-type]  # a plain dict is an Event
