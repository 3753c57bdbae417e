"""Installing and restoring hooks: one skeleton for every set of patched attributes.

A :class:`HookSet` names the attributes one part of the library replaces
(the tracing wrappers of :mod:`._capture`, the display hooks of
:mod:`._display`, ...) and what to run when it is switched on or off.
:func:`enable` and :func:`disable` go over every registered set, in order
(off in reverse); the order is one list, ``_api.HOOK_SETS``. Patches are recorded and undone exactly; if someone
patched over us, our wrapper stays in their chain, and its set's ``on``/``off``
callbacks make it a pass-through until tracing is enabled again.

Modules patched only once imported (uvloop's ``Loop``) are watched by one
import hook: when such a module is imported after us, every active set that
watches it installs again, and its ``imported`` callbacks run.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import sys
import threading
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any, Final

from ._failsafe import warn_internal

__all__: list[str] = []

#: Makes the wrapper of one original.
Maker = Callable[[Callable[..., Any]], Callable[..., Any]]
#: ``(owner, attribute name, maker)``: one attribute to replace.
Target = tuple[Any, str, Maker]

#: Serialises enable/disable and installs after a watched import (re-entrant: callbacks may install).
_lock: Final = threading.RLock()


class _Patch:
    __slots__ = ("had_own", "name", "original", "owner", "wrapper")

    def __init__(self, owner: Any, name: str, wrapper: Callable[..., Any]) -> None:
        self.owner = owner
        self.name = name
        self.had_own = name in vars(owner)
        self.original = vars(owner)[name] if self.had_own else None
        self.wrapper = wrapper


#: One wrapper per original, so that names bound to the same function
#: (``asyncio.run_coroutine_threadsafe`` and ``asyncio.tasks.…``) stay one.
_wrappers: dict[int, tuple[Callable[..., Any], Callable[..., Any]]] = {}


def _wrapper_for(original: Callable[..., Any], make: Maker) -> Callable[..., Any]:
    cached = _wrappers.get(id(original))
    if cached is not None and cached[0] is original:
        return cached[1]
    wrapper = make(original)
    _wrappers[id(original)] = (original, wrapper)
    return wrapper


def _in_chain(obj: Any, wrapper: Callable[..., Any]) -> bool:
    # Patches made with functools.wraps keep the patched object in __wrapped__.
    for _ in range(16):
        if obj is wrapper:
            return True
        obj = getattr(obj, "__wrapped__", None)
        if obj is None:
            return False
    return False


class Patcher:
    """The attributes one hook set replaces, and how to put each back exactly."""

    __slots__ = ("patches",)

    def __init__(self) -> None:
        #: Every wrapper installed and not yet removed, keyed by (id(owner), name).
        self.patches: dict[tuple[int, str], _Patch] = {}

    def install(self, owner: Any, name: str, make: Maker) -> None:
        key = (id(owner), name)
        patch = self.patches.get(key)
        if patch is not None:
            current = vars(owner).get(name)
            if current is patch.wrapper or (current is not None and _in_chain(current, patch.wrapper)):
                return  # still in place, or inside someone else's patch: the set's flag re-arms it
            del self.patches[key]  # we were dropped from the chain: wrap what is there now
        current = getattr(owner, name)
        if isinstance(vars(owner).get(name), classmethod):
            current = vars(owner)[name]  # the classmethod itself: a bound method is new at each getattr
        if getattr(current, "__async_trace_wrapper__", False):
            # One of our wrappers, put back by someone (a mock.patch exiting):
            # register it again instead of wrapping it twice. (A classmethod's
            # own __wrapped__ is read-only: its original is kept apart.)
            original = getattr(current, "__async_trace_original__", None) or current.__wrapped__
            patch = _Patch(owner, name, current)
            patch.had_own = not any(vars(base).get(name) is original for base in getattr(owner, "__mro__", ())[1:])
            patch.original = original if patch.had_own else None
            self.patches[key] = patch
            return
        patch = _Patch(owner, name, _wrapper_for(current, make))
        self.patches[key] = patch
        setattr(owner, name, patch.wrapper)

    def uninstall_all(self) -> None:
        for key, patch in list(self.patches.items()):
            if vars(patch.owner).get(patch.name) is patch.wrapper:
                if patch.had_own:
                    setattr(patch.owner, patch.name, patch.original)
                else:
                    delattr(patch.owner, patch.name)
                del self.patches[key]
            # else: someone patched over us; leave their patch (and our
            # pass-through wrapper inside it) in place.


class HookSet:
    """Attributes replaced together, with what runs as the set is switched on and off.

    ``targets()`` lists the attributes to replace now (it may name more once a
    watched module is imported); ``on()`` runs after they are installed (it
    arms the wrappers' flag), ``off()`` before they are restored (it disarms
    it); ``imported()`` runs after a watched module was imported while the set
    was on.
    """

    __slots__ = ("active", "imported", "name", "off", "on", "patcher", "targets", "watch")

    def __init__(
        self,
        name: str,
        targets: Callable[[], list[Target]],
        *,
        on: Callable[[], None],
        off: Callable[[], None],
        watch: tuple[str, ...] = (),
        imported: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self.targets = targets
        self.on = on
        self.off = off
        self.watch = watch
        self.imported = imported
        self.patcher = Patcher()
        self.active = False

    def install(self) -> None:
        with _lock:
            for owner, name, make in self.targets():
                self.patcher.install(owner, name, make)
            self.on()
            self.active = True
            if self.watch:
                _ImportHook.install()

    def uninstall(self) -> None:
        with _lock:
            self.active = False
            self.off()
            self.patcher.uninstall_all()

    def patched_attributes(self) -> list[tuple[Any, str]]:
        """The (owner, name) pairs the set replaces now (for tests of exact restore)."""
        return [(owner, name) for owner, name, _ in self.targets()]


#: Every hook set, in the order they are switched on (``_api.HOOK_SETS``, then the command line's).
_sets: list[HookSet] = []
#: What runs after every set is off (caches of the program's code objects, emptied by their owners).
_disable_callbacks: list[Callable[[], None]] = []
#: Whether tracing is on: between :func:`enable` and :func:`disable`.
_enabled = False

#: Observers of what the capture hooks create, each called with the new task (``task_watchers``),
#: or with an executor call's future and node (``call_watchers``): 3.10/3.11 eager notes subscribe
#: here (see :mod:`._record_callbacks`). Mutated in place, never replaced: the hot path tests the
#: list it imported for emptiness.
task_watchers: Final[list[Callable[[Any], None]]] = []
call_watchers: Final[list[Callable[[Any, Any], None]]] = []


def register(hook_set: HookSet) -> HookSet:
    """Add ``hook_set`` to what :func:`enable` and :func:`disable` switch (once)."""
    if hook_set not in _sets:
        _sets.append(hook_set)
    return hook_set


def on_disable(callback: Callable[[], None]) -> None:
    """Run ``callback`` whenever tracing is disabled, after every set is off (a cache's owner empties it)."""
    if callback not in _disable_callbacks:
        _disable_callbacks.append(callback)


def tracing_enabled() -> bool:
    """Whether tracing is on (``enable_tracing()`` ran after the last ``disable_tracing()``)."""
    return _enabled


def enable() -> None:
    """Switch every registered hook set on, in order; idempotent, thread-safe."""
    global _enabled
    with _lock:
        _enabled = True
        for hook_set in _sets:
            hook_set.install()


def disable() -> None:
    """Switch every registered hook set off, in reverse order, restoring what each replaced exactly."""
    global _enabled
    with _lock:
        _enabled = False
        for hook_set in reversed(_sets):
            hook_set.uninstall()
        _ImportHook.uninstall()
        for callback in _disable_callbacks:
            callback()


def _after_import(name: str) -> None:
    with _lock:
        for hook_set in _sets:
            if hook_set.active and name in hook_set.watch:
                hook_set.install()
                if hook_set.imported is not None:
                    hook_set.imported()


def _watched() -> set[str]:
    return {name for hook_set in _sets for name in hook_set.watch}


class _ImportHook(importlib.abc.MetaPathFinder):
    """Runs :func:`_after_import` right after a watched module is imported (for modules imported after us)."""

    _instance: _ImportHook | None = None

    @classmethod
    def install(cls) -> None:
        if cls._instance is not None or not (_watched() - set(sys.modules)):
            return
        cls._instance = cls()
        sys.meta_path.insert(0, cls._instance)

    @classmethod
    def uninstall(cls) -> None:
        if cls._instance is not None:
            with contextlib.suppress(ValueError):
                sys.meta_path.remove(cls._instance)
            cls._instance = None

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in _watched() or fullname in sys.modules:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        exec_module = getattr(loader, "exec_module", None)
        if exec_module is None:
            return None

        def exec_and_patch(module: ModuleType) -> None:
            exec_module(module)
            try:
                _after_import(fullname)
            except Exception as exc:  # noqa: BLE001
                warn_internal(exc, f"patching {fullname}")

        try:
            loader.exec_module = exec_and_patch  # type: ignore[union-attr,method-assign]
        except Exception:  # noqa: BLE001 - a read-only loader: leave the module untraced
            return None
        if not (_watched() - set(sys.modules) - {fullname}):
            _ImportHook.uninstall()  # nothing else to wait for
        return spec
