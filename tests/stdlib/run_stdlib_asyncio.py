"""CPython's own asyncio test suite, without and with async_trace: the results must match.

    python tests/stdlib/run_stdlib_asyncio.py [--python PATH] [--jobs 2] [--timeout 900]

Runs ``PATH -m test test_asyncio`` twice: plain, then with this directory on PYTHONPATH so
that its ``sitecustomize.py`` imports async_trace (tracing on) in every process the test runner
starts. Prints both results side by side and exits non-zero if the traced run has any failure
or error that the plain run does not, or if it hangs, or if tracing was not on in its workers.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


@dataclass
class Result:
    label: str
    returncode: int
    seconds: float
    tests: int = 0
    failures: set[str] = field(default_factory=set)
    errors: set[str] = field(default_factory=set)
    skipped: int = 0
    timed_out: bool = False
    summary: str = ""


def parse_junit(path: Path, result: Result) -> None:
    if not path.exists() or path.stat().st_size == 0:
        return
    root = ET.parse(path).getroot()
    for case in root.iter("testcase"):
        result.tests += 1
        name = f"{case.get('classname', '')}.{case.get('name', '')}"
        if case.find("failure") is not None:
            result.failures.add(name)
        if case.find("error") is not None:
            result.errors.add(name)
        if case.find("skipped") is not None:
            result.skipped += 1


def run(python: str, label: str, traced: bool, jobs: int, timeout: int, markers: Path) -> Result:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ASYNC_TRACE_MARKER_DIR")}
    if traced:
        env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(ROOT)])
        env["ASYNC_TRACE_MARKER_DIR"] = str(markers)
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "junit.xml"
        cmd = [
            python,
            "-m",
            "test",
            "test_asyncio",
            f"-j{jobs}",
            "--timeout",
            str(timeout // 2),
            "--junit-xml",
            str(junit),
        ]
        started = time.monotonic()
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=tmp)
            out, code, timed_out = proc.stdout + proc.stderr, proc.returncode, False
        except subprocess.TimeoutExpired as exc:
            out = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            code, timed_out = -1, True
        result = Result(label, code, time.monotonic() - started, timed_out=timed_out)
        parse_junit(junit, result)
    tail = [line for line in out.splitlines() if line.strip()][-12:]
    result.summary = "\n".join("    " + line for line in tail)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--python", default=sys.executable, help="interpreter to test (default: this one)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=int, default=1200, help="seconds for each whole run")
    args = parser.parse_args()
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        # Started in the background by a non-interactive shell (`cmd &`, nohup): SIGINT is
        # ignored, and the suite's children would inherit that; then test_runners'
        # interrupt_main() tests hang until the timeout, growing to gigabytes (3.11-3.13).
        # Children get the default disposition back (exec resets a handled signal).
        signal.signal(signal.SIGINT, signal.default_int_handler)
    version = subprocess.run(
        [args.python, "-c", "import sys; print(sys.version.split()[0])"], capture_output=True, text=True, check=True
    ).stdout.strip()
    with tempfile.TemporaryDirectory() as markers_dir:
        markers = Path(markers_dir)
        plain = run(args.python, "plain", False, args.jobs, args.timeout, markers)
        traced = run(args.python, "async_trace", True, args.jobs, args.timeout, markers)
        traced_processes = len(list(markers.iterdir()))

    print(f"CPython {version}: test_asyncio without and with async_trace")
    print(f"{'':<22}{'plain':>12}{'async_trace':>14}")
    for label, a, b in [
        ("exit status", plain.returncode, traced.returncode),
        ("test cases run", plain.tests, traced.tests),
        ("failures", len(plain.failures), len(traced.failures)),
        ("errors", len(plain.errors), len(traced.errors)),
        ("skipped", plain.skipped, traced.skipped),
        ("hung (timed out)", plain.timed_out, traced.timed_out),
        ("seconds", round(plain.seconds), round(traced.seconds)),
    ]:
        print(f"{label:<22}{a!s:>12}{b!s:>14}")
    print(f"{'traced processes':<22}{'':>12}{traced_processes:>14}")
    new_fail = sorted((traced.failures | traced.errors) - (plain.failures | plain.errors))
    gone = sorted((plain.failures | plain.errors) - (traced.failures | traced.errors))
    for title, names in [("failing only with async_trace", new_fail), ("failing only without", gone)]:
        if names:
            print(f"{title}:")
            for name in names:
                print(f"    {name}")
    ok = not new_fail and not traced.timed_out and traced_processes > 0 and traced.tests > 0
    if traced.returncode != plain.returncode and not new_fail:
        print("note: exit statuses differ with no test-level difference; runner output:")
        print(plain.summary)
        print(traced.summary)
        ok = False
    print("RESULT:", "same results with and without tracing" if ok else "DIFFERENT")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
