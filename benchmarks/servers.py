"""Real-server workloads: a small app on aiohttp or FastAPI (uvicorn), plain against traced.

    python benchmarks/run.py --workloads server_aiohttp,server_fastapi   # needs the `bench` extra
    python benchmarks/servers.py serve aiohttp async_trace                # one server, by hand
    python benchmarks/servers.py load --port PORT --requests 3000         # one load run, by hand

Each round starts the server in a fresh process (``plain``: async_trace not imported;
``async_trace``: imported, tracing on) on 127.0.0.1, port 0, and drives it from a load client
in another process: an aiohttp client with bounded concurrency that sends a fixed number of
requests after a warm-up, then reports requests/s, p50/p99 latency and the server process's
CPU time per request (from /proc, Linux only). The server stops when its stdin closes.

The app, the same on both frameworks: ``GET /items/{id}`` (a JSON item, 404 when unknown) and
``POST /orders`` (a JSON body, validated; every fourth order computes a checksum in
``asyncio.to_thread``); one middleware that sets ``X-Request-Id`` and starts one background
task per request (``asyncio.create_task``, kept in a set until it is done). Requests alternate
between the two routes.

The orchestration here is stdlib only; the frameworks are imported in the child processes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import importlib.util
import json
import os
import platform
import select
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
#: workload -> (framework, the modules it needs: the server's and the load client's)
SERVER_WORKLOADS: dict[str, tuple[str, list[str]]] = {
    "server_aiohttp": ("aiohttp", ["aiohttp"]),
    "server_fastapi": ("fastapi", ["fastapi", "uvicorn", "aiohttp"]),
}
SERVER_CONTENDERS = ["plain", "async_trace"]
METRICS = ["rps", "p50_ms", "p99_ms", "server_cpu_us"]
#: Goals from the performance issue: traced over plain, same round.
GOALS = {"rps": ("min", 0.98), "p99_ms": ("max", 1.05)}
STARTUP_TIMEOUT = 60.0
LOAD_TIMEOUT = 600.0
STOP_TIMEOUT = 15.0


# --- the app ------------------------------------------------------------------------------

ITEMS = {
    i: {"id": i, "name": f"item-{i}", "price": round(1.25 * i + 0.99, 2), "tags": ["red", "blue"][: 1 + i % 2]}
    for i in range(100)
}
AUDIT: list[dict[str, Any]] = []
BACKGROUND: set[asyncio.Task[None]] = set()


async def audit(method: str, path: str, status: int) -> None:
    """The background task each request starts: a yield, then a bounded in-memory log."""
    await asyncio.sleep(0)
    AUDIT.append({"method": method, "path": path, "status": status, "at": time.time()})
    if len(AUDIT) > 1000:
        del AUDIT[:500]


def start_background(method: str, path: str, status: int) -> None:
    task = asyncio.get_running_loop().create_task(audit(method, path, status))
    BACKGROUND.add(task)
    task.add_done_callback(BACKGROUND.discard)


def checksum(data: bytes) -> str:
    """The blocking call every fourth order makes, in ``asyncio.to_thread``."""
    return hashlib.sha256(data * 8).hexdigest()


def order_reply(item_id: int, quantity: int, note: str) -> dict[str, Any] | None:
    item = ITEMS.get(item_id)
    if item is None:
        return None
    return {"item": item, "quantity": quantity, "total": round(item["price"] * quantity, 2), "note": note}


def aiohttp_app() -> Any:
    from aiohttp import web

    counter = iter(range(1 << 62))

    @web.middleware
    async def request_id(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> Any:
        response = await handler(request)
        response.headers["X-Request-Id"] = str(next(counter))
        start_background(request.method, request.path, response.status)
        return response

    async def get_item(request: web.Request) -> web.Response:
        item = ITEMS.get(int(request.match_info["item_id"]))
        if item is None:
            raise web.HTTPNotFound()
        return web.json_response(item)

    async def post_order(request: web.Request) -> web.Response:
        body = await request.json()
        try:
            item_id, quantity, note = int(body["item_id"]), int(body["quantity"]), str(body.get("note", ""))
        except (KeyError, TypeError, ValueError):
            raise web.HTTPUnprocessableEntity() from None
        reply = order_reply(item_id, quantity, note)
        if reply is None:
            raise web.HTTPNotFound()
        if quantity % 4 == 0:
            reply["checksum"] = await asyncio.to_thread(checksum, json.dumps(body).encode())
        return web.json_response(reply)

    app = web.Application(middlewares=[request_id])
    app.router.add_get("/items/{item_id}", get_item)
    app.router.add_post("/orders", post_order)
    return app


def fastapi_app() -> Any:
    from fastapi import FastAPI, HTTPException, Request
    from pydantic import BaseModel

    class Order(BaseModel):
        item_id: int
        quantity: int
        note: str = ""

    app = FastAPI()
    counter = iter(range(1 << 62))

    @app.middleware("http")
    async def request_id(request: Request, call_next: Callable[[Request], Awaitable[Any]]) -> Any:
        response = await call_next(request)
        response.headers["X-Request-Id"] = str(next(counter))
        start_background(request.method, request.url.path, response.status_code)
        return response

    @app.get("/items/{item_id}")
    async def get_item(item_id: int) -> dict[str, Any]:
        item = ITEMS.get(item_id)
        if item is None:
            raise HTTPException(status_code=404)
        return item

    async def post_order(order: Order) -> dict[str, Any]:
        reply = order_reply(order.item_id, order.quantity, order.note)
        if reply is None:
            raise HTTPException(status_code=404)
        if order.quantity % 4 == 0:
            reply["checksum"] = await asyncio.to_thread(checksum, order.model_dump_json().encode())
        return reply

    # This module's annotations are strings, and FastAPI resolves them in the module's globals,
    # where the local model is not: give it the class itself, or it reads the body as a query.
    post_order.__annotations__["order"] = Order
    app.post("/orders")(post_order)
    return app


# --- the server process -------------------------------------------------------------------


def _stop_on_stdin_eof(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    def wait() -> None:
        with contextlib.suppress(OSError, ValueError):
            while sys.stdin.buffer.read(4096):
                pass
        with contextlib.suppress(RuntimeError):  # the loop already closed
            loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=wait, name="stdin-eof", daemon=True).start()


async def _serve_aiohttp(sock: socket.socket, stop: asyncio.Event) -> None:
    from aiohttp import web

    runner = web.AppRunner(aiohttp_app(), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.SockSite(runner, sock).start()
        await stop.wait()
    finally:
        await runner.cleanup()


async def _serve_fastapi(sock: socket.socket, stop: asyncio.Event) -> None:
    import uvicorn

    config = uvicorn.Config(fastapi_app(), lifespan="off", log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    serving = asyncio.ensure_future(server.serve(sockets=[sock]))
    try:
        done, _ = await asyncio.wait([serving, asyncio.ensure_future(stop.wait())], return_when="FIRST_COMPLETED")
        if serving in done:
            serving.result()  # it stopped by itself: say why
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, STOP_TIMEOUT)


def serve(framework: str, contender: str) -> None:
    if contender in ("async_trace", "async_trace_stall"):  # the latter: benchmarks/stall.py, the watchdog on too
        import async_trace  # noqa: F401 - importing it turns tracing on
    elif contender == "async_trace_noexc":  # by hand only: tracing on, the exception hooks off
        from async_trace import _display

        _display.uninstall()
    elif contender != "plain":
        raise SystemExit(f"unknown contender {contender!r}")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    sock.setblocking(False)
    if framework == "aiohttp":
        import aiohttp

        version, body = f"aiohttp {aiohttp.__version__}", _serve_aiohttp
    elif framework == "fastapi":
        import fastapi
        import uvicorn

        http = "httptools" if importlib.util.find_spec("httptools") else "h11"  # what uvicorn's "auto" picks
        version = f"fastapi {fastapi.__version__}, uvicorn {uvicorn.__version__} ({http})"
        body = _serve_fastapi
    else:
        raise SystemExit(f"unknown framework {framework!r}")

    async def main() -> None:
        stop = asyncio.Event()
        _stop_on_stdin_eof(asyncio.get_running_loop(), stop)
        hello = {"port": sock.getsockname()[1], "pid": os.getpid(), "framework": version}
        if contender == "async_trace_stall":
            from async_trace import watch_stalls

            watch_stalls(0.1, loop=asyncio.get_running_loop())  # a heartbeat every 25 ms
        print(json.dumps(hello), flush=True)
        await body(sock, stop)
        if BACKGROUND:
            await asyncio.wait(list(BACKGROUND), timeout=STOP_TIMEOUT)

    try:
        asyncio.run(main())
    finally:
        sock.close()


# --- the load client process ----------------------------------------------------------------


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of process ``pid`` (all its threads), or None off Linux."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def request_for(i: int) -> tuple[str, str, dict[str, Any] | None]:
    if i % 2 == 0:
        return "GET", f"/items/{(i // 2) % 100}", None
    n = i // 2
    return "POST", "/orders", {"item_id": n % 100, "quantity": 1 + n % 8, "note": f"order {n}"}


async def _load(port: int, requests: int, concurrency: int, warmup: int, server_pid: int | None) -> dict[str, Any]:
    import aiohttp

    base = f"http://127.0.0.1:{port}"
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(base, connector=connector, timeout=timeout) as session:

        async def batch(n: int) -> list[float]:
            latencies: list[float] = []
            next_i = iter(range(n))

            async def worker() -> None:
                for i in next_i:  # shared: each request is sent once, by whichever worker is free
                    method, path, body = request_for(i)
                    t0 = time.perf_counter_ns()
                    async with session.request(method, path, json=body) as response:
                        await response.read()
                        if response.status != 200 or "X-Request-Id" not in response.headers:
                            raise RuntimeError(f"{method} {path}: HTTP {response.status}")
                    latencies.append((time.perf_counter_ns() - t0) / 1e6)

            await asyncio.gather(*(worker() for _ in range(min(concurrency, n))))
            return latencies

        await batch(warmup)
        cpu0 = process_cpu_seconds(server_pid) if server_pid else None
        t0 = time.perf_counter()
        latencies = await batch(requests)
        elapsed = time.perf_counter() - t0
        cpu1 = process_cpu_seconds(server_pid) if server_pid else None
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return {
        "requests": requests,
        "concurrency": concurrency,
        "seconds": elapsed,
        "rps": requests / elapsed,
        "p50_ms": cuts[49],
        "p99_ms": cuts[98],
        "server_cpu_us": (cpu1 - cpu0) * 1e6 / requests if cpu0 is not None and cpu1 is not None else None,
    }


# --- orchestration (stdlib only) -----------------------------------------------------------


def missing(workload: str) -> list[str]:
    """The modules ``workload`` needs that are not installed."""
    return [m for m in SERVER_WORKLOADS[workload][1] if importlib.util.find_spec(m) is None]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])}


def run_round(framework: str, contender: str, requests: int, concurrency: int, warmup: int) -> dict[str, Any]:
    """One server process, one load-client process against it; the server is stopped on every path."""
    cmd = [sys.executable, str(HERE / "servers.py"), "serve", framework, contender]
    server = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=_env())
    try:
        assert server.stdout is not None
        ready, _, _ = select.select([server.stdout], [], [], STARTUP_TIMEOUT)
        line = server.stdout.readline() if ready else ""
        if not line:
            raise RuntimeError(f"{framework} server ({contender}) did not start: exit status {server.poll()}")
        hello = json.loads(line)
        load = [
            sys.executable, str(HERE / "servers.py"), "load", "--port", str(hello["port"]),
            "--requests", str(requests), "--concurrency", str(concurrency), "--warmup", str(warmup),
            "--server-pid", str(hello["pid"]),
        ]  # fmt: skip
        out = subprocess.run(load, capture_output=True, text=True, env=_env(), timeout=LOAD_TIMEOUT)
        if out.returncode:
            raise RuntimeError(f"load client failed ({out.returncode}): {out.stderr.strip()[-2000:]}")
        result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
        result["framework"] = hello["framework"]
        return result
    finally:
        if server.stdin is not None:
            with contextlib.suppress(OSError):
                server.stdin.close()
        try:
            server.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        if server.stdout is not None:
            server.stdout.close()


def run_server(workload: str, rounds: int, requests: int, concurrency: int) -> dict[str, Any]:
    """Plain and traced alternating round by round (order rotating); ratios traced / plain per round."""
    framework = SERVER_WORKLOADS[workload][0]
    warmup = max(20, requests // 10)
    contenders = SERVER_CONTENDERS
    per_round: list[dict[str, dict[str, Any]]] = []
    for r in range(rounds):
        order = contenders[r % len(contenders) :] + contenders[: r % len(contenders)]
        per_round.append({c: run_round(framework, c, requests, concurrency, warmup) for c in order})

    def med(values: list[Any]) -> float | None:
        got = [v for v in values if v is not None]
        return statistics.median(got) if got else None

    median = {c: {m: med([rd[c][m] for rd in per_round]) for m in METRICS} for c in contenders}
    ratio: dict[str, float | None] = {}
    for m in METRICS:
        pairs = [(rd["async_trace"][m], rd["plain"][m]) for rd in per_round]
        ratio[m] = med([t / p if t is not None and p else None for t, p in pairs])
    return {
        "framework": per_round[0]["plain"]["framework"],
        "requests": requests,
        "concurrency": concurrency,
        "rounds": rounds,
        "median": median,
        "ratio": ratio,
        "values": {c: [rd[c] for rd in per_round] for c in contenders},
    }


def report_lines(results: dict[str, Any]) -> list[str]:
    rows = [w for w in SERVER_WORKLOADS if w in results]
    if not rows:
        return []
    lines = [""]
    ran = [results[w] for w in rows if "skipped" not in results[w]]
    if ran:
        first = ran[0]
        lines.append(
            f"real servers: {first['requests']:,} requests per round after a warm-up, {first['concurrency']} in"
            f" flight, load client (aiohttp) in another process; medians of {first['rounds']} rounds"
        )
        lines.append(f"{'workload':<16} {'':<12} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'server CPU us/req':>18}")

    def cell(v: float | None, fmt: str, width: int) -> str:
        return f"{'-':>{width}}" if v is None else f"{v:>{width}{fmt}}"

    for w in rows:
        res = results[w]
        if "skipped" in res:
            lines.append(f"{w:<16} skipped: {res['skipped']}")
            continue
        for c in SERVER_CONTENDERS:
            m = res["median"][c]
            lines.append(
                f"{w if c == 'plain' else '':<16} {c:<12} {cell(m['rps'], '.0f', 9)} {cell(m['p50_ms'], '.2f', 8)}"
                f" {cell(m['p99_ms'], '.2f', 8)} {cell(m['server_cpu_us'], '.0f', 18)}"
            )
        r = res["ratio"]
        verdicts = []
        for m, (kind, goal) in GOALS.items():
            v = r[m]
            ok = v is not None and (v >= goal if kind == "min" else v <= goal)
            verdicts.append(f"{m} {'>=' if kind == 'min' else '<='} {goal}: {'PASS' if ok else 'MISS'}")
        lines.append(
            f"{'':<16} {'trace/plain':<12} {cell(r['rps'], '.3f', 8)}x {cell(r['p50_ms'], '.3f', 7)}x"
            f" {cell(r['p99_ms'], '.3f', 7)}x {cell(r['server_cpu_us'], '.3f', 17)}x   {'; '.join(verdicts)}"
        )
        lines.append(f"{'':<16} ({res['framework']})")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run one server until stdin closes; prints {port, pid, framework}")
    s.add_argument("framework", choices=["aiohttp", "fastapi"])
    s.add_argument("contender", choices=[*SERVER_CONTENDERS, "async_trace_noexc", "async_trace_stall"])
    ld = sub.add_parser("load", help="drive a server; prints one JSON object")
    ld.add_argument("--port", type=int, required=True)
    ld.add_argument("--requests", type=int, default=3000)
    ld.add_argument("--concurrency", type=int, default=32)
    ld.add_argument("--warmup", type=int, default=300)
    ld.add_argument("--server-pid", type=int)
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve(args.framework, args.contender)
    else:
        if args.requests < 2 or args.concurrency < 1:
            parser.error("--requests must be >= 2 and --concurrency >= 1")
        result = asyncio.run(_load(args.port, args.requests, args.concurrency, args.warmup, args.server_pid))
        result["python"] = platform.python_version()
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
