"""Benchmarks: async_trace against plain asyncio (and asyncio debug mode), measured in the same run.

    python benchmarks/run.py            # full run (about 10 minutes)
    python benchmarks/run.py --quick    # under two minutes
    python benchmarks/run.py --json out.json --rounds 5 --workloads spawn_flat,memory
    python benchmarks/run.py --workloads server_aiohttp,server_fastapi   # needs the `bench` extra

Every workload runs in a fresh subprocess per contender; contenders alternate round by round
(their order rotates), and each ratio is taken against ``plain`` from the same round. The
table shows medians over rounds. Stdlib only, plus the package itself; the real-server
workloads (benchmarks/servers.py) also need aiohttp, fastapi and uvicorn
(``pip install '.[bench]'`` in a clone) and are skipped, with a line saying so, without them.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import servers

HERE = Path(__file__).resolve().parent
#: ``async_trace`` runs the compiled core where it was built; ``async_trace_py`` the same with
#: ASYNC_TRACE_NO_EXTENSIONS=1 (the pure-Python path), side by side in the same rounds.
CONTENDERS = ["plain", "debug", "async_trace", "async_trace_py"]
TIMED = [
    "spawn_flat",
    "spawn_flat_uvloop",
    "spawn_chain",
    "spawn_deep_stack",
    "executor",
    "process_executor",
    "realistic",
]
#: Timed workloads that need a package the benchmarks do not otherwise need: skipped without it.
NEEDS: dict[str, tuple[str, ...]] = {"spawn_flat_uvloop": ("uvloop",)}
COLLECT = ["collect_d1", "collect_d10", "collect_d100"]
#: What the exception hooks cost: each with tracing on, hooks on against hooks off.
EXCEPTIONS = ["spawn_flat", "raise_in_task", "raise_catch", "raise_catch_notask", "task_fails"]
#: Their contenders; ratios are taken against hooks off, and against plain.
EXCEPTION_CONTENDERS = [
    "plain",
    "async_trace_noexc",
    "async_trace",
    "async_trace_py",
    "async_trace_eager",
    "async_trace_norecord",
]
SERVERS = list(servers.SERVER_WORKLOADS)
ALL = [*TIMED, *COLLECT, "memory", "respawn", "exceptions", "task_tree", *SERVERS]

#: Targets from the performance issue: ratio to plain (timed), to extract_stack (collect).
TARGETS: dict[str, float] = {
    "spawn_flat": 1.25,
    "spawn_flat_uvloop": 1.25,
    "spawn_chain": 1.3,
    "spawn_deep_stack": 1.8,
    "executor": 1.05,
    # The chain travels pickled: small next to the pickling and round trip concurrent.futures does.
    "process_executor": 1.10,
    "realistic": 1.10,
    "collect_d10": 0.25,
    "collect_d100": 1.2,
}
LIVE_BYTES_TARGET = 250
#: Added bytes per live task in a chain (the performance issue's memory goal).
CHAIN_BYTES_TARGET = 400


def measure(workload: str, contender: str, quick: bool) -> dict[str, Any]:
    cmd = [sys.executable, str(HERE / "workloads.py"), workload, contender.removesuffix("_py")]
    if quick:
        cmd.append("--quick")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])}
    env.pop("ASYNC_TRACE_NO_EXTENSIONS", None)
    if contender.endswith("_py"):
        env["ASYNC_TRACE_NO_EXTENSIONS"] = "1"
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env, timeout=900)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def run_timed(
    workload: str, rounds: int, quick: bool, contenders: list[str], baseline: str = "plain"
) -> dict[str, Any]:
    """Contenders alternating round by round; ratios against ``baseline`` from the same round."""
    values: dict[str, list[float]] = {c: [] for c in contenders}
    ratios: dict[str, list[float]] = {c: [] for c in contenders if c != baseline}
    unit = ""
    for r in range(rounds):
        order = contenders[r % len(contenders) :] + contenders[: r % len(contenders)]
        results = {c: measure(workload, c, quick) for c in order}
        unit = next(iter(results.values()))["unit"]
        got = {c: r["value"] for c, r in results.items()}
        for c, v in got.items():
            values[c].append(v)
            if c != baseline:
                ratios[c].append(v / got[baseline])
    return {
        "unit": unit,
        "median": {c: statistics.median(v) for c, v in values.items()},
        "ratio": {c: statistics.median(v) for c, v in ratios.items()},
        "values": values,
    }


def run_collect(workload: str, rounds: int, quick: bool) -> dict[str, Any]:
    ours, base, ratios = [], [], []
    for _ in range(rounds):
        got = measure(workload, "async_trace", quick)
        ours.append(got["value"])
        base.append(got["baseline"])
        ratios.append(got["value"] / got["baseline"])
    return {
        "unit": "us/trace",
        "median": {"async_trace": statistics.median(ours), "extract_stack": statistics.median(base)},
        "ratio": {"async_trace": statistics.median(ratios)},
    }


def run_exceptions(rounds: int, quick: bool) -> dict[str, Any]:
    """Tracing on with the exception hooks off vs on, and plain, alternating round by round."""
    out = {}
    for w in EXCEPTIONS:
        got = run_timed(w, rounds, quick, EXCEPTION_CONTENDERS, baseline="async_trace_noexc")
        values = got["values"]
        got["to_plain"] = {
            c: statistics.median(v / p for v, p in zip(values[c], values["plain"], strict=True))
            for c in EXCEPTION_CONTENDERS
            if c != "plain"
        }
        out[w] = got
    return out


def run_tree(rounds: int, quick: bool) -> dict[str, Any]:
    got = [measure("task_tree", "async_trace", quick) for _ in range(rounds)]
    return {
        "tasks": got[0]["tasks"],
        "median": {k: statistics.median(g[k] for g in got) for k in ("tree_ms", "format_ms", "baseline_ms")},
        "ratio": statistics.median(g["tree_ms"] / g["baseline_ms"] for g in got),
    }


def run_memory(quick: bool, contenders: list[str]) -> dict[str, Any]:
    return {c: measure("memory", c, quick) for c in contenders}


def missing(workload: str) -> list[str]:
    """The modules ``workload`` needs that are not installed (the bench extra's)."""
    if workload in SERVERS:
        return servers.missing(workload)
    return [m for m in NEEDS.get(workload, ()) if importlib.util.find_spec(m) is None]


def verdict(value: float, target: float) -> str:
    return "PASS" if value <= target else "MISS"


def report(results: dict[str, Any], header: str) -> str:
    lines = [header]
    if any(w in results for w in TIMED):
        lines += [
            "",
            f"{'workload':<18} {'plain':>10} {'debug':>10} {'async_trace':>12} {'(Python)':>10} {'unit':<11}"
            f" {'debug/plain':>11} {'trace/plain':>11} {'target':>7}        {'Python/plain':>12}",
        ]
    for w in TIMED:
        if w not in results:
            continue
        if "skipped" in results[w]:
            lines.append(f"{w:<18} skipped: {results[w]['skipped']}")
            continue
        m, r = results[w]["median"], results[w]["ratio"]
        lines.append(
            f"{w:<18} {m.get('plain', 0):>10.2f} {m.get('debug', float('nan')):>10.2f} "
            f"{m['async_trace']:>12.2f} {m.get('async_trace_py', float('nan')):>10.2f} {results[w]['unit']:<11} "
            f"{r.get('debug', float('nan')):>10.2f}x {r['async_trace']:>10.2f}x {TARGETS[w]:>6.2f}x  "
            f"{verdict(r['async_trace'], TARGETS[w])} {r.get('async_trace_py', float('nan')):>11.2f}x"
        )
    collect_rows = [w for w in COLLECT if w in results]
    if collect_rows:
        head = f"{'collection':<18} {'extract_stack':>14} {'collect':>10} {'unit':<9} {'ratio':>7} {'target':>7}"
        lines += ["", head]
        for w in collect_rows:
            m, r = results[w]["median"], results[w]["ratio"]["async_trace"]
            target = TARGETS.get(w)
            tail = f"{target:>6.2f}x  {verdict(r, target)}" if target else f"{'-':>7}"
            lines.append(
                f"{w:<18} {m['extract_stack']:>14.2f} {m['async_trace']:>10.2f} {'us/trace':<9} {r:>6.2f}x {tail}"
            )
    if "memory" in results:
        mem = results["memory"]
        plain = mem.get("plain")
        lines += ["", f"{'memory':<34} " + " ".join(f"{c:>12}" for c in mem) + "   added by async_trace"]
        for key, label in [
            ("live_bytes_per_task", "bytes per live task (flat)"),
            ("chain_bytes_per_task", "bytes per live task (chain)"),
            ("retained_bytes_per_task", "bytes retained per finished task"),
            ("finished_alive", "finished tasks still alive"),
        ]:
            row = f"{label:<34} " + " ".join(f"{mem[c][key]:>12.0f}" for c in mem)
            if plain is not None and "async_trace" in mem:
                added = mem["async_trace"][key] - plain[key]
                row += f"   {added:+.0f}"
                if key == "live_bytes_per_task":
                    row += f" (target <= {LIVE_BYTES_TARGET}: {verdict(added, LIVE_BYTES_TARGET)})"
                if key == "chain_bytes_per_task":
                    row += f" (target <= {CHAIN_BYTES_TARGET}: {verdict(added, CHAIN_BYTES_TARGET)})"
                if key == "finished_alive":
                    row += f" (target 0: {verdict(mem['async_trace'][key], 0)})"
            lines.append(row)
    if "exceptions" in results:
        lines += [
            "",
            "exception hooks: tracing on with hooks off, on (the default), eager notes, and on without the"
            " unwind record (record_origins=False); ratios to hooks off and to plain, same round",
            f"{'workload':<19} {'plain':>8} {'hooks off':>9} {'hooks on':>9} {'on/off':>7} {'on/plain':>8}"
            f" {'eager':>8} {'eager/off':>9} {'norecord':>8} {'norec/plain':>11} {'Python':>8} {'Py/plain':>8}",
        ]
        for w, r in results["exceptions"].items():
            m, to_plain = r["median"], r.get("to_plain", {})
            lines.append(
                f"{w:<19} {m['plain']:>8.2f} {m['async_trace_noexc']:>9.2f} {m['async_trace']:>9.2f}"
                f" {r['ratio']['async_trace']:>6.2f}x {to_plain.get('async_trace', float('nan')):>7.2f}x"
                f" {m['async_trace_eager']:>8.2f} {r['ratio']['async_trace_eager']:>8.2f}x"
                f" {m['async_trace_norecord']:>8.2f} {to_plain.get('async_trace_norecord', float('nan')):>10.2f}x"
                f" {m['async_trace_py']:>8.2f} {to_plain.get('async_trace_py', float('nan')):>7.2f}x"
            )
    if "task_tree" in results:
        t = results["task_tree"]
        m = t["median"]
        lines += [
            "",
            f"task_tree over {t['tasks']:,.0f} live tasks: task_tree() {m['tree_ms']:.1f} ms, "
            f"format_task_tree() {m['format_ms']:.1f} ms; all_tasks() + get_stack() of each "
            f"{m['baseline_ms']:.1f} ms (task_tree / that: {t['ratio']:.2f}x)",
        ]
    if "respawn" in results:
        rs = results["respawn"]
        gens = next(iter(rs.values()))["generations"]
        lines += ["", f"respawn: {gens:,} generations of a task creating its successor"]
        for c, r in rs.items():
            lines.append(
                f"  {c:<12} memory growth after the first tenth {r['growth_bytes']:>+10.0f} bytes"
                f"  ({r['us_per_generation']:.1f} us/generation under tracemalloc)"
            )
    lines += servers.report_lines(results)
    return "\n".join(lines)


def _implementation() -> str:
    """What ``async_trace`` runs here (the ``async_trace`` contender's path)."""
    env = {k: v for k, v in os.environ.items() if k != "ASYNC_TRACE_NO_EXTENSIONS"}
    env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])
    cmd = [sys.executable, "-m", "async_trace", "--version"]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, check=False).stdout.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller workloads and 3 rounds (< 2 minutes)")
    parser.add_argument("--rounds", type=int, help="rounds per workload (default 3 quick, 7 full)")
    parser.add_argument("--workloads", help="comma-separated subset of: " + ",".join(ALL))
    parser.add_argument("--no-debug", action="store_true", help="skip the asyncio debug-mode contender")
    parser.add_argument(
        "--server-requests", type=int, help="requests per round in the server workloads (default 1,000 quick, 3,000)"
    )
    parser.add_argument("--server-concurrency", type=int, default=32, help="requests in flight (default 32)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    args = parser.parse_args(argv)
    rounds = args.rounds or (3 if args.quick else 7)
    chosen = args.workloads.split(",") if args.workloads else ALL
    unknown = set(chosen) - set(ALL)
    if unknown:
        parser.error(f"unknown workloads: {', '.join(sorted(unknown))}")
    contenders = [c for c in CONTENDERS if not (args.no_debug and c == "debug")]

    started = time.time()
    results: dict[str, Any] = {}
    for w in chosen:
        print(f"... {w}", file=sys.stderr, flush=True)
        needs = missing(w)
        if needs:
            why = f"needs {', '.join(needs)} (pip install '.[bench]' in a clone of async-trace)"
            print(f"    {w} skipped: {why}", file=sys.stderr, flush=True)
            results[w] = {"skipped": why}
            continue
        if w in SERVERS:
            requests = args.server_requests or (1000 if args.quick else 3000)
            results[w] = servers.run_server(w, rounds, requests, args.server_concurrency)
        elif w in TIMED:
            results[w] = run_timed(w, rounds, args.quick, contenders)
        elif w in COLLECT:
            results[w] = run_collect(w, rounds, args.quick)
        elif w == "task_tree":
            results[w] = run_tree(rounds, args.quick)
        elif w == "exceptions":
            results[w] = run_exceptions(rounds, args.quick)
        elif w == "memory":
            results[w] = run_memory(args.quick, contenders)
        else:
            results[w] = {c: measure("respawn", c, args.quick) for c in contenders if c != "debug"}
    header = (
        f"async_trace benchmarks: Python {platform.python_version()} ({platform.python_implementation()}), "
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, "
        f"{datetime.date.today().isoformat()}, {'quick' if args.quick else 'full'}, {rounds} rounds, "
        f"{time.time() - started:.0f}s; {_implementation()}"
    )
    print(report(results, header))
    if args.json:
        meta = {"python": platform.python_version(), "date": datetime.date.today().isoformat(), "rounds": rounds}
        Path(args.json).write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
