"""The documentation's marked blocks: README.md and docs/*.md.

A block is a fenced code block right after a marker line ``<!-- KIND: NAME -->``; it is found by its
marker in whichever of those files it lives, and each marker has exactly one home.
``<!-- excerpt of KIND: NAME -->`` marks a block whose lines are runs of the lines of the block
``KIND: NAME``, in order, with what is left out between runs shown as a line ``...``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC_FILES = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))

MARKER = re.compile(r"<!-- (.*?) -->")
BLOCK = re.compile(r"<!-- ((?:excerpt of )?[a-z][a-z-]*): (.+?) -->\n```\w+\n(.*?)```", re.S)


@dataclass(frozen=True)
class Block:
    kind: str
    name: str
    body: str
    home: str  # the file it lives in, relative to the repository


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def all_blocks() -> list[Block]:
    """Every marked block of every documentation file, in file order."""
    return [
        Block(kind, name, body, path.relative_to(ROOT).as_posix())
        for path in DOC_FILES
        for kind, name, body in BLOCK.findall(_read(path))
    ]


def all_markers() -> list[tuple[str, str]]:
    """Every ``<!-- ... -->`` comment, as (file, text): each should be a block's marker."""
    return [(path.relative_to(ROOT).as_posix(), text) for path in DOC_FILES for text in MARKER.findall(_read(path))]


def doc_blocks(kind: str) -> dict[str, str]:
    """The bodies of the blocks of this kind, by name (each name once)."""
    found = [b for b in all_blocks() if b.kind == kind]
    names = [b.name for b in found]
    assert len(names) == len(set(names)), (kind, sorted(n for n in names if names.count(n) > 1))
    return {b.name: b.body for b in found}


def doc_block(kind: str, name: str) -> str:
    """The body of the one block marked ``<!-- kind: name -->``, wherever it lives."""
    found = [b.body for b in all_blocks() if (b.kind, b.name) == (kind, name)]
    assert len(found) == 1, (kind, name, len(found))
    return found[0]


def is_excerpt(excerpt: str, full: str) -> bool:
    """``excerpt``'s runs of lines (split at ``...`` lines) are runs of ``full``'s lines, in order."""
    lines = full.splitlines()
    runs: list[list[str]] = [[]]
    for line in excerpt.splitlines():
        if line == "...":
            runs.append([])
        else:
            runs[-1].append(line)
    at = 0
    for run in runs:
        if not run:
            continue
        for start in range(at, len(lines) - len(run) + 1):
            if lines[start : start + len(run)] == run:
                at = start + len(run)
                break
        else:
            return False
    return True
