"""The fail-safe: an internal failure falls back to untraced behaviour, warns once, and is counted.

Every broad ``except`` of the package that guards the program's own operation
calls :func:`warn_internal` and then does what the program would do untraced.
The warning is an :class:`~async_trace.AsyncTraceWarning`, issued once per
process. A warnings filter that turns it into an error (``-W error``, pytest's
``filterwarnings = error``) must not make it vanish: the failure is then shown
through :func:`warnings.showwarning` (what pytest records and Python prints to
stderr) instead of raising into the program. Every failure is counted
(:func:`internal_errors`), warned or not.
"""

from __future__ import annotations

import itertools
import sys
import warnings

from ._types import AsyncTraceWarning, InternalErrors

__all__ = ["internal_errors"]

_warned = False
#: Failures so far: ``next()`` on it is atomic, so threads never count one twice.
_counter = itertools.count(1)
_count = 0
_last: str | None = None


def _describe(exc: BaseException, where: str) -> str:
    # The exception may be the program's, with a __str__ of its own that raises.
    try:
        text = f"{type(exc).__name__}: {exc}"
    except Exception:  # noqa: BLE001 - a hostile __str__: its type is enough
        try:
            text = type(exc).__name__
        except Exception:  # noqa: BLE001 - a hostile metaclass
            text = "<unprintable exception>"
    return f"while {where} ({text})"


def warn_internal(exc: BaseException, where: str) -> None:
    """Count an internal failure, and report the first of the process; the caller falls back."""
    global _warned, _count, _last
    try:
        _count = max(_count, next(_counter))
        _last = _describe(exc, where)
        if _warned:
            return
        _warned = True
        message = (
            f"async_trace: internal error {_last}; this call falls back to untraced behaviour "
            "(async_trace.internal_errors() counts them)"
        )
        try:
            warnings.warn(message, AsyncTraceWarning, stacklevel=3)
        except Exception:  # noqa: BLE001 - a filter turned it into an error: show it, never raise it
            _show(message)
    except Exception:  # noqa: BLE001 - the fail-safe itself must never raise into the program
        return


def _show(message: str) -> None:
    """The warning shown as a warning, bypassing the filters, at the caller's caller's line."""
    try:
        frame = sys._getframe(3)
        filename, lineno = frame.f_code.co_filename, frame.f_lineno
    except ValueError:
        filename, lineno = "<async_trace>", 0
    warnings.showwarning(AsyncTraceWarning(message), AsyncTraceWarning, filename, lineno)


def internal_errors() -> InternalErrors:
    """How many internal failures async-trace met and fell back from, and the latest one.

    Each was handled: the operation it happened in ran as it runs untraced.
    The first of the process is also reported as an :class:`AsyncTraceWarning`
    (shown even under ``-W error``, without raising). Zero in a healthy
    program; a test can assert it stays so.

    Returns:
        An :class:`InternalErrors` record: ``count``, and ``last``, a one-line
        description of the latest failure (``None`` before the first).
    """
    return InternalErrors(count=_count, last=_last)


def reset_warned() -> None:
    """Allow the next internal error to warn again, and zero the count (for tests)."""
    global _warned, _count, _last, _counter
    _warned = False
    _counter = itertools.count(1)
    _count = 0
    _last = None
