"""README.md and docs/*.md: every relative link and #anchor resolves, every marked block has one home."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .doc_blocks import DOC_FILES, ROOT, Block, all_blocks, all_markers, doc_block, is_excerpt

FENCE = re.compile(r"^```.*?^```[^\n]*$", re.S | re.M)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^(#{1,6}) +(.+?) *#*$", re.M)


def _prose(text: str) -> str:
    """The text without fenced code blocks (whose ``#`` lines are not headings nor links)."""
    return FENCE.sub("", text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for _, heading in HEADING.findall(_prose(path.read_text(encoding="utf-8"))):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def _links(path: Path) -> list[str]:
    prose = INLINE_CODE.sub("", _prose(path.read_text(encoding="utf-8")))
    return [t for t in LINK.findall(prose) if not re.match(r"[a-z][a-z0-9+.-]*:", t)]


def _id(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def test_slug_is_githubs() -> None:
    """The anchors README.md has always linked to."""
    assert slug("From outside the process: `python -m async_trace pstree PID` (3.14+)") == (
        "from-outside-the-process-python--m-async_trace-pstree-pid-314"
    )
    assert slug("Enable / disable") == "enable--disable"


def test_the_docs_pages_exist() -> None:
    names = {p.name for p in DOC_FILES if p.parent.name == "docs"}
    assert names >= {
        "index.md",
        "usage.md",
        "exceptions.md",
        "task-tree.md",
        "logging.md",
        "integrations.md",
        "real-applications.md",
        "how-it-works.md",
        "performance.md",
        "guarantees.md",
        "pytest-plugin.md",
    }


@pytest.mark.parametrize("path", DOC_FILES, ids=_id)
def test_every_relative_link_resolves(path: Path) -> None:
    """Each relative link names a file that exists, and each #anchor a heading of that file."""
    links = _links(path)
    for target in links:
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        assert dest.exists(), (target, _id(path))
        assert dest.is_relative_to(ROOT), target
        if anchor:
            assert dest.suffix == ".md", target
            assert anchor in anchors(dest), (target, _id(path), sorted(anchors(dest)))


def test_every_docs_page_is_linked_from_the_index_and_the_readme() -> None:
    index = {(ROOT / "docs" / t).resolve() for t in _links(ROOT / "docs" / "index.md")}
    readme = {(ROOT / t.partition("#")[0]).resolve() for t in _links(ROOT / "README.md")}
    for path in DOC_FILES:
        if path.parent.name == "docs" and path.name != "index.md":
            assert path.resolve() in index, path.name
            assert path.resolve() in readme, path.name


def test_every_marker_is_a_block_with_one_home() -> None:
    """Each ``<!-- KIND: NAME -->`` comment marks a block, and no marker is used twice."""
    blocks = all_blocks()
    assert len(all_markers()) == len(blocks), all_markers()
    keys = [(b.kind, b.name) for b in blocks]
    assert len(keys) == len(set(keys)), sorted(k for k in keys if keys.count(k) > 1)


def test_blocks_read_by_other_tests_are_found() -> None:
    """test_remote's blocks (its test runs on 3.14+ only) are found on every version."""
    for kind, name in [
        ("remote-source", "service.py"),
        ("remote-output", "async_trace pstree"),
        ("remote-output", "asyncio pstree"),
    ]:
        assert doc_block(kind, name)


EXCERPTS = [b for b in all_blocks() if b.kind.startswith("excerpt of ")]


@pytest.mark.parametrize("block", EXCERPTS, ids=lambda b: f"{b.kind.removeprefix('excerpt of ')}: {b.name}")
def test_excerpt_is_from_its_checked_block(block: Block) -> None:
    """An excerpt (README's short examples) is made of runs of lines of what it names: an example
    file, or a full block that the other tests check against the real output."""
    kind = block.kind.removeprefix("excerpt of ")
    if kind == "source" and block.name.startswith("examples/"):
        full = (ROOT / block.name).read_text(encoding="utf-8")  # the file itself, shown whole or not
    else:
        full = doc_block(kind, block.name)
    assert is_excerpt(block.body, full), block.body


def test_is_excerpt() -> None:
    full = "a\nb\nc\nd\n"
    assert is_excerpt("a\nb\n", full)
    assert is_excerpt("a\n...\nd\n", full)
    assert is_excerpt("b\n...\n", full)
    assert not is_excerpt("a\nc\n", full)
    assert not is_excerpt("c\n...\nb\n", full)
    assert not is_excerpt("x\n", full)


def test_readme_setup_commands_and_installation() -> None:
    """The Set-up section's two commands, exactly; installation never from the index's unrelated project."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert (
        "```bash\n"
        "python -m pip install . && python examples/basic_example.py\n"
        "python -m pip install -e '.[test]' && python -m pytest\n"
        "```\n"
    ) in readme
    for line in readme.splitlines():
        assert not re.match(r"\s*(python -m )?pip install async-trace\b", line), line
