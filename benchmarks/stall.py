"""What the stall watchdog costs: tracing on with the watchdog on against tracing on without it.

    python benchmarks/stall.py                 # realistic and both servers, 5 rounds
    python benchmarks/stall.py --quick --rounds 1 --workloads realistic   # a check that it runs

The contenders alternate round by round (order rotating) in fresh processes, as in run.py:
``async_trace`` (imported, tracing on) and ``async_trace_stall`` (the same, and
``watch_stalls(0.1)`` on the loop: a heartbeat timer every 25 ms and a watchdog thread waking when
a heartbeat is 62.5 ms overdue, about every 75 ms). Ratios are watchdog-on over watchdog-off, per
round; the table shows medians. The goal (issue 24) is at most 1.02x on ``realistic`` and on the
servers' requests/s and p99. The server workloads need aiohttp, fastapi and uvicorn
(``pip install 'async-trace[bench]'``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from typing import Any

import run
import servers

CONTENDERS = ["async_trace", "async_trace_stall"]
WORKLOADS = ["realistic", *servers.SERVER_WORKLOADS]
GOAL = 1.02


def timed(workload: str, rounds: int, quick: bool) -> dict[str, Any]:
    got = run.run_timed(workload, rounds, quick, CONTENDERS, baseline="async_trace")
    return {"unit": got["unit"], "median": got["median"], "ratio": got["ratio"]["async_trace_stall"]}


def server(workload: str, rounds: int, requests: int, concurrency: int) -> dict[str, Any]:
    framework = servers.SERVER_WORKLOADS[workload][0]
    warmup = max(20, requests // 10)
    per_round = []
    for r in range(rounds):
        order = CONTENDERS[r % 2 :] + CONTENDERS[: r % 2]
        per_round.append({c: servers.run_round(framework, c, requests, concurrency, warmup) for c in order})
    ratio = {
        m: statistics.median(rd["async_trace_stall"][m] / rd["async_trace"][m] for rd in per_round)
        for m in ("rps", "p50_ms", "p99_ms")
    }
    median = {c: {m: statistics.median(rd[c][m] for rd in per_round) for m in ("rps", "p99_ms")} for c in CONTENDERS}
    return {"framework": per_round[0]["async_trace"]["framework"], "median": median, "ratio": ratio}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and requests (a smoke run)")
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {}
    for workload in args.workloads.split(","):
        if workload == "realistic":
            res = timed(workload, args.rounds, args.quick)
            results[workload] = res
            verdict = "PASS" if res["ratio"] <= GOAL else "MISS"
            print(
                f"{workload:<16} off {res['median']['async_trace']:.2f} {res['unit']}, "
                f"on {res['median']['async_trace_stall']:.2f}: {res['ratio']:.3f}x (<= {GOAL}: {verdict})",
                flush=True,
            )
        elif workload in servers.SERVER_WORKLOADS:
            missing = servers.missing(workload)
            if missing:
                print(f"{workload:<16} skipped: needs {', '.join(missing)}")
                continue
            requests = 500 if args.quick else 3000
            res = server(workload, args.rounds, requests, 32)
            results[workload] = res
            r = res["ratio"]
            ok = r["rps"] >= 1 / GOAL and r["p99_ms"] <= GOAL
            print(
                f"{workload:<16} on/off: req/s {r['rps']:.3f}x, p50 {r['p50_ms']:.3f}x, p99 {r['p99_ms']:.3f}x "
                f"({'PASS' if ok else 'MISS'}; {res['framework']})",
                flush=True,
            )
        else:
            parser.error(f"unknown workload {workload!r} (choose from {', '.join(WORKLOADS)})")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
