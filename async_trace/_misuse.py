"""A caller's mistakes, told as such: what each public function expected, and what it got.

Each check returns the error (or, for a signal, the number) and the public
function raises it, so the traceback ends in the function the program called,
not in a helper of ours. A mistake is the caller's: it never goes through
:func:`._failsafe.warn_internal`, and never counts as an internal error.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterable, Mapping, Sequence
from typing import Final

from ._types import TaskTree

__all__: list[str] = []

#: What a trace is, for the messages.
TRACE: Final = (
    "a trace: the dict collect_async_trace() returns, "
    "{'frames': [frame dicts, innermost first], 'current_task': Task or None, 'in_executor': bool}"
)


def _kind(value: object) -> str:
    return "None" if value is None else type(value).__name__


def trace_error(func: str, trace: object, frame_keys: Iterable[str] | None = None) -> TypeError | None:
    """``None`` if ``trace`` is shaped as a trace whose frames each have ``frame_keys``; else the error to raise.

    Without ``frame_keys`` only the trace itself is checked (its frames are
    not visited: a cost paid per call, which logging pays per record).
    """
    if not isinstance(trace, Mapping):
        return TypeError(f"{func}() takes {TRACE}; not {_kind(trace)}")
    if "frames" not in trace:
        return TypeError(f"{func}() takes {TRACE}; not a {_kind(trace)} without 'frames'")
    frames = trace["frames"]
    if not isinstance(frames, Sequence) or isinstance(frames, (str, bytes)):
        return TypeError(f"{func}() takes {TRACE}; its 'frames' is a {_kind(frames)}, not a list of frame dicts")
    if frame_keys is None:
        return None
    wanted = tuple(frame_keys)
    for i, frame in enumerate(frames):
        if not isinstance(frame, Mapping):
            return TypeError(f"{func}() takes {TRACE}; frame {i} is a {_kind(frame)}, not a frame dict")
        missing = [key for key in wanted if key not in frame]
        if missing:
            return TypeError(
                f"{func}() takes {TRACE}; frame {i} has no {', '.join(map(repr, missing))} "
                f"(a frame dict has {', '.join(map(repr, wanted))})"
            )
    return None


def tree_error(func: str, tree: object) -> TypeError | None:
    """``None`` for a :class:`TaskTree` or ``None`` (the running loop's); else the error to raise."""
    if tree is None or isinstance(tree, TaskTree):
        return None
    return TypeError(
        f"{func}() takes a TaskTree (what task_tree() returns), or None for the running loop's; not {_kind(tree)}"
    )


def loop_error(func: str, loop: object) -> TypeError | None:
    """``None`` for an event loop or ``None`` (the running loop); else the error to raise."""
    if loop is None or isinstance(loop, asyncio.AbstractEventLoop):
        return None
    return TypeError(
        f"{func}() takes an event loop (asyncio.AbstractEventLoop, such as asyncio.get_running_loop()), "
        f"or None for the running loop; not {_kind(loop)}"
    )


def exception_error(func: str, exc: object) -> TypeError | None:
    """``None`` for an exception instance; else the error to raise."""
    if isinstance(exc, BaseException):
        return None
    what = f"the class {exc.__name__}" if isinstance(exc, type) else _kind(exc)
    return TypeError(f"{func}() takes an exception instance (such as the one an except clause binds); not {what}")


#: Signals no handler ever runs for.
_UNCATCHABLE: Final = frozenset(getattr(signal, name) for name in ("SIGKILL", "SIGSTOP") if hasattr(signal, name))


def signal_number(func: str, value: object) -> int | TypeError | ValueError:
    """``value`` as a signal number: an ``int``, a :class:`signal.Signals`, or a name (``"USR1"``, ``"SIGUSR1"``).

    Names as ``--dump-signal`` takes them: any case, with or without ``SIG``,
    or the number as digits. Returns the error to raise for anything else and
    for a signal that cannot be caught (``SIGKILL``, ``SIGSTOP``).
    """
    number: int
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        return TypeError(
            f"{func}() takes a signal: a number, a signal.Signals member such as signal.SIGUSR1, "
            f"or a name such as 'USR1' or 'SIGUSR1'; not {_kind(value)}"
        )
    if isinstance(value, int):
        number = int(value)
    elif value.strip().isdigit():
        number = int(value.strip())
    else:
        text = value.strip().upper()
        name = text if text.startswith("SIG") else "SIG" + text
        found = getattr(signal, name, None)
        if name.startswith("SIG_") or not isinstance(found, int):
            return ValueError(f"{func}(): unknown signal {value!r} (names such as 'USR1' or 'SIGUSR1')")
        number = int(found)
    if number in _UNCATCHABLE:
        return ValueError(
            f"{func}(): {signal.Signals(number).name} cannot be caught (no handler ever runs for SIGKILL or "
            f"SIGSTOP); choose another signal, such as SIGUSR1"
        )
    return number
