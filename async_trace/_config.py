"""The settings: one object, read by every part of the package, written by ``enable_tracing()``.

As structlog keeps one ``_Configuration``: every option of ``enable_tracing()``
and of the command line lives in :data:`settings`, validated where it is set
(:mod:`._api`, the command line), read here by name. The hot path binds
:data:`settings` as a module global and reads one attribute.
"""

from __future__ import annotations

from typing import Final

from ._types import LIBRARY_FRAMES, STYLES, LibraryFrames, Style

__all__: list[str] = []

DEFAULT_MAX_FRAMES: Final = 64
DEFAULT_MAX_DEPTH: Final = 256


class Settings:
    """What ``enable_tracing()`` and ``python -m async_trace`` set (module-level singleton ``settings``)."""

    __slots__ = (
        "eager_notes",
        "epoch",
        "in_app_exclude",
        "in_app_include",
        "library_frames",
        "max_depth",
        "max_frames",
        "note_style",
        "record_origins",
    )

    def __init__(self) -> None:
        #: Frames kept per hop at capture time.
        self.max_frames = DEFAULT_MAX_FRAMES
        #: Hops kept per chain at capture time.
        self.max_depth = DEFAULT_MAX_DEPTH
        #: Bumped by every ``disable_tracing()``. A chain whose root was made in the
        #: current epoch was made while tracing has stayed on since, so a task holding
        #: one of its nodes was created while tracing was on.
        self.epoch = 0
        #: The style of exception notes and loop-report entries (``python -m async_trace --style``).
        self.note_style: Style = "traceback"
        #: Add the note as the exception leaves its task, not only when printed.
        self.eager_notes = False
        #: 3.12+: record origins as exceptions unwind (the ``sys.monitoring`` hook);
        #: off, they are found when printed, and raising costs nothing.
        self.record_origins = True
        #: How notes show library frames.
        self.library_frames: LibraryFrames = "collapse"
        #: Top-level package names whose frames are the program's own / a library's (see :mod:`._inapp`).
        self.in_app_include: frozenset[str] = frozenset()
        self.in_app_exclude: frozenset[str] = frozenset()


settings: Final = Settings()


def new_epoch() -> None:
    """Start a new tracing epoch (``disable_tracing()``): tasks made from now until the next enable are untraced."""
    settings.epoch += 1


def check_style(style: object) -> None:
    """``ValueError`` unless ``style`` is one of :data:`._types.STYLES`."""
    if style not in STYLES:
        raise ValueError(f"style must be one of {', '.join(map(repr, STYLES))}, not {style!r}")


def check_library_frames(library_frames: object) -> None:
    """``ValueError`` unless ``library_frames`` is one of :data:`._types.LIBRARY_FRAMES`."""
    if library_frames not in LIBRARY_FRAMES:
        raise ValueError(
            f"library_frames must be one of {', '.join(map(repr, LIBRARY_FRAMES))}, not {library_frames!r}"
        )
