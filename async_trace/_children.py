"""Under ``python -m async_trace``: the Python processes the program starts are traced too.

Only the command line calls :func:`follow_children`; a program that merely
imports ``async_trace`` gets none of this. What it arranges, as one hook set
(so ``disable_tracing()`` restores every attribute and ``enable_tracing()``
puts it back):

- ``multiprocessing`` children started by *spawn* or *forkserver* (uvicorn's
  ``--workers`` supervisor, ``ProcessPoolExecutor``): the parent's
  ``multiprocessing.spawn.get_preparation_data`` adds one entry whose
  unpickling, in the child, imports ``async_trace`` and applies the command
  line's options (:func:`child_setup`), before ``prepare()`` imports the
  program's main module and before the target runs. ``prepare()`` ignores keys
  it does not know. *fork* children (and ``os.fork``: gunicorn's workers)
  inherit everything.
- A Python child that cannot be traced, because it is started with
  ``subprocess`` (or ``asyncio``'s subprocesses, which use it), ``os.exec*``
  or ``os.posix_spawn*`` instead of ``multiprocessing``, gets one warning per
  program and way of starting it on stderr, naming it. A child that runs ``-m async_trace`` itself
  is traced and not warned about.
- The program installing its own handler for the ``--dump-signal`` signal
  (gunicorn uses USR1, USR2, HUP, TTIN, TTOU and WINCH; uvicorn's supervisor
  most of these too) gets one warning: the dump no longer comes from that
  process. The program's handler is installed all the same.
"""

from __future__ import annotations

import functools
import itertools
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any, Final, TypedDict

from . import _exceptions
from ._compat import HAS_MONITORING
from ._dump import dump_tasks_on_signal, is_dump_handler
from ._hooks import HookSet, Target, register
from ._stall_env import start_default_watch
from ._types import Style

__all__ = ["CLIOptions", "child_setup", "follow_children"]

PROG: Final = "python -m async_trace"


class CLIOptions(TypedDict):
    """What the command line configures, handed to each child as a literal."""

    style: Style
    dump_signal: int | None
    summary: bool
    #: ``--no-record-origins`` gives ``False``: no unwind record, so no eager notes either.
    record_origins: bool
    #: ``--stall-threshold``: seconds; a stall watchdog on every loop (``None``: none).
    stall_threshold: float | None


#: The options of this process's command line; ``None``: not run under it.
_options: CLIOptions | None = None
#: The hooks' wrappers pass through while this is false (tracing disabled).
_active = False
#: (program, how it was started) already warned about, and whether the dump signal's warning was given.
_warned_programs: set[tuple[str, str]] = set()
_warned_signal = False

#: The preparation data's key; its value's unpickling sets the child up.
_KEY: Final = "async_trace"

# Run by exec() in the child while it unpickles the preparation data. The
# child's sys.path is still the interpreter's default there (prepare() sets
# the parent's afterwards), so the parent's copy of the package is the
# fallback. It must never raise: that would kill the child.
_BOOTSTRAP: Final = """\
import sys
try:
    try:
        from async_trace._children import child_setup
    except ImportError:
        sys.path.insert(0, {home!r})
        try:
            from async_trace._children import child_setup
        finally:
            sys.path.remove({home!r})
    child_setup({options!r})
except Exception as exc:
    import os
    sys.stderr.write(
        "python -m async_trace: warning: child process %d (%s) is not traced: %s: %s\\n"
        % (os.getpid(), sys.executable, type(exc).__name__, exc)
    )
"""


class _ChildBootstrap:
    """Pickles as ``exec(<bootstrap>, {})``: unpickling it in the child turns tracing on there."""

    __slots__ = ("source",)

    def __init__(self, options: CLIOptions) -> None:
        home = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        # Plain literals only (a signal number may come as a Signals member, whose repr is not one).
        plain = {
            "style": str(options["style"]),
            "dump_signal": None if options["dump_signal"] is None else int(options["dump_signal"]),
            "summary": bool(options["summary"]),
            "record_origins": bool(options["record_origins"]),
            "stall_threshold": None if options["stall_threshold"] is None else float(options["stall_threshold"]),
        }
        self.source = _BOOTSTRAP.format(home=home, options=plain)

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[str, dict[str, Any]]]:
        return exec, (self.source, {})


def apply(options: CLIOptions) -> None:
    """Configure this process as the command line does: style, eager notes, the dump signal.

    Raises:
        ValueError, OSError: the dump signal cannot be registered.
    """
    record = options["record_origins"]
    # Eager notes where they cost nothing per task (3.12+: the unwind hook); 3.10/3.11 would need a
    # done callback on every task (enable_tracing(eager_notes=True) gives them there).
    _exceptions.configure(style=options["style"], notes_on_exit=record and HAS_MONITORING, record=record)
    threshold = options.get("stall_threshold")  # absent from an older parent's bootstrap
    if threshold is not None:
        start_default_watch(threshold)
    if options["dump_signal"] is not None:
        dump_tasks_on_signal(options["dump_signal"], style=options["style"], summary=options["summary"])


def follow_children(options: CLIOptions) -> None:
    """From now on, hand ``options`` to the child processes (see the module's docstring)."""
    global _options
    _options = options
    register(HOOKS)
    HOOKS.install()


def child_setup(options: CLIOptions) -> None:
    """In a ``multiprocessing`` child of a process run by the command line: the same options, and its children too."""
    try:
        apply(options)
    except (ValueError, OSError) as exc:
        _warn(f"--dump-signal in child process {os.getpid()}: {exc}")
    follow_children(options)


def _warn(message: str) -> None:
    try:
        sys.stderr.write(f"{PROG}: warning: {message}\n")
        sys.stderr.flush()
    except Exception:  # noqa: BLE001 - no stderr (closed, None): nothing to warn on
        pass


# --- multiprocessing ----------------------------------------------------------


def _make_get_preparation_data(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def get_preparation_data(*args: Any, **kwargs: Any) -> Any:
        data = original(*args, **kwargs)
        if _active and _options is not None and isinstance(data, dict):
            data[_KEY] = _ChildBootstrap(_options)
        return data

    return get_preparation_data


# --- children that are not traced ---------------------------------------------

_PYTHON_NAME: Final = re.compile(r"python[0-9.]*[dtw]?(\.exe)?", re.IGNORECASE)


def _is_python(program: str) -> bool:
    """Whether ``program`` (a path or a name on PATH) is a Python interpreter or a Python script."""
    import shutil  # only when a child starts

    path = program if os.sep in program else (shutil.which(program) or program)
    if _PYTHON_NAME.fullmatch(os.path.basename(path)):
        return True
    try:
        if os.path.realpath(path) == os.path.realpath(sys.executable):
            return True
        with open(path, "rb") as f:  # a console script (uvicorn, gunicorn): its #! line
            first = f.readline(256)
    except (OSError, ValueError):
        return False
    return first.startswith(b"#!") and b"python" in first


def _runs_async_trace(argv: list[str]) -> bool:
    return any(pair == ("-m", "async_trace") for pair in itertools.pairwise(argv)) or "-masync_trace" in argv


def _child_started(program: Any, argv: Any, how: str) -> None:
    """A child ``argv`` is about to run ``program`` not through ``multiprocessing``: warn if it is Python."""
    if not _active:
        return
    try:
        args = [os.fsdecode(a) for a in argv] if isinstance(argv, (list, tuple)) else [os.fsdecode(argv)]
        name = os.fsdecode(program) if program is not None else (args[0] if args else "")
        if how == "subprocess" and isinstance(argv, (str, bytes)) and program is None:
            name = shlex.split(args[0])[0] if args[0].strip() else ""
        if not name or (name, how) in _warned_programs or not _is_python(name) or _runs_async_trace(args):
            return
        _warned_programs.add((name, how))
        command = shlex.join(args)
        if len(command) > 200:
            command = command[:197] + "..."
        _warn(
            f"child process not traced: {command} (started with {how}, not multiprocessing); "
            f"run it as '{PROG} ...' to trace it"
        )
    except Exception:  # noqa: BLE001 - never fail the program's own call
        pass


#: Set while subprocess starts a child: its own os.posix_spawn (3.13+) is not a second child.
_in_subprocess = threading.local()


def _make_execute_child(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def _execute_child(self: Any, args: Any, executable: Any, *rest: Any, **kwargs: Any) -> Any:
        # (preexec_fn, close_fds, pass_fds, cwd, env, startupinfo, creationflags, shell, ...), 3.10 to 3.15
        shell = rest[7] if len(rest) > 7 else kwargs.get("shell", False)
        if not shell:
            _child_started(executable, args, "subprocess")
        _in_subprocess.active = True
        try:
            return original(self, args, executable, *rest, **kwargs)
        finally:
            _in_subprocess.active = False

    return _execute_child


def _make_exec(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def exec_(path: Any, args: Any, *rest: Any, **kwargs: Any) -> Any:
        if not getattr(_in_subprocess, "active", False):
            _child_started(path, args, f"os.{original.__name__}")
        return original(path, args, *rest, **kwargs)

    return exec_


# --- the program's own handler for the dump signal ----------------------------


def _make_signal(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def signal_(signalnum: Any, handler: Any) -> Any:
        previous = original(signalnum, handler)
        if _active and _options is not None and not is_dump_handler(handler):
            _handler_replaced(signalnum, sys._getframe(1))
        return previous

    return signal_


def _handler_replaced(signalnum: Any, caller: Any) -> None:
    global _warned_signal
    if _warned_signal or _options is None or _options["dump_signal"] is None:
        return
    try:
        if int(signalnum) != _options["dump_signal"]:
            return
        _warned_signal = True
        name = signal.Signals(int(signalnum)).name
        where = f"{caller.f_code.co_filename}:{caller.f_lineno}"
    except Exception:  # noqa: BLE001 - an odd signal number: nothing to name
        return
    _warn(
        f"process {os.getpid()} set its own handler for {name} (at {where}): "
        f"--dump-signal {name} dumps no longer come from it; choose a signal the program does not use"
    )


# --- the hook set -------------------------------------------------------------


def _targets() -> list[Target]:
    targets: list[Target] = [
        (signal, "signal", _make_signal),
        (subprocess.Popen, "_execute_child", _make_execute_child),
    ]
    execs = ("execv", "execve", "posix_spawn", "posix_spawnp")  # os.execl*, execvp* go through the first two
    targets.extend((os, name, _make_exec) for name in execs if hasattr(os, name))
    spawn = sys.modules.get("multiprocessing.spawn")
    if spawn is not None:
        targets.append((spawn, "get_preparation_data", _make_get_preparation_data))
    return targets


def _on() -> None:
    global _active
    _active = True


def _off() -> None:
    global _active
    _active = False


#: Registered by :func:`follow_children` only: programs not run by the command line are untouched.
HOOKS: Final = HookSet("children", _targets, on=_on, off=_off, watch=("multiprocessing.spawn",))
