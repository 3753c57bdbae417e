"""Which frames are the program's own (``in_app``) and which a library's, and a library frame's short path.

A frame is a library frame when its file is in the standard library
(sysconfig's ``stdlib`` / ``platstdlib``, and the install's
``lib/pythonX.Y``), in an installed package (a path component
``site-packages`` or ``dist-packages``, and sysconfig's ``purelib`` /
``platlib``), or frozen (``<frozen ...>``); every other file is the
program's own. ``enable_tracing(in_app_include=..., in_app_exclude=...)``
overrides this per top-level package name (:func:`configure`).

Decided once per file name and cached: this runs when a trace is collected
(once per frame shown), never when a task is created.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from collections.abc import Iterable
from typing import Final

__all__: list[str] = []


def _library_dirs() -> tuple[str, ...]:
    dirs: set[str] = set()
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        path = sysconfig.get_paths().get(key)
        if path:
            dirs.add(os.path.normcase(os.path.abspath(path)) + os.sep)
    for prefix in {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}:
        lib = os.path.join(prefix, "lib", f"python{sys.version_info[0]}.{sys.version_info[1]}")
        dirs.add(os.path.normcase(os.path.abspath(lib)) + os.sep)
    # Longest first: a site-packages inside the stdlib directory wins over it.
    return tuple(sorted(dirs, key=len, reverse=True))


LIBRARY_DIRS: Final = _library_dirs()
#: Bound at import, as in ``_collect``: blockbuster's patch must not break classifying a frame on the loop.
_abspath: Final = os.path.abspath
_MARKS: Final = frozenset({"site-packages", "dist-packages"})

#: What one file name was classified as: ``(in_app, package, package-relative path)``;
#: for the program's own files ``package`` and the path are ``None``.
Kind = tuple[bool, "str | None", "str | None"]

_include: frozenset[str] = frozenset()
_exclude: frozenset[str] = frozenset()
_cache: dict[str, Kind] = {}
#: The cache itself, for callers that inline the hit (it is cleared, never replaced).
in_app_cache: Final = _cache
_CACHE_MAX: Final = 4096
_APP: Final[Kind] = (True, None, None)


def _names(value: Iterable[str] | None, what: str) -> frozenset[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        raise ValueError(f"{what} must be a list of top-level package names, not a string: {value!r}")
    names = frozenset(value)
    for name in names:
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"{what} must hold top-level package names (identifiers), got {name!r}")
    return names


def configure(include: Iterable[str] | None, exclude: Iterable[str] | None) -> None:
    """Set the overrides (``None`` keeps the current one); ``ValueError`` for a bad or conflicting name."""
    global _include, _exclude
    new_include = _names(include, "in_app_include")
    new_exclude = _names(exclude, "in_app_exclude")
    inc = _include if new_include is None else new_include
    exc = _exclude if new_exclude is None else new_exclude
    both = inc & exc
    if both:
        raise ValueError(f"in both in_app_include and in_app_exclude: {', '.join(sorted(both))}")
    _include, _exclude = inc, exc
    _cache.clear()


def _top(relative: str) -> str:
    """The top-level package of a path relative to an import root: ``starlette/routing.py`` -> ``starlette``."""
    first = relative.split("/", 1)[0]
    return first.removesuffix(".py") if "/" not in relative else first


def classify(filename: str) -> Kind:
    """``(in_app, package, package-relative path)`` of ``filename``, cached."""
    found = _cache.get(filename)
    if found is None:
        found = _classify(filename)
        if len(_cache) >= _CACHE_MAX:
            _cache.clear()
        _cache[filename] = found
    return found


def _classify(filename: str) -> Kind:
    if filename.startswith("<frozen "):
        module = filename[len("<frozen ") :].rstrip(">")
        package = module.split(".", 1)[0]
        return (package in _include, package, filename)
    if filename.startswith("<"):
        return _APP  # <string>, <stdin>, <doctest ...>: code the program made
    path = os.path.normcase(_abspath(filename))
    parts = path.replace(os.sep, "/").split("/")
    relative: str | None = None
    # The last site-packages / dist-packages component: the import root.
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] in _MARKS:
            relative = "/".join(parts[i + 1 :])
            break
    if relative is None:
        for root in LIBRARY_DIRS:
            if path.startswith(root):
                relative = path[len(root) :].replace(os.sep, "/")
                break
    if relative is not None:
        package = _top(relative)
        return (package in _include, package, relative)
    if _exclude:
        # A vendored library inside the program's tree: the innermost directory
        # (or module file) named after an excluded package.
        for i in range(len(parts) - 1, -1, -1):
            name = parts[i] if i < len(parts) - 1 else parts[i].removesuffix(".py")
            if name in _exclude:
                return (False, name, "/".join(parts[i:]))
    return _APP


def in_app(filename: str | None) -> bool:
    """Whether a frame of ``filename`` is the program's own; a frame without a file (root, marker): ``True``."""
    if filename is None:
        return True
    found = _cache.get(filename)
    return (found if found is not None else classify(filename))[0]
