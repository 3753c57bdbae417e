"""Every example runs, and prints exactly what README.md or docs/ shows for it."""

from __future__ import annotations

import pytest

from .doc_blocks import ROOT, doc_blocks
from .helpers import run_python

EXAMPLES = sorted(p.name for p in (ROOT / "examples").glob("*.py"))


def _blocks(kind: str) -> dict[str, str]:
    """The blocks marked ``<!-- kind: examples/NAME.py -->`` in README.md or docs/*.md, by NAME.py."""
    return {
        name.removeprefix("examples/"): body
        for name, body in doc_blocks(kind).items()
        if name.startswith("examples/") and name.endswith(".py") and "/" not in name.removeprefix("examples/")
    }


OUTPUTS = _blocks("output")
SOURCES = _blocks("source")


def test_every_example_is_shown_in_readme() -> None:
    """README.md or docs/ shows the output of every file in examples/, and of nothing else."""
    assert sorted(OUTPUTS) == EXAMPLES


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_output_matches_readme(name: str) -> None:
    """Running the example prints exactly its output block (README.md or docs/), and nothing on stderr."""
    result = run_python(str(ROOT / "examples" / name), cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout == OUTPUTS[name]


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_readme_source_is_the_example(name: str) -> None:
    """Code shown in README.md or docs/ as an example file is that file, verbatim."""
    assert SOURCES[name] == (ROOT / "examples" / name).read_text(encoding="utf-8")
