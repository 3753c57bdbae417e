"""The stall summary: per source, how many stalls, their total and worst duration (bounded)."""

from __future__ import annotations

import threading
from typing import Final

from ._types import StallKind, StallStats

__all__ = ["reset_stall_summary", "stall_summary"]


SUMMARY_MAX: Final = 1000
#: Where the stalls of sources past ``SUMMARY_MAX`` are counted.
OTHER_SOURCE: Final = "<other>"
_summary: dict[str, StallStats] = {}
_summary_lock = threading.Lock()


def stall_summary() -> dict[str, StallStats]:
    """Every stall seen since start (or :func:`reset_stall_summary`), per ``source``, worst total first.

    Counts stalls whether or not dedup or the rate limit kept them from being
    reported, for every watch of the process. Bounded: past 1000 sources, the
    rest are counted under ``"<other>"``. A fresh dict of fresh dicts.
    """
    with _summary_lock:
        items = [(source, StallStats(**stats)) for source, stats in _summary.items()]
    items.sort(key=lambda item: (-item[1]["total"], item[0]))
    return dict(items)


def reset_stall_summary() -> None:
    """Forget every stall :func:`stall_summary` counted."""
    with _summary_lock:
        _summary.clear()


def count(source: str, duration: float, kind: StallKind, reported: bool) -> None:
    with _summary_lock:
        stats = _summary.get(source)
        if stats is None:
            if len(_summary) >= SUMMARY_MAX:
                source = OTHER_SOURCE
                stats = _summary.get(source)
            if stats is None:
                stats = _summary[source] = StallStats(count=0, reported=0, total=0.0, worst=0.0, kind=kind)
        stats["count"] += 1
        stats["reported"] += int(reported)
        stats["total"] += duration
        stats["worst"] = max(stats["worst"], duration)
        stats["kind"] = kind


def after_fork() -> None:
    """In a forked child: a lock another thread of the parent held is unusable."""
    global _summary_lock
    _summary_lock = threading.Lock()
