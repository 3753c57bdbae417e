"""Every example runs, and prints exactly what README.md shows for it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted(p.name for p in (ROOT / "examples").glob("*.py"))
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _blocks(kind: str) -> dict[str, str]:
    pattern = re.compile(rf"<!-- {kind}: examples/(\S+\.py) -->\n```\w+\n(.*?)```", re.S)
    return {name: body for name, body in pattern.findall(README)}


OUTPUTS = _blocks("output")
SOURCES = _blocks("source")


def test_every_example_is_shown_in_readme() -> None:
    """README.md shows the output of every file in examples/, and of nothing else."""
    assert sorted(OUTPUTS) == EXAMPLES


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_output_matches_readme(name: str) -> None:
    """Running the example prints exactly the README's output block, and nothing on stderr."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout == OUTPUTS[name]


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_readme_source_is_the_example(name: str) -> None:
    """Code shown in README.md as an example file is that file, verbatim."""
    assert SOURCES[name] == (ROOT / "examples" / name).read_text(encoding="utf-8")
