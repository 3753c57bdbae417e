"""Samples in docs/ printed in the traceback style: each is what the example prints with style="traceback"."""

from __future__ import annotations

from pathlib import Path

import pytest

from .doc_blocks import ROOT, doc_blocks
from .helpers import run_python

SAMPLES = doc_blocks("traceback-sample")
#: The calls an example makes, and what the sample calls instead.
SWITCHES = {
    "print_trace()": 'print_trace(style="traceback")',
    "print_task_tree()": 'print_task_tree(style="traceback")',
}


def _runs(sample: str) -> list[list[str]]:
    """The sample's lines as runs, split at the lines ``...`` that stand for what it leaves out."""
    runs: list[list[str]] = [[]]
    for line in sample.splitlines():
        if line.strip() == "...":
            runs.append([])
        else:
            runs[-1].append(line)
    return [run for run in runs if run]


def _assert_runs_in_order(sample: str, lines: list[str]) -> None:
    """Each run of the sample's lines stands in ``lines``, contiguous, after the run before it."""
    start = 0
    for run in _runs(sample):
        found = next((i for i in range(start, len(lines)) if lines[i : i + len(run)] == run), None)
        assert found is not None, (run, lines)
        start = found + len(run)


def test_the_samples_exist() -> None:
    assert sorted(SAMPLES) == ["examples/basic_example.py", "examples/task_tree.py"]


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_traceback_sample_is_the_example_in_the_traceback_style(name: str, tmp_path: Path) -> None:
    """The example, with its print call in the traceback style, prints the sample's lines in order (paths aside)."""
    source = (ROOT / name).read_text(encoding="utf-8")
    switched = source
    for call, replacement in SWITCHES.items():
        switched = switched.replace(call, replacement)
    assert switched != source
    copy = tmp_path / name
    copy.parent.mkdir()
    copy.write_text(switched, encoding="utf-8")
    result = run_python(str(copy), cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.replace(str(tmp_path), "/path/to").splitlines()
    _assert_runs_in_order(SAMPLES[name], lines)
    if not any(line.strip() == "..." for line in SAMPLES[name].splitlines()):  # nothing left out
        assert lines == _runs(SAMPLES[name])[0]


STDERR_SAMPLES = doc_blocks("stderr-sample")


def test_the_stderr_samples_exist() -> None:
    assert sorted(STDERR_SAMPLES) == ["examples/crash_example.py --crash"]


@pytest.mark.parametrize("name", sorted(STDERR_SAMPLES))
def test_stderr_sample_is_what_the_example_prints(name: str) -> None:
    """``python EXAMPLE ARGS`` prints the sample's lines on stderr, in order (the examples' folder as /path/to)."""
    script, *args = name.split()
    result = run_python(str(ROOT / script), *args, cwd=ROOT, timeout=60)
    _assert_runs_in_order(STDERR_SAMPLES[name], result.stderr.replace(str(ROOT / "examples"), "/path/to").splitlines())
