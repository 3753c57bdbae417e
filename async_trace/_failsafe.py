"""The fail-safe: an internal failure falls back to untraced behaviour and warns once.

Every broad ``except`` of the package that guards the program's own operation
calls :func:`warn_internal` and then does what asyncio does untraced.
"""

from __future__ import annotations

import contextlib
import warnings

from ._types import AsyncTraceWarning

__all__: list[str] = []
_warned = False


def warn_internal(exc: BaseException, where: str) -> None:
    """Report an internal failure once per process; the caller falls back."""
    global _warned
    if _warned:
        return
    _warned = True
    # A warnings filter set to "error" must not turn this into an exception.
    with contextlib.suppress(Exception):
        warnings.warn(
            f"async_trace: internal error while {where}; this call falls back to "
            f"untraced behaviour ({type(exc).__name__}: {exc})",
            AsyncTraceWarning,
            stacklevel=3,
        )


def reset_warned() -> None:
    """Allow the next internal error to warn again (for tests)."""
    global _warned
    _warned = False
