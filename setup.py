"""The optional compiled core: ``async_trace._ccore``, built where a C compiler and Python's headers are found.

Everything else is in pyproject.toml. The core is never required: with no
compiler, on PyPy or another implementation, on a free-threaded build, or with
``ASYNC_TRACE_NO_EXTENSIONS=1`` set at build time, the package installs without
it and runs on its pure-Python path (``python -m async_trace --version`` says
which path is in use).
"""

from __future__ import annotations

import os
import platform
import sys
import sysconfig
from typing import Any

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


def _wanted() -> bool:
    if os.environ.get("ASYNC_TRACE_NO_EXTENSIONS", "") not in ("", "0"):
        return False
    if platform.python_implementation() != "CPython":
        return False
    # A module that does not declare itself safe without the GIL re-enables it for the whole process.
    return not sysconfig.get_config_var("Py_GIL_DISABLED")


class OptionalBuildExt(build_ext):
    """Build the core if possible; never fail the install for it."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - no compiler, no headers: the Python path remains
            self._skip(exc)

    def build_extension(self, ext: Any) -> None:
        try:
            super().build_extension(ext)
            return
        except Exception as exc:  # noqa: BLE001 - a compiler error: retried with the public C API only
            first = exc
        # The core reads interpreter frames through CPython's internal headers where they are
        # installed; a Python whose internal headers do not compile gets the frame-object code.
        if ("ASYNC_TRACE_PUBLIC_API_ONLY", "1") in ext.define_macros:
            self._skip(first)
            return
        ext.define_macros = [*ext.define_macros, ("ASYNC_TRACE_PUBLIC_API_ONLY", "1")]
        print(
            f"async-trace: the compiled core did not build with CPython's internal headers ({first}); "
            "retrying with the public C API only.",
            file=sys.stderr,
        )
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001 - a compiler error: the Python path remains
            self._skip(exc)

    @staticmethod
    def _skip(exc: BaseException) -> None:
        print(
            f"async-trace: the compiled core was not built ({type(exc).__name__}: {exc}); "
            "the pure-Python path will be used.",
            file=sys.stderr,
        )


# ASYNC_TRACE_PUBLIC_API_ONLY=1 at build time: the frame-object code even where internal headers exist (CI tests it).
_public_only = os.environ.get("ASYNC_TRACE_PUBLIC_API_ONLY", "") not in ("", "0")
_macros = [("ASYNC_TRACE_PUBLIC_API_ONLY", "1")] if _public_only else []
extensions = [Extension("async_trace._ccore", ["async_trace/_ccore.c"], define_macros=_macros)] if _wanted() else []
setup(ext_modules=extensions, cmdclass={"build_ext": OptionalBuildExt})
