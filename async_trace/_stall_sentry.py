"""Sentry for stall reports: one event per report (re-exported by :mod:`async_trace.sentry`)."""

from __future__ import annotations

from typing import Any, Final

import sentry_sdk

from ._stall import StallReport, headline
from .sentry import origin_context, origin_frames

__all__ = ["capture_stall", "stall_event"]

_LOGGER: Final = "async_trace.stall"


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
        "logger": _LOGGER,
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
