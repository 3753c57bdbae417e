"""Rendering a stall report: its headline, both styles of lines, and the fields of its log record."""

from __future__ import annotations

import sys
from typing import Any, Final, TextIO

from ._config import check_library_frames, check_style
from ._render import plain, trace_lines
from ._types import LibraryFrames, StallReport, Style, TraceData
from ._writer import to_ascii, write

__all__ = ["format_stall_report", "print_stall_report"]


_KIND_TEXT: Final[dict[str, str]] = {
    "blocking": "code running on the loop",
    "waiting": "waiting for another thread",
    "starved": "the loop was ready but did not run",
    "gc": "garbage collection",
}


def _seconds(value: float) -> str:
    return f"{value:.3f} s" if value < 10 else f"{value:.1f} s"


def headline(report: StallReport) -> str:
    """``Event loop blocked for 0.312 s (threshold 0.100 s): code running on the loop, in app:handler``."""
    verb = "blocked for" if not report.ongoing else "blocked, still, after"
    text = (
        f"Event loop {verb} {_seconds(report.duration)} (threshold {_seconds(report.threshold)}): "
        f"{_KIND_TEXT[report.kind]}, in {report.source}"
    )
    if report.task_name is not None:
        text += f", task {plain(repr(report.task_name))}"
    return text


def _lines(report: StallReport, style: Style, ascii_only: bool, library_frames: LibraryFrames) -> list[str]:
    out = [headline(report) + "\n"]
    if report.suppressed:
        more = "stall" if report.suppressed == 1 else "stalls"
        out.append(f"({report.suppressed} more {more} in {report.source} not reported since the last report)\n")
    trace = report.trace
    if trace["frames"]:
        out.extend(trace_lines(trace, None, style, ascii_only=ascii_only, library_frames=library_frames))
    for thread in report.waiting_for:
        what = report.waiting_on or "it"
        out.append(f"Thread {plain(repr(thread.name))} (holding {what}):\n")
        data: TraceData = {"frames": list(thread.frames), "current_task": None, "in_executor": False}
        out.extend(trace_lines(data, None, style, ascii_only=ascii_only, library_frames=library_frames))
    return out


def format_stall_report(
    report: StallReport,
    *,
    style: Style = "arrows",
    ascii_only: bool = False,
    library_frames: LibraryFrames = "collapse",
) -> list[str]:
    """The lines of a stall report, each ending in ``"\\n"``.

    A headline (duration, threshold, kind, source, task), a line saying how
    many stalls of that source were held back (if any), then the blocking
    stack followed by the task's creation chain as one trace, in ``style``
    (``"arrows"``: innermost first; ``"traceback"``: most recent call last,
    ``Async trace (most recent call last):`` first), library runs folded per
    ``library_frames``; for ``waiting``, each thread found holding what the
    loop waited on, and its stack.

    Raises:
        ValueError: an unknown ``style`` or ``library_frames``.
    """
    check_style(style)
    check_library_frames(library_frames)
    lines = _lines(report, style, ascii_only, library_frames)
    return [to_ascii(line) for line in lines] if ascii_only else lines


def print_stall_report(
    report: StallReport,
    *,
    file: TextIO | None = None,
    style: Style = "arrows",
    ascii_only: bool = False,
    library_frames: LibraryFrames = "collapse",
) -> None:
    """Print :func:`format_stall_report`'s lines to ``file`` (default ``sys.stderr``, looked up at call time)."""
    check_style(style)
    check_library_frames(library_frames)
    write(
        lambda plain: _lines(report, style, plain, library_frames),
        sys.stderr if file is None else file,
        ascii_only=ascii_only,
    )


def log_fields(report: StallReport) -> dict[str, Any]:
    """The ``extra`` of a stall's log record: ``stall_duration``, ``stall_kind``, ``stall_source``, ..."""
    return {
        "stall_duration": report.duration,
        "stall_threshold": report.threshold,
        "stall_kind": report.kind,
        "stall_source": report.source,
        "stall_task": report.task_name,
        "stall_ongoing": report.ongoing,
        "stall_suppressed": report.suppressed,
        "stall_report": report,
    }
