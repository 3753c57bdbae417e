"""The real-server benchmark workloads run end to end in a tiny configuration: the report's shape, not speed."""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .doc_blocks import ROOT

RUN = ROOT / "benchmarks" / "run.py"
WORKLOADS = ["server_aiohttp", "server_fastapi"]
CONTENDERS = ["plain", "async_trace"]
METRICS = ["rps", "p50_ms", "p99_ms", "server_cpu_us"]

needs_benchmarks = pytest.mark.skipif(not RUN.exists(), reason="benchmarks/ is not in this tree")
needs_frameworks = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("aiohttp", "fastapi", "uvicorn")),
    reason="needs the bench extra: aiohttp, fastapi, uvicorn",
)


@needs_benchmarks
@needs_frameworks
def test_server_workloads_report(tmp_path: Path) -> None:
    """50 requests, 1 round, each framework: plain and traced each measured, medians and ratios reported."""
    out = tmp_path / "servers.json"
    cmd = [sys.executable, str(RUN), "--workloads", ",".join(WORKLOADS), "--rounds", "1"]
    cmd += ["--server-requests", "50", "--server-concurrency", "4", "--json", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    results: dict[str, Any] = json.loads(out.read_text())["results"]
    assert sorted(results) == sorted(WORKLOADS)
    for w in WORKLOADS:
        res = results[w]
        assert (res["requests"], res["concurrency"], res["rounds"]) == (50, 4, 1)
        assert sorted(res["median"]) == sorted(CONTENDERS)
        for c in CONTENDERS:
            m = res["median"][c]
            assert sorted(m) == sorted(METRICS)
            assert m["rps"] > 0
            assert 0 < m["p50_ms"] <= m["p99_ms"]
            (only,) = res["values"][c]
            assert only["requests"] == 50
        assert sorted(res["ratio"]) == sorted(METRICS)
        assert res["ratio"]["rps"] > 0
        assert w in done.stdout
    assert "trace/plain" in done.stdout
    assert done.stdout.count("req/s") == 1


@needs_benchmarks
def test_server_workloads_skip_without_frameworks(tmp_path: Path) -> None:
    """Without the frameworks (no site-packages: ``-S``), the server workloads are skipped with a line saying so."""
    done = subprocess.run(
        [sys.executable, "-S", str(RUN), "--workloads", ",".join(WORKLOADS), "--json", str(tmp_path / "r.json")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr
    results = json.loads((tmp_path / "r.json").read_text())["results"]
    for w in WORKLOADS:
        assert "aiohttp" in results[w]["skipped"]
        assert f"{w} skipped: needs " in done.stderr
        assert f"{w:<16} skipped: needs " in done.stdout
    assert "pip install '.[bench]' in a clone of async-trace" in done.stdout


def test_the_plain_contender_imports_nothing_of_async_trace() -> None:
    """The benchmarks' ``plain`` runs untraced: no module-level import of async_trace (importing it traces)."""
    bench = Path(__file__).resolve().parent.parent / "benchmarks"
    for name in ("workloads.py", "servers.py", "run.py", "stall.py"):
        tree = ast.parse((bench / name).read_text(encoding="utf-8"))
        top = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
        names = [alias.name for node in top if isinstance(node, ast.Import) for alias in node.names]
        names += [node.module or "" for node in top if isinstance(node, ast.ImportFrom)]
        assert [n for n in names if n.split(".")[0] == "async_trace"] == [], name
