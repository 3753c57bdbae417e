"""``python -m async_trace``: run a script or module with async origins on every crash.

Like ``python -m cProfile`` or ``python -m pdb``::

    python -m async_trace [--style traceback|arrows] [--dump-signal SIG] script.py [args ...]
    python -m async_trace [--style traceback|arrows] [--dump-signal SIG] -m package.module [args ...]
    python -m async_trace ps|pstree PID [--json] [--timeout SECONDS]      # Python 3.14+

``ps`` and ``pstree`` read another process's tasks (see :mod:`async_trace._pstree`).
They are commands only as the first argument: a script named ``ps`` runs as
``python -m async_trace ./ps`` or ``python -m async_trace -- ps``.

Tracing is on before the first line of the program runs, and exception notes
are eager (see :func:`async_trace._exceptions.configure`). The program sees the
``sys.argv`` and ``sys.path[0]`` that ``python script.py`` / ``python -m
module`` would give it; its output, and its exit status, are its own. The
Python processes it starts through ``multiprocessing`` get the same options
(see :mod:`async_trace._children`).
"""

from __future__ import annotations

import argparse
import builtins
import importlib.machinery
import io
import os
import runpy
import sys
import types
from collections.abc import Sequence
from types import TracebackType
from typing import Any, NoReturn

from . import _children, _pstree
from ._children import CLIOptions
from ._misuse import signal_number
from ._pstree import COMMANDS
from ._stall_env import parse_duration
from ._types import STYLES
from ._version import __version__

__all__ = ["build_parser", "main"]

PROG = "python -m async_trace"


def build_parser() -> argparse.ArgumentParser:
    """The command line's options (the program and its arguments are split off before parsing)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        usage=(
            f"{PROG} [options] (script.py | -m module) [args ...]\n"
            f"       {PROG} (ps | pstree) PID [--json] [--timeout SECONDS]"
        ),
        description=(
            "Run a Python program with async-trace on from its first line: an exception raised\n"
            "in an asyncio task or executor function is printed with the chain of task creation\n"
            "points that led to it, and so are the tasks the event loop reports."
        ),
        epilog=(
            "examples:\n"
            f"  {PROG} app.py --port 8080\n"
            f"  {PROG} --style arrows -m mypackage.server\n"
            f"  {PROG} --dump-signal USR1 app.py      # then: kill -USR1 <pid>\n"
            f"  {PROG} --stall-threshold 100ms app.py # log what blocks the event loop\n"
            f"  {PROG} pstree 1234                    # the task trees of process 1234 (3.14+)\n"
            f"  {PROG} ps 1234 --json                 # its tasks as a table, here as JSON\n"
            "\n"
            "Options go before the program; everything after it is passed to it. A script named\n"
            "ps or pstree runs as ./ps (or after --)."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument(
        "--style",
        choices=STYLES,
        default="traceback",
        help=(
            "how an exception's async origin is printed: 'traceback' (File \"...\", line N lines, "
            "most recent call last; the default) or 'arrows' (innermost first)"
        ),
    )
    parser.add_argument(
        "--dump-signal",
        metavar="SIG",
        type=_signal_number,
        help=(
            "print the task tree of every running event loop to stderr when the program receives "
            "SIG (a name such as USR1 or SIGUSR1, or a number; POSIX only)"
        ),
    )
    parser.add_argument(
        "--summary",
        action="store_true",
        help="with --dump-signal: print each loop's live tasks grouped by creation and suspended site, with counts",
    )
    parser.add_argument(
        "--no-record-origins",
        dest="record_origins",
        action="store_false",
        help=(
            "3.12+: do not record each exception's task as it unwinds (no sys.monitoring hook: raising "
            "and catching costs what it does untraced); origins are found when printed, and notes are "
            "not added eagerly"
        ),
    )
    parser.add_argument(
        "--stall-threshold",
        metavar="DURATION",
        type=_duration,
        help=(
            "watch every event loop for stalls of DURATION or more (100ms, 0.25s, 1) and log each to the "
            "async_trace.stall logger (stderr unless logging is configured), naming the blocked task's chain"
        ),
    )
    parser.add_argument("--version", action="version", version=f"async-trace {__version__}")
    return parser


def _signal_number(text: str) -> int:
    """``USR1``, ``SIGUSR1`` or ``10`` -> the signal number, as ``dump_tasks_on_signal()`` reads it."""
    number = signal_number("--dump-signal", text)
    if isinstance(number, Exception):
        message = str(number).removeprefix("--dump-signal(): ")
        raise argparse.ArgumentTypeError(message)
    return number


def _duration(text: str) -> float:
    """``100ms`` -> 0.1 (argparse reports an ArgumentTypeError as invalid)."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _value_options(parser: argparse.ArgumentParser) -> frozenset[str]:
    """Option strings that take a value, so that the value is not taken for the script."""
    return frozenset(
        option
        for action in parser._actions  # argparse has no public list of its actions
        if action.nargs != 0
        for option in action.option_strings
    )


def _split(parser: argparse.ArgumentParser, argv: Sequence[str]) -> tuple[list[str], str | None, str | None, list[str]]:
    """``(our options, script, module, program arguments)``: options end at the program."""
    takes_value = _value_options(parser)
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            if i + 1 < len(argv):
                return list(argv[:i]), argv[i + 1], None, list(argv[i + 2 :])
            break
        if arg == "-m":
            if i + 1 < len(argv):
                return list(argv[:i]), None, argv[i + 1], list(argv[i + 2 :])
            parser.error("argument -m: expected a module name")
        if arg.startswith("-m") and not arg.startswith("--"):  # -mpkg.mod, as python accepts
            return list(argv[:i]), None, arg[2:], list(argv[i + 1 :])
        if not arg.startswith("-") or arg == "-":
            return list(argv[:i]), arg, None, list(argv[i + 1 :])
        i += 2 if arg in takes_value else 1
    return list(argv), None, None, []


def _apply(options: argparse.Namespace) -> None:
    """Configure the library from the parsed options, before the program starts."""
    if options.summary and options.dump_signal is None:
        _fail("--summary needs --dump-signal", 2)
    cli_options: CLIOptions = {
        "style": options.style,
        "dump_signal": options.dump_signal,
        "summary": options.summary,
        "record_origins": options.record_origins,
        "stall_threshold": options.stall_threshold,
    }
    try:
        _children.apply(cli_options)
    except (ValueError, OSError) as exc:
        _fail(f"--dump-signal: {exc}", 2)
    _children.follow_children(cli_options)


def _program_tb(tb: TracebackType | None) -> TracebackType | None:
    """The traceback without its leading frames of this module and runpy: from the program's first."""
    while tb is not None and (tb.tb_frame.f_globals is globals() or tb.tb_frame.f_globals is vars(runpy)):
        tb = tb.tb_next
    return tb


def _report_from_program(exc: BaseException) -> None:
    """Have the top level print ``exc`` (on its way out of runpy) from the program's first frame, as Python would.

    The interpreter reports an exception leaving ``python -m`` through
    ``sys.excepthook`` with every frame it passed: runpy's and this module's
    above the program's. The hook installed now (over whatever hook the
    program left) gets the traceback without those, for ``exc`` alone.
    """
    previous = sys.excepthook
    ours = os.path.normcase(os.path.abspath(__file__))

    def _is_ours(tb: TracebackType) -> bool:
        frame = tb.tb_frame
        return (
            frame.f_globals is globals()
            or frame.f_globals is vars(runpy)
            or os.path.normcase(os.path.abspath(frame.f_code.co_filename)) == ours
        )

    def excepthook(exc_type: type[BaseException], value: BaseException, tb: TracebackType | None) -> Any:
        sys.excepthook = previous
        if value is exc:
            while tb is not None and _is_ours(tb):
                tb = tb.tb_next
            value.__traceback__ = tb
            sys.last_traceback = tb
        return previous(exc_type, value, tb)

    sys.excepthook = excepthook


def _fail(message: str, status: int) -> NoReturn:
    sys.stderr.write(f"{PROG}: {message}\n")
    raise SystemExit(status)


def _run(script: str | None, module: str | None, args: list[str]) -> None:
    if module is not None:
        # As `python -m module`: sys.path[0] stays the working directory,
        # sys.argv[0] becomes the module's file (run_module sets it).
        sys.argv[:] = [module, *args]
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        return
    assert script is not None
    sys.argv[:] = [script, *args]
    if not os.path.isfile(script):
        # A directory or zip file with a __main__.py: run_path puts it first on sys.path.
        del sys.path[0]
        runpy.run_path(script, run_name="__main__")
        return
    # As `python script.py` does: the script's directory first on sys.path,
    # an absolute __file__ and code filename (so that traces name it in
    # full), and a fresh __main__ module that stays in sys.modules.
    path = os.path.abspath(script)
    sys.path[0] = os.path.dirname(os.path.realpath(script))
    with io.open_code(path) as f:
        source = f.read()
    code = compile(source, path, "exec", dont_inherit=True)
    main_module = types.ModuleType("__main__")
    main_module.__dict__.update(
        __file__=path,
        __cached__=None,
        __loader__=importlib.machinery.SourceFileLoader("__main__", path),
        __builtins__=builtins,
    )
    sys.modules["__main__"] = main_module
    exec(code, main_module.__dict__)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); return the exit status.

    The program's own ``SystemExit`` propagates. Any other exception it lets
    out is printed by ``sys.excepthook`` (with its async origin) from the
    program's first frame on, and the status is 1, as for ``python script.py``.
    """
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in COMMANDS:
        return _pstree.main(argv[0], argv[1:])
    parser = build_parser()
    ours, script, module, args = _split(parser, argv)
    options = parser.parse_args(ours)
    if script is None and module is None:
        parser.error("a script or -m module is required")
    _apply(options)
    try:
        _run(script, module, args)
    except SystemExit:
        raise
    except KeyboardInterrupt as exc:
        # Python's own handling (the traceback, then exit by SIGINT after the
        # program's atexit handlers), which needs it to leave runpy; the
        # traceback shows the program's frames only, as for `python script.py`.
        _report_from_program(exc)
        raise
    except BaseException as exc:  # noqa: BLE001 - the program's crash, reported as Python would
        tb = _program_tb(exc.__traceback__)
        if tb is None:
            # Nothing of the program ran: the script or module could not be found.
            if module is not None and isinstance(exc, ImportError):
                _fail(str(exc), 1)
            if script is not None and isinstance(exc, OSError):
                _fail(f"can't open file {script!r}: [Errno {exc.errno}] {exc.strerror}", 2)
        exc = exc.with_traceback(tb)
        sys.last_type, sys.last_value, sys.last_traceback = type(exc), exc, tb
        if sys.version_info >= (3, 12):
            sys.last_exc = exc
        sys.excepthook(type(exc), exc, tb)
        return 1
    return 0


if __name__ == "__main__":
    # Run main() from the module async_trace.__main__, not from this __main__,
    # which the program's own __main__ module replaces in sys.modules (as pdb does).
    from async_trace.__main__ import main as _main

    sys.exit(_main())
