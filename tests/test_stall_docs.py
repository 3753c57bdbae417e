"""docs/stalls.md: the shop server under each tool prints what the page shows (numbers and paths aside).

Our report is checked on every version. The other tools' output on the version the page was made
with (3.12): asyncio's own frames and messages differ between versions. pyleak's, where pyleak is
installed (it is not a test dependency).
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
import sysconfig
from pathlib import Path

import pytest

import async_trace

from .doc_blocks import doc_block, doc_blocks
from .helpers import run_python

ROOT = str(Path(async_trace.__file__).resolve().parent.parent)
#: Where the page says the program and the standard library live.
SHOWN_DIR = "/srv/shop"
SHOWN_STDLIB = "/usr/lib/python3.12"


def normalized(text: str, where: Path) -> list[str]:
    """The lines with durations, timestamps, task numbers and paths made comparable."""
    text = text.replace(str(where), SHOWN_DIR).replace(sysconfig.get_paths()["stdlib"], SHOWN_STDLIB)
    text = re.sub(r"Timestamp: \d+\.\d+", "Timestamp: T", text)
    text = re.sub(r"\d+\.\d{2,3}", "N", text)
    text = re.sub(r"Task-\d+", "Task-N", text)
    return text.splitlines()


def run_tool(tool: str, tmp_path: Path) -> str:
    (tmp_path / "shop.py").write_text(doc_block("stall-source", "shop.py"), encoding="utf-8")
    path = os.pathsep.join([ROOT, *filter(None, [os.environ.get("PYTHONPATH")])])
    result = run_python("shop.py", tool, cwd=tmp_path, env={"PYTHONPATH": path}, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout + result.stderr


def test_the_outputs_shown() -> None:
    assert sorted(doc_blocks("stall-output")) == ["Handle._run patch", "async_trace", "asyncio debug", "pyleak"]


def test_async_trace_names_the_blocking_line_and_its_task(tmp_path: Path) -> None:
    got = normalized(run_tool("async_trace", tmp_path), tmp_path)
    assert got == normalized(doc_block("stall-output", "async_trace"), tmp_path)


@pytest.mark.skipif(sys.version_info[:2] != (3, 12), reason="asyncio's messages as the page shows them: 3.12")
@pytest.mark.parametrize(("tool", "block"), [("debug", "asyncio debug"), ("handle_run", "Handle._run patch")])
def test_the_other_tools_print_what_the_page_shows(tool: str, block: str, tmp_path: Path) -> None:
    got = normalized(run_tool(tool, tmp_path), tmp_path)
    assert got == normalized(doc_block("stall-output", block), tmp_path)


@pytest.mark.skipif(sys.version_info[:2] != (3, 12), reason="asyncio's frames as the page shows them: 3.12")
@pytest.mark.skipif(importlib.util.find_spec("pyleak") is None, reason="pyleak is not installed")
def test_pyleak_prints_what_the_page_shows(tmp_path: Path) -> None:
    """pyleak's first block as shown (it may also report the loop's own poll as a second block)."""
    got = normalized(run_tool("pyleak", tmp_path), tmp_path)
    shown = normalized(doc_block("stall-output", "pyleak"), tmp_path)
    assert _first_block(got) == _first_block(shown), got


def _first_block(lines: list[str]) -> list[str]:
    """From ``Event Loop Block: block-1`` to the blocking line."""
    start = lines.index("Event Loop Block: block-1")
    end = next(i for i in range(start, len(lines)) if lines[i].endswith("# a synchronous database call"))
    return lines[start : end + 1]


BLOCKBUSTER = """\
import asyncio, time
import async_trace
from blockbuster import blockbuster_ctx

async def handle():
    time.sleep(0.01)

async def main():
    task = asyncio.create_task(handle(), name="request")  # creates
    await asyncio.wait([task])
    # Printed on the loop, with blockbuster still on (as a framework logs a failed request).
    print("".join(async_trace.format_exception(task.exception())), end="")

with blockbuster_ctx():
    asyncio.run(main())
"""


@pytest.mark.skipif(importlib.util.find_spec("blockbuster") is None, reason="blockbuster is not installed")
def test_blockbuster_error_gets_the_chain(tmp_path: Path) -> None:
    """The recipe: blockbuster's BlockingError, raised in the task, is printed on the loop with the task's chain."""
    (tmp_path / "bb.py").write_text(BLOCKBUSTER, encoding="utf-8")
    path = os.pathsep.join([ROOT, *filter(None, [os.environ.get("PYTHONPATH")])])
    result = run_python("bb.py", cwd=tmp_path, env={"PYTHONPATH": path}, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[-6:] == [
        "blockbuster.blockbuster.BlockingError: Blocking call to time.sleep",
        "Async trace (most recent call last):",
        "  Root task 'Task-1'",
        f'  File "{tmp_path / "bb.py"}", line 9, in main',
        '    task = asyncio.create_task(handle(), name="request")  # creates',
        "  --- task 'request' created here ---",
    ]
