"""The compiled core or the Python path: chosen once, at import.

``async_trace._ccore`` (built from ``_ccore.c`` where a compiler was found at
install) offers compiled versions of a few hot functions; each module that has
one binds it in place of its own Python definition, which stays the reference
and the fallback. The Python path is used when the core was not built, on any
implementation but CPython, on a free-threaded build (the core relies on the
GIL, and importing a module that does not declare itself safe without it would
re-enable the GIL for the whole process), in a subinterpreter (the core's state
is process-wide), or when ``ASYNC_TRACE_NO_EXTENSIONS`` is set to anything but
``""`` or ``"0"`` (read once, here, at import).
"""

from __future__ import annotations

import os
import platform
import sysconfig
from types import ModuleType
from typing import Final, Literal

__all__: list[str] = []

#: The environment variable that forces the Python path (as aiohttp's, yarl's ``*_NO_EXTENSIONS``).
NO_EXTENSIONS_VAR: Final = "ASYNC_TRACE_NO_EXTENSIONS"


def _why_python() -> str | None:
    """Why the core is not used (``None``: it may be)."""
    if os.environ.get(NO_EXTENSIONS_VAR, "") not in ("", "0"):
        return f"{NO_EXTENSIONS_VAR} is set"
    if platform.python_implementation() != "CPython":
        return f"{platform.python_implementation()} runs the Python path"
    if sysconfig.get_config_var("Py_GIL_DISABLED"):
        return "a free-threaded build runs the Python path"
    return None


#: The ``API_VERSION`` of the ``_ccore.c`` this Python code goes with: a core built from another
#: version of it (an in-place build left from an earlier checkout) is not used.
API_VERSION: Final = 16

#: The compiled core module, or ``None`` on the Python path.
CORE: ModuleType | None = None
#: Why this path: ``"compiled core"``, or the reason the Python path runs.
REASON: str | None = _why_python()
if REASON is None:
    try:
        from . import _ccore
    except ImportError:
        # Not built (no compiler at install), or this is a source tree that was never built in place.
        REASON = f"no compiled core was built for {os.path.dirname(__file__)}"
    else:
        if getattr(_ccore, "API_VERSION", None) != API_VERSION:
            REASON = "the compiled core was built from another version of async-trace (rebuild it)"
        elif not _ccore.usable():
            REASON = "a subinterpreter runs the Python path"  # the core's state is process-wide
        else:
            CORE, REASON = _ccore, "compiled core"
#: ``"c"`` or ``"python"``: exported as ``async_trace.implementation``.
IMPLEMENTATION: Final[Literal["c", "python"]] = "c" if CORE is not None else "python"
