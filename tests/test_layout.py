"""The package's layout rules, checked on its source: node fields are read by name outside the core."""

from __future__ import annotations

import ast
from pathlib import Path

import async_trace

PACKAGE = Path(async_trace.__file__).resolve().parent
#: The module that builds nodes: the only one that knows their layout.
CORE = "_chain.py"
#: Names the package gives to chain nodes (variables, attributes): never indexed by position elsewhere.
NODE_NAMES = frozenset({"node", "parent", "root", "marker", "hop", "prev", "nxt", "named", "current"})


def _positional_node_reads(tree: ast.AST) -> list[tuple[int, str]]:
    hits: list[tuple[int, str]] = []
    for sub in ast.walk(tree):
        if not isinstance(sub, ast.Subscript):
            continue
        target = sub.value
        name = target.id if isinstance(target, ast.Name) else target.attr if isinstance(target, ast.Attribute) else None
        index = sub.slice
        if name in NODE_NAMES and isinstance(index, ast.Constant) and isinstance(index.value, int):
            hits.append((sub.lineno, ast.unparse(sub)))
    return hits


def test_no_positional_node_access_outside_the_core() -> None:
    """``node[3]``-style reads appear only in _chain.py; everything else uses ``node.frames`` and the like."""
    found = {
        path.name: hits
        for path in sorted(PACKAGE.glob("*.py"))
        if path.name != CORE and (hits := _positional_node_reads(ast.parse(path.read_text(encoding="utf-8"))))
    }
    assert found == {}


def test_the_check_sees_positional_reads() -> None:
    """The check is not vacuous: it flags the forms it is meant to."""
    source = "node[3]\nself.parent[0]\nframes[0]\nnode.frames\nnode[i]\n"
    assert _positional_node_reads(ast.parse(source)) == [(1, "node[3]"), (2, "self.parent[0]")]
