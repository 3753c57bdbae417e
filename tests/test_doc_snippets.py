"""Every python snippet in README.md and docs/*.md runs as shown, or says why not.

A ```` ```python ```` block is one of:

- an example file or a block another test runs, by its marker: ``source: examples/NAME.py`` (the file
  verbatim, run by tests/test_examples.py), ``excerpt of source: ...`` (runs of such a file's lines,
  tests/test_docs.py), ``fastapi-source: app.py`` (tests/test_in_app.py), ``remote-source: service.py``
  (tests/test_remote.py);
- marked ``<!-- not-run: WHY -->``, saying why it cannot run as shown (a shape, a fragment);
- or unmarked: then it runs here, as shown, in a fresh interpreter in an empty directory, and
  exits 0 without a traceback.
"""

from __future__ import annotations

import re
import signal
from pathlib import Path
from typing import NamedTuple

import pytest

from .doc_blocks import DOC_FILES, ROOT
from .helpers import run_python

FENCE = re.compile(r"^```(\w*)\n(.*?)^```[^\n]*$", re.S | re.M)
MARKER = re.compile(r"<!-- ((?:excerpt of )?[a-z][a-z-]*): (.+?) -->")
#: Marker kinds whose block another test runs or compares with a file that runs.
RUN_ELSEWHERE = {
    "source",
    "excerpt of source",
    "fastapi-source",
    "remote-source",
    "stall-source",
    "pytest-source",
    "django-source",
    "aiosqlite-source",
    "litestar-source",
    "hypercorn-source",
    "textual-source",
}


class Snippet(NamedTuple):
    home: str
    line: int
    marker: tuple[str, str] | None
    body: str


def python_snippets() -> list[Snippet]:
    out = []
    for path in DOC_FILES:
        text = path.read_text(encoding="utf-8")
        for m in FENCE.finditer(text):
            if m.group(1) != "python":
                continue
            before = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1]
            found = MARKER.fullmatch(before)
            marker = (found.group(1), found.group(2)) if found else None
            line = text.count("\n", 0, m.start()) + 1
            out.append(Snippet(path.relative_to(ROOT).as_posix(), line, marker, m.group(2)))
    return out


SNIPPETS = python_snippets()
TO_RUN = [s for s in SNIPPETS if s.marker is None]


def test_every_snippet_is_run_somewhere_or_says_why_not() -> None:
    for snippet in SNIPPETS:
        if snippet.marker is None:
            continue
        kind, name = snippet.marker
        assert kind in RUN_ELSEWHERE or kind == "not-run", (snippet.home, snippet.line, kind)
        if kind == "source":
            assert name.startswith("examples/"), name
        if kind == "not-run":
            assert len(name) > 10, "say why"


def test_the_snippets_found() -> None:
    """The count guards the parser: a snippet it missed would go unchecked."""
    assert len(SNIPPETS) == sum(len(re.findall(r"^```python$", p.read_text(encoding="utf-8"), re.M)) for p in DOC_FILES)
    assert len(TO_RUN) >= 8


@pytest.mark.parametrize("snippet", TO_RUN, ids=lambda s: f"{s.home}:{s.line}")
def test_snippet_runs_as_shown(snippet: Snippet, tmp_path: Path) -> None:
    if "dump_tasks_on_signal" in snippet.body and not hasattr(signal, "SIGUSR1"):
        pytest.skip("SIGUSR1 is POSIX-only")
    (tmp_path / "snippet.py").write_text(snippet.body, encoding="utf-8")
    result = run_python("snippet.py", cwd=tmp_path, env={"SENTRY_DSN": ""}, timeout=60)
    assert result.returncode == 0, (snippet.home, snippet.line, result.stderr)
    if "print_exception(exc)" in snippet.body:  # prints an exception on purpose, with its chain
        assert "\nValueError: bad record\n" in result.stderr
        assert "  --- task 'Task-2' created here ---\n" in result.stderr
    else:
        assert "Traceback" not in result.stderr, result.stderr
