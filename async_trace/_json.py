"""The trace as JSON-ready data: Task objects become ``{"name", "id"}``."""

from __future__ import annotations

import json
from typing import Any, TypedDict

from ._types import TraceData

__all__ = ["JSONFrame", "JSONTask", "JSONTrace", "trace_to_dict", "trace_to_json"]


class JSONTask(TypedDict):
    name: str
    id: int


class JSONFrame(TypedDict):
    name: str
    line: int | None
    filename: str | None
    indent: int
    task: JSONTask | None
    is_executor: bool


class JSONTrace(TypedDict):
    frames: list[JSONFrame]
    current_task: JSONTask | None
    in_executor: bool


def _task(task: Any) -> JSONTask | None:
    if task is None:
        return None
    get_name = getattr(task, "get_name", None)
    return {"name": str(get_name()) if callable(get_name) else repr(task), "id": id(task)}


def trace_to_dict(trace: TraceData) -> JSONTrace:
    """The trace with every Task replaced by ``{"name": ..., "id": ...}``: JSON-ready.

    ``id`` is ``id(task)``, which tells tasks apart while they are alive.
    """
    return {
        "frames": [
            {
                "name": f["name"],
                "line": f["line"],
                "filename": f["filename"],
                "indent": f["indent"],
                "task": _task(f["task"]),
                "is_executor": f["is_executor"],
            }
            for f in trace["frames"]
        ],
        "current_task": _task(trace["current_task"]),
        "in_executor": trace["in_executor"],
    }


def trace_to_json(trace: TraceData, **dumps_kwargs: Any) -> str:
    """``json.dumps(trace_to_dict(trace), **dumps_kwargs)``."""
    return json.dumps(trace_to_dict(trace), **dumps_kwargs)
