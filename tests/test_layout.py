"""The package's layout rules, checked on its source.

``LAYERS`` is the one list to edit when a module is added, renamed or moved: every other rule here
reads it. The rules (each a pure function over ``{module name: source text}``, so that the tests
below can also run them on small made-up packages):

1. imports go down: a module imports only modules listed before it in ``LAYERS``
   (:func:`upward_imports`), and every module is listed (:func:`unlisted_modules`);
2. a package module is imported only at module level, never in a function, a class or under
   ``if TYPE_CHECKING:`` (:func:`nested_imports`);
3. no module writes another module's attributes (:func:`foreign_writes`) or looks a package module up
   in ``sys.modules`` (:func:`sys_modules_lookups`);
4. the Python version is read only in ``_compat`` and the CLI (:func:`version_checks`);

and each module can be imported first, before the rest of the package (:func:`first_import_failures`).
Module names are relative to the package, as in ``LAYERS``: ``_compat.py310``, and ``__init__`` for
the package's own ``__init__.py``.
"""

from __future__ import annotations

import ast
import asyncio
import importlib.machinery
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, NamedTuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import async_trace
from async_trace import TraceFrame, _capture, _chain, _collect, _config, _frames

PACKAGE = Path(async_trace.__file__).resolve().parent
PACKAGE_NAME: Final = "async_trace"
#: ``LAYERS``' name for the package's own ``__init__.py`` (a subpackage goes by its own name: ``_compat``).
ROOT: Final = "__init__"

Layers = Sequence[tuple[str, Sequence[str]]]

#: The package's modules, in the order imports go: a module may import only modules listed before
#: it. Two exceptions, both import-safe: a subpackage's ``__init__`` (``_compat``) may import its own
#: submodules, which must be listed right after it (and may not import it back); and any module may
#: import the top-level ``_async_trace_process`` (outside the package). A new module goes after
#: everything it imports and before everything that imports it; the test that finds one missing
#: says where.
LAYERS: Final[Layers] = [
    ("leaves", ["_version", "_types", "_failsafe", "_misuse", "_compat", "_compat.py310", "_compat.py311",
                "_compat.py312", "_compat.py314", "_ccore", "_speedups"]),
    ("core", ["_config", "_chain", "_hooks", "_stack", "_inapp", "_loops"]),
    ("lineage", ["_frames", "_contexts", "_lineage"]),
    ("collect", ["_collect", "_origins", "_process", "_discovery", "_census", "_stall_sample"]),
    ("render", ["_writer", "_render", "_render_line", "_render_tree", "_render_remote", "_stall_report"]),
    ("capture", ["_capture", "_direct_tasks", "_anyio", "_asgiref", "_aiosqlite"]),
    ("exceptions", ["_notes", "_restyle", "_notes_py310", "_record_unwind", "_record_callbacks", "_recorders",
                    "_display", "_exceptions"]),
    ("products", ["_tree", "_json", "_dump", "_stall_summary", "_stall", "_stall_env"]),
    ("shell", ["_api", ROOT]),
    ("integrations", ["logging", "_stall_otel", "otel", "sentry", "_pytest_support", "pytest_plugin", "_pstree",
                      "_children", "__main__"]),
]  # fmt: skip

#: The modules that may read the Python version: the one place that chooses per version, and the
#: command line (which reports the version and checks the one of a process it attaches to).
VERSION_READERS: Final = ("_compat", "__main__", "_pstree", "_children")


class Finding(NamedTuple):
    """One breach of a rule: where, what (the imported module, the attribute written...) and why."""

    module: str
    line: int
    what: str
    why: str


class PackageImport(NamedTuple):
    """One package module imported by one module: where, and the scope of the import statement."""

    module: str
    line: int
    imported: str
    #: ``""`` at module level; else ``"def f"``, ``"class C"``, ``"def C.m"`` or ``"if TYPE_CHECKING"``.
    scope: str


def _parent(name: str) -> str:
    """``"_compat"`` for ``"_compat.py310"``; ``""`` (the package itself) for ``"_api"``."""
    return name.rpartition(".")[0]


def _join(base: str, name: str) -> str:
    return f"{base}.{name}" if base and name else base or name


def _listed(layers: Layers) -> list[str]:
    return [module for _, modules in layers for module in modules]


def _subpackages(names: set[str]) -> set[str]:
    """The names that have submodules among ``names`` (the top-level package is not one of them)."""
    return {_parent(name) for name in names if _parent(name)}


def _ranks(layers: Layers, subpackages: set[str]) -> dict[str, int]:
    """Each listed module's place in the import order.

    A subpackage's ``__init__`` counts as listed right after its last submodule: it may import them
    (that is how it chooses among them) and they may not import it (it would be a cycle). With the
    submodules listed right after the package (:func:`layers_problems`), this moves no one else, and
    every allowed import goes strictly down one total order: no cycle can pass.
    """
    order = _listed(layers)
    for package in sorted(subpackages & set(order), key=lambda name: -name.count(".")):  # innermost first
        members = [name for name in order if name.startswith(f"{package}.")]
        if members:
            order.remove(package)
            order.insert(order.index(members[-1]) + 1, package)
    return {name: index for index, name in enumerate(order)}


def layers_problems(layers: Layers) -> list[str]:
    """What makes a ``LAYERS`` list unusable: a module listed twice, a subpackage's submodules not
    listed together right after it."""
    listed = _listed(layers)
    problems = [
        f"{name!r} is listed {listed.count(name)} times" for name in sorted(set(listed)) if listed.count(name) > 1
    ]
    for index, name in enumerate(listed):
        package = _parent(name)
        if not package:
            continue
        if package not in listed:
            problems.append(f"{name!r} is listed but its package {package!r} is not: list the package first")
        elif not all(other.startswith(f"{package}.") for other in listed[listed.index(package) + 1 : index]):
            problems.append(f"{name!r} is not listed right after its package {package!r} and its other submodules")
    return problems


class _Package:
    """What the rules need to know about a package given as ``{module name: source text}``."""

    def __init__(self, sources: Mapping[str, str], layers: Layers, name: str) -> None:
        self.name = name
        self.listed = _listed(layers)
        self.layer_of = {module: layer for layer, modules in layers for module in modules}
        self.known = set(sources) | set(self.listed)
        self.subpackages = _subpackages(self.known)
        self.rank = _ranks(layers, self.subpackages)
        self.trees = {module: ast.parse(source, filename=module) for module, source in sources.items()}
        self.found = list(self._imports())

    def _path(self, module: str) -> str:
        """The dotted path under the package: ``""`` for the package's own ``__init__``."""
        return "" if module == ROOT else module

    def _module(self, path: str) -> str:
        return path or ROOT

    def resolve(self, module: str, stmt: ast.Import | ast.ImportFrom) -> list[tuple[str, str, str | None]]:
        """``(imported module, name bound, module that name is)`` for each package module ``stmt`` imports.

        ``from . import x`` imports the submodule ``x`` if there is one, else the package itself
        (``x`` is then one of its attributes); ``import async_trace.x`` binds ``async_trace``.
        """
        found: list[tuple[str, str, str | None]] = []
        if isinstance(stmt, ast.Import):
            for alias in stmt.names:
                path = self._below_package(alias.name)
                if path is not None:
                    imported = self._module(path)
                    if alias.asname:
                        found.append((imported, alias.asname, imported))
                    else:
                        found.append((imported, alias.name.partition(".")[0], ROOT))
            return found
        if stmt.level:
            path = self._path(module)
            base: str | None = path if module == ROOT or path in self.subpackages else _parent(path)
            for _ in range(stmt.level - 1):
                base = None if not base else _parent(base)
            source = None if base is None else _join(base, stmt.module or "")
        else:
            source = self._below_package(stmt.module or "")
        if source is None:
            return found
        for alias in stmt.names:
            submodule = _join(source, alias.name)
            if alias.name != "*" and submodule in self.known:
                found.append((submodule, alias.asname or alias.name, submodule))
            else:
                found.append((self._module(source), alias.asname or alias.name, None))
        return found

    def _below_package(self, dotted: str) -> str | None:
        """``"x.y"`` for ``"<package>.x.y"``, ``""`` for the package itself, ``None`` for anything else."""
        if dotted == self.name:
            return ""
        if dotted.startswith(f"{self.name}."):
            return dotted[len(self.name) + 1 :]
        return None

    def _imports(self) -> Iterator[tuple[PackageImport, str, str | None]]:
        """Every import of a package module, anywhere, with the name it binds and the module that name is."""
        for module, tree in self.trees.items():
            for stmt, scope in _import_statements(tree, ""):
                for imported, bound, bound_module in self.resolve(module, stmt):
                    yield PackageImport(module, stmt.lineno, imported, scope), bound, bound_module

    def module_names(self, module: str) -> dict[str, str]:
        """The names ``module`` binds to package modules by importing them (in any scope)."""
        return {
            bound: bound_module
            for found, bound, bound_module in self.found
            if found.module == module and bound_module is not None
        }

    def module_of(self, expr: ast.expr, names: Mapping[str, str]) -> str | None:
        """The package module ``expr`` denotes (``_chain``, ``async_trace._chain``), if it is one."""
        if isinstance(expr, ast.Name):
            return names.get(expr.id)
        if isinstance(expr, ast.Attribute):
            owner = self.module_of(expr.value, names)
            if owner is not None:
                submodule = _join(self._path(owner), expr.attr)
                if submodule in self.known:
                    return submodule
        return None


def _type_checking_test(test: ast.expr) -> bool | None:
    """``True`` for ``TYPE_CHECKING`` (its body is for type checkers only), ``False`` for ``not
    TYPE_CHECKING`` (its ``else`` is), ``None`` for any other test."""
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        return None if _type_checking_test(test.operand) is None else False
    name = test.id if isinstance(test, ast.Name) else test.attr if isinstance(test, ast.Attribute) else None
    return True if name == "TYPE_CHECKING" else None


def _import_statements(node: ast.AST, scope: str) -> Iterator[tuple[ast.Import | ast.ImportFrom, str]]:
    """Every import statement under ``node``, with the scope it runs in: ``""`` for the module's own
    code (its ``if``, ``try`` and ``with`` blocks included)."""
    for child in ast.iter_child_nodes(node):
        yield from _imports_in(child, scope)


def _imports_in(node: ast.AST, scope: str) -> Iterator[tuple[ast.Import | ast.ImportFrom, str]]:
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield node, scope
    elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        kind = "class" if isinstance(node, ast.ClassDef) else "def"
        outer = scope.partition(" ")[2] if scope.startswith(("def ", "class ")) else ""
        yield from _import_statements(node, f"{kind} {_join(outer, node.name)}")
    elif isinstance(node, ast.If) and (typing_only := _type_checking_test(node.test)) is not None:
        for_type_checkers, at_run_time = (node.body, node.orelse) if typing_only else (node.orelse, node.body)
        for stmt in for_type_checkers:
            yield from _imports_in(stmt, scope or "if TYPE_CHECKING")
        for stmt in at_run_time:
            yield from _imports_in(stmt, scope)
    else:
        yield from _import_statements(node, scope)


def package_imports(
    sources: Mapping[str, str], *, layers: Layers = LAYERS, package: str = PACKAGE_NAME
) -> list[PackageImport]:
    """Every import of a package module in ``sources``: ``from . import x``, ``from .x import y``,
    ``from ._compat import z``, ``import async_trace.x``, ``from async_trace import x``, relative
    imports from inside a subpackage; in any scope."""
    return sorted({found for found, _, _ in _Package(sources, layers, package).found})


def upward_imports(
    sources: Mapping[str, str], *, layers: Layers = LAYERS, package: str = PACKAGE_NAME
) -> list[Finding]:
    """Rule 1: each import of a package module goes to a module listed before the importer.

    Imports of or by a module missing from ``layers`` are left to :func:`unlisted_modules`; a module
    importing itself (``__main__``'s ``from async_trace.__main__ import main``) is no cycle.
    """
    pkg = _Package(sources, layers, package)
    findings: set[Finding] = set()
    for found, _, _ in pkg.found:
        module, imported = found.module, found.imported
        if imported == module or module not in pkg.rank or imported not in pkg.rank:
            continue
        if pkg.rank[imported] < pkg.rank[module]:
            continue
        if module.startswith(f"{imported}."):
            why = f"{module} imports its own package {imported}, whose __init__ imports its submodules"
        else:
            why = (
                f"{module} ({pkg.layer_of[module]}) imports {imported} ({pkg.layer_of[imported]}), "
                "which LAYERS puts after it"
            )
        findings.add(Finding(module, found.line, imported, why))
    return sorted(findings)


def unlisted_modules(sources: Mapping[str, str], *, layers: Layers = LAYERS, package: str = PACKAGE_NAME) -> list[str]:
    """The modules (found in ``sources`` or imported by them) missing from ``layers``, each with where
    to add it: after every listed module it imports, before every listed module that imports it."""
    pkg = _Package(sources, layers, package)
    edges = {(found.module, found.imported) for found, _, _ in pkg.found if found.module != found.imported}

    def named(module: str) -> str:
        after = " and its submodules" if module in pkg.subpackages else ""
        return f"{module}{after} ({pkg.layer_of[module]})"

    messages = []
    for module in sorted((set(sources) | {imported for _, imported in edges}) - set(pkg.listed)):
        below = [imported for importer, imported in edges if importer == module and imported in pkg.rank]
        above = [importer for importer, imported in edges if imported == module and importer in pkg.rank]
        low = max(below, key=pkg.rank.__getitem__, default=None)
        high = min(above, key=pkg.rank.__getitem__, default=None)
        if low is not None and high is not None and pkg.rank[low] >= pkg.rank[high]:
            advice = (
                f"no place keeps imports going down: it imports {named(low)} but is imported by {named(high)}, "
                "listed before it; move code so that one of these imports goes"
            )
        elif low is not None and high is not None:
            advice = f"add it after {named(low)} and before {named(high)}"
        elif low is not None:
            advice = f"add it anywhere after {named(low)}, the last listed module it imports"
        elif high is not None:
            advice = f"add it anywhere before {named(high)}, the first listed module importing it"
        else:
            advice = "add it to the layer of what it does (it imports no listed module and none imports it)"
        if _parent(module) in pkg.rank:
            advice += f"; with the other submodules of {_parent(module)}, which follow it in LAYERS"
        messages.append(f"{module} is not in LAYERS (tests/test_layout.py): {advice}")
    return messages


def nested_imports(
    sources: Mapping[str, str], *, layers: Layers = LAYERS, package: str = PACKAGE_NAME
) -> list[Finding]:
    """Rule 2: package modules are imported by the module's own code only: never in a function or a
    class, nor under ``if TYPE_CHECKING:``. A module-level ``try: from ._x import y`` / ``except
    ImportError:`` (how a compiled core is chosen) or ``if``/``else`` (how a variant is) is fine."""
    return [
        Finding(found.module, found.line, found.imported, f"imported inside {found.scope}")
        for found in package_imports(sources, layers=layers, package=package)
        if found.scope
    ]


def foreign_writes(
    sources: Mapping[str, str], *, layers: Layers = LAYERS, package: str = PACKAGE_NAME
) -> list[Finding]:
    """Rule 3a: no module writes another module's attributes: ``mod.name = ...``, ``mod.name += ...``,
    ``del mod.name``, ``setattr(mod, ...)``, ``delattr(mod, ...)``, nor items of them
    (``mod.table[key] = ...``, ``mod.__dict__[key] = ...``), where ``mod`` is a package module bound
    by an import. (Calling the owner's functions, which may change its state, is the way.)"""
    pkg = _Package(sources, layers, package)
    findings: set[Finding] = set()
    for module, tree in pkg.trees.items():
        names = pkg.module_names(module)
        if not names:
            continue
        for node in ast.walk(tree):
            if not isinstance(node, ast.expr):
                continue
            found: tuple[str | None, str, str] | None = None
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store | ast.Del):
                verb = "deletes" if isinstance(node.ctx, ast.Del) else "assigns"
                found = (pkg.module_of(node.value, names), node.attr, f"{verb} an attribute of")
            elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store | ast.Del):
                owner = node.value
                if isinstance(owner, ast.Attribute):
                    found = (pkg.module_of(owner.value, names), owner.attr, "writes an item into")
                elif (
                    isinstance(owner, ast.Call)
                    and isinstance(owner.func, ast.Name)
                    and owner.func.id == "vars"
                    and owner.args
                ):
                    found = (pkg.module_of(owner.args[0], names), "__dict__", "writes an item into")
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("setattr", "delattr")
                and len(node.args) >= 2
            ):
                name = node.args[1]
                attr = name.value if isinstance(name, ast.Constant) and isinstance(name.value, str) else "?"
                found = (pkg.module_of(node.args[0], names), attr, f"{node.func.id}() on")
            if found is not None and found[0] is not None and found[0] != module:
                owner_module, attr, verb = found
                findings.add(Finding(module, node.lineno, f"{owner_module}.{attr}", f"{module} {verb} {owner_module}"))
    return sorted(findings)


def _string_constants(tree: ast.Module) -> dict[str, str]:
    """The module's top-level ``NAME = "text"`` (and ``NAME: Final = "text"``) constants."""
    constants: dict[str, str] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
            target, value = stmt.targets[0], stmt.value
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
            target, value = stmt.target, stmt.value
        else:
            continue
        if isinstance(target, ast.Name) and isinstance(value, ast.Constant) and isinstance(value.value, str):
            constants[target.id] = value.value
    return constants


def _aliases(tree: ast.Module) -> tuple[dict[str, str], dict[str, str]]:
    """The names bound to other modules (``import sys as s``: ``{"s": "sys"}``) and to their attributes
    (``from sys import modules as m``: ``{"m": "sys.modules"}``), in any scope."""
    modules: dict[str, str] = {}
    attributes: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.partition(".")[0]
                modules[alias.asname or top] = alias.name if alias.asname else top
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            attributes |= {alias.asname or alias.name: f"{node.module}.{alias.name}" for alias in node.names}
    return modules, attributes


def sys_modules_lookups(
    sources: Mapping[str, str], *, layers: Layers = LAYERS, package: str = PACKAGE_NAME
) -> list[Finding]:
    """Rule 3b: no module looks a package module up in ``sys.modules`` (``sys.modules.get("async_trace._dump")``,
    ``sys.modules[f"{__package__}.{name}"]``, ``.pop``, ``.setdefault``, ``in``): a module imports what it uses.

    A key names a package module when it is, starts with or is built from the package's name
    (directly or through a string constant of a package module) or ``__package__``/``__spec__``;
    ``sys.modules[__name__]`` (the module itself) and other libraries' modules are fine.
    """
    pkg = _Package(sources, layers, package)
    constants = {module: _string_constants(tree) for module, tree in pkg.trees.items()}
    findings: set[Finding] = set()

    def names_package(key: ast.expr, module: str, names: Mapping[str, str]) -> bool:
        for node in ast.walk(key):
            text: str | None = None
            if isinstance(node, ast.Name):
                if node.id in ("__package__", "__spec__") or (node.id == "__name__" and node is not key):
                    return True
                text = constants[module].get(node.id)
            elif isinstance(node, ast.Attribute):
                owner = pkg.module_of(node.value, names)
                text = constants.get(owner or "", {}).get(node.attr)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                text = node.value
            if text is not None and (text == package or text.startswith(f"{package}.")):
                return True
        return False

    for module, tree in pkg.trees.items():
        aliases = _aliases(tree)
        names = pkg.module_names(module)
        for node in ast.walk(tree):
            keys: list[ast.expr] = []
            if isinstance(node, ast.Subscript) and _is_sys_modules(node.value, aliases):
                keys.append(node.slice)
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and _is_sys_modules(node.func.value, aliases)
                and node.func.attr in ("get", "pop", "setdefault", "__getitem__", "__contains__")
                and node.args
            ):
                keys.append(node.args[0])
            elif isinstance(node, ast.Compare):
                operands = [node.left, *node.comparators]
                keys += [
                    operands[index]
                    for index, (op, right) in enumerate(zip(node.ops, node.comparators, strict=True))
                    if isinstance(op, ast.In | ast.NotIn) and _is_sys_modules(right, aliases)
                ]
            findings |= {
                Finding(module, key.lineno, ast.unparse(key), f"{module} looks a package module up in sys.modules")
                for key in keys
                if names_package(key, module, names)
            }
    return sorted(findings)


def _is_sys_modules(expr: ast.expr, aliases: tuple[dict[str, str], dict[str, str]]) -> bool:
    """``sys.modules``, however ``sys`` or ``modules`` was imported (see :func:`_aliases`)."""
    modules, attributes = aliases
    if isinstance(expr, ast.Name):
        return attributes.get(expr.id) == "sys.modules"
    return (
        isinstance(expr, ast.Attribute)
        and expr.attr == "modules"
        and isinstance(expr.value, ast.Name)
        and modules.get(expr.value.id) == "sys"
    )


#: What reads the Python version.
_VERSION_READS: Final = frozenset(
    {"sys.version_info", "sys.version", "sys.hexversion", "platform.python_version", "platform.python_version_tuple"}
)


def version_checks(sources: Mapping[str, str], *, readers: Sequence[str] = VERSION_READERS) -> list[Finding]:
    """Rule 4: the Python version (``sys.version_info``, ``sys.version``, ``sys.hexversion``,
    ``platform.python_version()``) is read only in ``readers`` and their submodules: the rest asks
    ``_compat`` for the fact it needs (``HAS_NOTES``, ``task_context(task)``)."""
    findings: set[Finding] = set()
    for module, source in sources.items():
        if any(module == reader or module.startswith(f"{reader}.") for reader in readers):
            continue
        tree = ast.parse(source, filename=module)
        modules, attributes = _aliases(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.expr):
                continue
            read = None
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules:
                read = f"{modules[node.value.id]}.{node.attr}"
            elif isinstance(node, ast.Name):
                read = attributes.get(node.id)
            if read in _VERSION_READS:
                findings.add(Finding(module, node.lineno, read, f"{module} reads the Python version"))
    return sorted(findings)


def package_sources(directory: Path) -> dict[str, str]:
    """``{module name: source text}`` for the package in ``directory`` (``async_trace/**/*.py``).

    A compiled module (``_core_c.cpython-313-x86_64-linux-gnu.so``) is there too, with no text: it
    imports nothing these checks can see, but it must be in ``LAYERS`` and import first like any other.
    One built for another Python (``.cpython-311-...`` seen from 3.12) is not this interpreter's module.
    """
    sources: dict[str, str] = {}
    for path in sorted(directory.rglob("*")):
        if "__pycache__" in path.parts or not path.is_file():
            continue
        relative = path.relative_to(directory)
        suffix = next((end for end in importlib.machinery.EXTENSION_SUFFIXES if path.name.endswith(end)), None)
        if path.suffix == ".py":
            parts, text = relative.with_suffix("").parts, path.read_text(encoding="utf-8")
        elif suffix is not None:
            if "." in path.name.removesuffix(suffix):
                continue  # built for another interpreter (a checkout used by several Pythons)
            parts, text = (*relative.parent.parts, path.name.removesuffix(suffix)), ""
        else:
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        sources[".".join(parts) or ROOT] = text
    return sources


#: The program of :func:`first_import_failures`: ``python -c _IMPORT_FIRST ROOT PRELOAD MODULE:MODE...``.
#: Importing ``async_trace.x`` runs ``async_trace/__init__.py`` first, which imports the package in
#: its own order before ``x``: every module would be imported in that one order. So for each
#: ``MODULE`` in ``first`` mode the packages above it are created but not run, the module is imported
#: first (then what it imports, in its order), then each package's ``__init__`` runs, innermost
#: first. Each module is imported in a child forked from this program once it has imported
#: ``PRELOAD`` (the standard library modules the package imports: their cost is paid once, and they
#: do not import the package); where there is no ``fork``, in this program itself. Prints one line
#: per module that fails: the module, a tab, the last line of its error.
_IMPORT_FIRST: Final = textwrap.dedent(
    """
    import importlib, importlib.machinery, importlib.util, os, sys, traceback

    def import_first(root, name, first):
        parts = name.split(".")
        packages = []
        path = None
        try:
            for depth in range(1, len(parts) if first else 1):
                spec = importlib.machinery.PathFinder.find_spec(".".join(parts[:depth]), path)
                package = importlib.util.module_from_spec(spec)
                sys.modules[spec.name] = package
                if packages:
                    setattr(packages[-1][0], parts[depth - 1], package)
                packages.append((package, spec))
                path = spec.submodule_search_locations
            module = importlib.import_module(name)
            for package, spec in reversed(packages):
                spec.loader.exec_module(package)
        except BaseException as exc:  # whatever importing the module raises is the finding
            causes = [exc]
            while causes[-1] is not None and len(causes) < 10:
                causes.append(causes[-1].__cause__ or causes[-1].__context__)
            for cause in causes:
                # Another distribution missing (OpenTelemetry for async_trace.otel) is no layout problem.
                if isinstance(cause, ModuleNotFoundError) and (cause.name or parts[0]).partition(".")[0] != parts[0]:
                    return ""
            return traceback.format_exception_only(type(exc), exc)[-1].strip()
        where = os.path.realpath(module.__file__)
        if not where.startswith(os.path.realpath(root) + os.sep):
            return f"imported from {where}, not from {root}"
        return ""

    def reap():
        pid, status = os.waitpid(-1, 0)
        name, reader = running.pop(pid)
        with os.fdopen(reader, "rb") as pipe:
            text = pipe.read().decode("utf-8", "replace")
        errors[name] = text or ("" if status == 0 else f"exit status {status}")

    root, preload, *jobs = sys.argv[1:]
    sys.path.insert(0, root)
    report = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # what the modules print goes to stderr, not into the report
    for name in filter(None, preload.split(",")):
        try:
            importlib.import_module(name)
        except Exception:  # a module of another platform: the package's own import decides
            pass
    errors = {}
    running = {}
    for job in jobs:
        name, _, mode = job.rpartition(":")
        if not hasattr(os, "fork"):  # then there is one job
            errors[name] = import_first(root, name, mode == "first")
            continue
        while len(running) >= 2:
            reap()
        reader, writer = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(reader)
            try:
                os.write(writer, import_first(root, name, mode == "first").encode()[:4000])
            finally:
                os._exit(0)
        os.close(writer)
        running[pid] = (name, reader)
    while running:
        reap()
    for name, error in errors.items():
        if error:
            report.write(f"{name}\\t{error.splitlines()[-1]}\\n")
    report.flush()
    """
)


def first_import_failures(
    root: Path, package: str, modules: Mapping[str, bool], *, preload: Sequence[str] = ()
) -> dict[str, str]:
    """Import each module of ``package`` (found in ``root``) in its own fresh process; the last line
    of the error of each that fails.

    ``modules`` maps each module name to whether it is imported *first*, before its packages'
    ``__init__`` (see ``_IMPORT_FIRST``); else as usual, after them (for the modules listed after the
    package's ``__init__``: they always run after it). ``preload``: standard library modules imported
    once before. A module that needs another distribution that is not installed does not fail.
    """
    jobs = [
        f"{package if module == ROOT else f'{package}.{module}'}:{'first' if first else 'after'}"
        for module, first in modules.items()
    ]
    runs = [jobs] if hasattr(os, "fork") else [[job] for job in jobs]
    failures: dict[str, str] = {}
    for run in runs:
        command = [sys.executable, "-B", "-c", _IMPORT_FIRST, str(root), ",".join(preload), *run]
        done = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        for line in done.stdout.splitlines():
            name, _, error = line.partition("\t")
            failures[ROOT if name == package else name.removeprefix(f"{package}.")] = error
    return failures


def stdlib_imports(sources: Mapping[str, str]) -> list[str]:
    """The standard library modules ``sources`` import (``asyncio.base_events``, ``concurrent.futures``)."""
    names: set[str] = set()
    for source in sources.values():
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module)
    return sorted(name for name in names if name.partition(".")[0] in sys.stdlib_module_names)


def _runs_here(module: str) -> bool:
    """Whether this Python imports ``module``: ``_compat.py314`` is chosen on 3.14 and later only."""
    found = re.fullmatch(r"(?:.*\.)?py3(\d+)", module)
    return found is None or sys.version_info >= (3, int(found[1]))


# The rules on the package itself.

SOURCES: Final = package_sources(PACKAGE)


def _explain(findings: Sequence[Finding]) -> str:
    def file(module: str) -> str:
        path = "__init__" if module == ROOT else module.replace(".", "/")
        return f"{path}/__init__.py" if any(name.startswith(f"{module}.") for name in SOURCES) else f"{path}.py"

    return "\n".join(f"{PACKAGE_NAME}/{file(f.module)}:{f.line}: {f.what}: {f.why}" for f in findings)


def test_layers_list_is_well_formed() -> None:
    assert layers_problems(LAYERS) == []


def test_every_module_is_in_layers() -> None:
    missing = unlisted_modules(SOURCES)
    assert missing == [], "\n".join(missing)


def test_imports_go_down_the_layers() -> None:
    found = upward_imports(SOURCES)
    assert found == [], _explain(found)


def test_package_modules_are_imported_at_module_level() -> None:
    found = nested_imports(SOURCES)
    assert found == [], _explain(found)


def test_no_module_writes_another_modules_attributes() -> None:
    found = foreign_writes(SOURCES)
    assert found == [], _explain(found)


def test_no_module_looks_package_modules_up_in_sys_modules() -> None:
    found = sys_modules_lookups(SOURCES)
    assert found == [], _explain(found)


def test_python_version_is_read_only_in_compat_and_the_cli() -> None:
    found = version_checks(SOURCES)
    assert found == [], _explain(found)


def test_each_module_imports_first_in_a_fresh_interpreter() -> None:
    """An import cycle that bites only when another module is imported first fails here."""
    position = {name: index for index, name in enumerate(_listed(LAYERS))}
    modules = {module: position.get(module, -1) < position[ROOT] for module in SOURCES if _runs_here(module)}
    assert first_import_failures(PACKAGE.parent, PACKAGE_NAME, modules, preload=stdlib_imports(SOURCES)) == {}


# The rules on a small made-up package ("toy"), to show each one fails on what it forbids.

TOY_LAYERS: Final[Layers] = [
    ("leaves", ["_base", "_compat", "_compat.py310", "_compat.py311"]),
    ("middle", ["_fast", "_a", "_b"]),
    ("shell", [ROOT]),
    ("cli", ["cli"]),
]
TOY_READERS: Final = ("_compat", "cli")
TOY: Final[Mapping[str, str]] = {
    ROOT: "from ._b import b as b\n",
    "_base": 'NAME = "toy"\n',
    "_compat": textwrap.dedent(
        """\
        import sys

        if sys.version_info >= (3, 11):
            from .py311 import HAS_NOTES
        else:
            from .py310 import HAS_NOTES
        """
    ),
    "_compat.py310": "from .._base import NAME\n\nHAS_NOTES = False\n",
    "_compat.py311": "from .py310 import *\n\nHAS_NOTES = True\n",
    "_a": textwrap.dedent(
        """\
        from . import _base
        from ._compat import HAS_NOTES

        try:
            from ._fast import a  # the compiled twin, when built
        except ImportError:

            def a() -> bool:
                return HAS_NOTES


        flag = False


        def set_flag(on: bool) -> None:
            global flag
            flag = on
        """
    ),
    "_b": textwrap.dedent(
        """\
        import sys

        from . import _a, _base


        def b() -> bool:
            _a.set_flag(True)
            return sys.modules.get("uvloop") is None and sys.modules[__name__] is not None
        """
    ),
    "cli": textwrap.dedent(
        """\
        import sys

        import toy
        from toy import _b

        print(toy.b(), _b.b(), sys.version_info)
        """
    ),
}


def _toy(changes: Mapping[str, str]) -> dict[str, str]:
    return {**TOY, **changes}


def _line(source: str, marker: str) -> int:
    """The number of the one line of ``source`` that ends in ``# <marker>``."""
    lines = [number for number, text in enumerate(source.splitlines(), 1) if text.endswith(f"# {marker}")]
    assert len(lines) == 1, marker
    return lines[0]


def test_the_toy_package_passes_every_rule() -> None:
    assert layers_problems(TOY_LAYERS) == []
    assert unlisted_modules(TOY, layers=TOY_LAYERS, package="toy") == []
    assert upward_imports(TOY, layers=TOY_LAYERS, package="toy") == []
    assert nested_imports(TOY, layers=TOY_LAYERS, package="toy") == []
    assert foreign_writes(TOY, layers=TOY_LAYERS, package="toy") == []
    assert sys_modules_lookups(TOY, layers=TOY_LAYERS, package="toy") == []
    assert version_checks(TOY, readers=TOY_READERS) == []


def test_every_spelling_of_an_import_names_the_module_it_imports() -> None:
    forms = textwrap.dedent(
        """\
        import os
        import _async_trace_process
        from . import _a  # dot
        from ._a import a  # dot-module
        from ._compat import HAS_NOTES  # compat
        from ._compat import py310  # compat-submodule
        import toy._a  # absolute
        import toy._compat.py311 as p  # absolute-as
        from toy import _a as a2  # from-package
        from toy import b  # package-attribute
        from toy._compat.py310 import HAS_NOTES as H  # absolute-from
        """
    )
    inside = textwrap.dedent(
        """\
        from .py310 import *  # star
        from .. import _base  # up
        from .._base import NAME  # up-module
        from . import HAS_NOTES  # own-package
        """
    )
    found = package_imports(_toy({"_b": forms, "_compat.py311": inside}), layers=TOY_LAYERS, package="toy")
    expected = [
        ("_b", "dot", "_a"),
        ("_b", "dot-module", "_a"),
        ("_b", "compat", "_compat"),
        ("_b", "compat-submodule", "_compat.py310"),
        ("_b", "absolute", "_a"),
        ("_b", "absolute-as", "_compat.py311"),
        ("_b", "from-package", "_a"),
        ("_b", "package-attribute", ROOT),
        ("_b", "absolute-from", "_compat.py310"),
        ("_compat.py311", "star", "_compat.py310"),
        ("_compat.py311", "up", "_base"),
        ("_compat.py311", "up-module", "_base"),
        ("_compat.py311", "own-package", "_compat"),
    ]
    sources = {"_b": forms, "_compat.py311": inside}
    assert [found for found in found if found.module in sources] == sorted(
        PackageImport(module, _line(sources[module], marker), imported, "") for module, marker, imported in expected
    )


@pytest.mark.parametrize("first", ["_x", "_y"])
def test_a_cycle_of_two_modules_fails_whichever_is_listed_first(first: str) -> None:
    second = "_y" if first == "_x" else "_x"
    layers = [("one", [first, second]), ("shell", [ROOT])]
    cycle = {"_x": "from . import _y  # x-to-y\n", "_y": "from ._x import X  # y-to-x\nX = 1\n"}
    assert upward_imports(cycle, layers=layers, package="toy") == [
        Finding(
            first,
            _line(cycle[first], "x-to-y" if first == "_x" else "y-to-x"),
            second,
            f"{first} (one) imports {second} (one), which LAYERS puts after it",
        )
    ]
    corrected = {**cycle, first: ""}
    assert upward_imports(corrected, layers=layers, package="toy") == []


def test_an_upward_import_fails() -> None:
    base = TOY["_base"] + "from ._a import a  # up\n"
    compat_py310 = "from .. import _b  # out\n\nHAS_NOTES = False\n"
    compat_py311 = "from . import HAS_NOTES  # own\n"
    package = "from . import cli  # above\n"
    bad = _toy({"_base": base, "_compat.py310": compat_py310, "_compat.py311": compat_py311, ROOT: package})
    assert upward_imports(bad, layers=TOY_LAYERS, package="toy") == [
        Finding(ROOT, _line(package, "above"), "cli", "__init__ (shell) imports cli (cli), which LAYERS puts after it"),
        Finding("_base", _line(base, "up"), "_a", "_base (leaves) imports _a (middle), which LAYERS puts after it"),
        Finding(
            "_compat.py310",
            _line(compat_py310, "out"),
            "_b",
            "_compat.py310 (leaves) imports _b (middle), which LAYERS puts after it",
        ),
        Finding(
            "_compat.py311",
            _line(compat_py311, "own"),
            "_compat",
            "_compat.py311 imports its own package _compat, whose __init__ imports its submodules",
        ),
    ]
    assert upward_imports(TOY, layers=TOY_LAYERS, package="toy") == []


def test_a_module_missing_from_layers_fails_saying_where_to_add_it() -> None:
    between = _toy({"_new": "from . import _base\n", "_b": TOY["_b"] + "from . import _new\n"})
    nowhere = _toy({"_new": "from . import _b\n", "_a": TOY["_a"] + "from . import _new\n"})
    alone = _toy({"_compat.py312": "HAS_NOTES = True\n", "_b": TOY["_b"] + "from ._gone import x\n"})
    assert unlisted_modules(between, layers=TOY_LAYERS, package="toy") == [
        "_new is not in LAYERS (tests/test_layout.py): add it after _base (leaves) and before _b (middle)"
    ]
    assert unlisted_modules(nowhere, layers=TOY_LAYERS, package="toy") == [
        "_new is not in LAYERS (tests/test_layout.py): no place keeps imports going down: it imports _b (middle) "
        "but is imported by _a (middle), listed before it; move code so that one of these imports goes"
    ]
    assert unlisted_modules(alone, layers=TOY_LAYERS, package="toy") == [
        "_compat.py312 is not in LAYERS (tests/test_layout.py): add it to the layer of what it does (it imports no "
        "listed module and none imports it); with the other submodules of _compat, which follow it in LAYERS",
        "_gone is not in LAYERS (tests/test_layout.py): add it anywhere before _b (middle), the first listed module "
        "importing it",
    ]
    above_compat = _toy({"_new": "from ._compat import HAS_NOTES\n"})
    assert unlisted_modules(above_compat, layers=TOY_LAYERS, package="toy") == [
        "_new is not in LAYERS (tests/test_layout.py): add it anywhere after _compat and its submodules (leaves), "
        "the last listed module it imports"
    ]
    listed = [*TOY_LAYERS[:1], ("middle", ["_fast", "_a", "_new", "_b"]), *TOY_LAYERS[2:]]
    assert unlisted_modules(between, layers=listed, package="toy") == []
    assert upward_imports(between, layers=listed, package="toy") == []


def test_a_badly_formed_layers_list_fails() -> None:
    layers = [("one", ["_a", "_compat", "_b", "_compat.py310", "_a", "_gone.x"])]
    assert layers_problems(layers) == [
        "'_a' is listed 2 times",
        "'_compat.py310' is not listed right after its package '_compat' and its other submodules",
        "'_gone.x' is listed but its package '_gone' is not: list the package first",
    ]
    assert layers_problems([("one", ["_a", "_compat", "_compat.py310", "_b", "_gone", "_gone.x"])]) == []


def test_an_import_in_a_function_or_a_class_or_for_type_checkers_fails() -> None:
    late = TOY["_b"] + textwrap.dedent(
        """\


        def late() -> None:
            from ._a import a  # in-function

            class Inner:
                from . import _base  # in-method-class


        class Holder:
            def method(self) -> None:
                import toy._a  # in-method


        from typing import TYPE_CHECKING
        if TYPE_CHECKING:
            from ._a import a  # typing
        if not TYPE_CHECKING:
            pass
        else:
            from ._base import NAME  # typing-else
        """
    )
    assert nested_imports(_toy({"_b": late}), layers=TOY_LAYERS, package="toy") == [
        Finding("_b", _line(late, "in-function"), "_a", "imported inside def late"),
        Finding("_b", _line(late, "in-method-class"), "_base", "imported inside class late.Inner"),
        Finding("_b", _line(late, "in-method"), "_a", "imported inside def Holder.method"),
        Finding("_b", _line(late, "typing"), "_a", "imported inside if TYPE_CHECKING"),
        Finding("_b", _line(late, "typing-else"), "_base", "imported inside if TYPE_CHECKING"),
    ]
    # Corrected: the same imports at the top (the toy's ``try:`` import of its compiled twin and
    # ``_compat``'s ``if``/``else`` on the version stay allowed).
    top = "from ._a import a\nfrom ._base import NAME\n" + TOY["_b"]
    assert nested_imports(_toy({"_b": top}), layers=TOY_LAYERS, package="toy") == []


def test_writing_another_modules_attributes_fails() -> None:
    writes = TOY["_b"] + textwrap.dedent(
        """\
        import toy._a
        _a.flag = True  # assign
        _a.count += 1  # augment
        del _a.flag  # delete
        setattr(_a, "flag", 1)  # setattr
        delattr(_a, "flag")  # delattr
        toy._a.flag = 2  # through-package
        _a.table["key"] = 1  # item
        vars(_a)["flag"] = 3  # vars
        toy.b = None  # package


        def switch() -> None:
            from . import _a as late

            late.flag = False  # local-name
        """
    )
    why = "_b assigns an attribute of _a"
    assert foreign_writes(_toy({"_b": writes}), layers=TOY_LAYERS, package="toy") == [
        Finding("_b", _line(writes, "assign"), "_a.flag", why),
        Finding("_b", _line(writes, "augment"), "_a.count", why),
        Finding("_b", _line(writes, "delete"), "_a.flag", "_b deletes an attribute of _a"),
        Finding("_b", _line(writes, "setattr"), "_a.flag", "_b setattr() on _a"),
        Finding("_b", _line(writes, "delattr"), "_a.flag", "_b delattr() on _a"),
        Finding("_b", _line(writes, "through-package"), "_a.flag", why),
        Finding("_b", _line(writes, "item"), "_a.table", "_b writes an item into _a"),
        Finding("_b", _line(writes, "vars"), "_a.__dict__", "_b writes an item into _a"),
        Finding("_b", _line(writes, "package"), "__init__.b", "_b assigns an attribute of __init__"),
        Finding("_b", _line(writes, "local-name"), "_a.flag", why),
    ]
    # Corrected: the owner changes its own state (``TOY["_b"]`` calls ``_a.set_flag(True)``).
    assert foreign_writes(TOY, layers=TOY_LAYERS, package="toy") == []


def test_looking_a_package_module_up_in_sys_modules_fails() -> None:
    lookups = TOY["_b"] + textwrap.dedent(
        """\
        from sys import modules

        _KEY = "toy._compat"
        sys.modules.get("toy._a")  # get
        sys.modules[f"{__package__}._a"]  # f-string
        "toy._a" in sys.modules  # in
        modules.pop(_base.NAME + "._a")  # other-module-constant
        sys.modules.setdefault(_KEY, None)  # own-constant
        sys.modules["toy"]  # package
        sys.modules.get("uvloop"), sys.modules[__name__], "anyio" not in sys.modules  # not-ours
        """
    )
    why = "_b looks a package module up in sys.modules"
    assert sys_modules_lookups(_toy({"_b": lookups}), layers=TOY_LAYERS, package="toy") == [
        Finding("_b", _line(lookups, "get"), "'toy._a'", why),
        Finding("_b", _line(lookups, "f-string"), "f'{__package__}._a'", why),
        Finding("_b", _line(lookups, "in"), "'toy._a'", why),
        Finding("_b", _line(lookups, "other-module-constant"), "_base.NAME + '._a'", why),
        Finding("_b", _line(lookups, "own-constant"), "_KEY", why),
        Finding("_b", _line(lookups, "package"), "'toy'", why),
    ]
    # Corrected: the module imports what it uses (``TOY["_b"]`` still looks up uvloop and itself).
    assert sys_modules_lookups(TOY, layers=TOY_LAYERS, package="toy") == []


def test_reading_the_python_version_outside_compat_and_the_cli_fails() -> None:
    checks = TOY["_a"] + textwrap.dedent(
        """\
        import platform
        import sys
        from sys import version_info as running

        if sys.version_info >= (3, 11):  # version-info
            pass
        NOTES = running >= (3, 11)  # imported-name
        RELEASE = platform.python_version()  # platform
        HEX = sys.hexversion  # hexversion
        BANNER = sys.version  # version
        """
    )
    why = "_a reads the Python version"
    assert version_checks(_toy({"_a": checks}), readers=TOY_READERS) == [
        Finding("_a", _line(checks, "version-info"), "sys.version_info", why),
        Finding("_a", _line(checks, "imported-name"), "sys.version_info", why),
        Finding("_a", _line(checks, "platform"), "platform.python_version", why),
        Finding("_a", _line(checks, "hexversion"), "sys.hexversion", why),
        Finding("_a", _line(checks, "version"), "sys.version", why),
    ]
    # Corrected: ``_a`` asks ``_compat`` (``TOY["_a"]`` imports ``HAS_NOTES``); ``cli`` may print it.
    assert version_checks(TOY, readers=TOY_READERS) == []


def _write_package(root: Path, sources: Mapping[str, str]) -> None:
    for module, source in sources.items():
        path = root.joinpath("toy", *([] if module == ROOT else module.split(".")))
        if module == ROOT or any(name.startswith(f"{module}.") for name in sources):
            path /= "__init__.py"
        else:
            path = path.with_suffix(".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source, encoding="utf-8")


def test_a_cycle_that_bites_in_one_import_order_fails_the_first_import_test(tmp_path: Path) -> None:
    """``__init__`` imports ``_b`` first, and that order works; ``_a`` imported first does not."""
    cycle = {
        ROOT: "from . import _b\n",
        "_a": "from . import _b\n\n\ndef f() -> None:\n    pass\n",
        "_b": "from ._a import f\n",
        "_compat": "from . import py310\n",
        "_compat.py310": "from .. import _base\n",
        "_base": "",
    }
    _write_package(tmp_path, cycle)
    every = dict.fromkeys(cycle, True)
    failures = first_import_failures(tmp_path, "toy", {**every, ROOT: False}, preload=["asyncio"])
    assert list(failures) == ["_a"]
    assert failures["_a"].startswith(
        "ImportError: cannot import name 'f' from partially initialized module 'toy._a' (most likely due to a "
        "circular import)"
    )
    # ``python -c "import toy._a"`` runs toy/__init__.py first, which imports _b first: no failure.
    assert first_import_failures(tmp_path, "toy", dict.fromkeys(cycle, False)) == {}
    # Corrected: _a no longer imports _b.
    _write_package(tmp_path, {"_a": "def f() -> None:\n    pass\n"})
    assert first_import_failures(tmp_path, "toy", {**every, ROOT: False}) == {}


def test_only_version_modules_of_a_later_python_are_left_out_of_the_first_import_test() -> None:
    later = f"_compat.py3{sys.version_info[1] + 1}"
    assert [_runs_here(name) for name in ("_compat.py310", later, "_notes_py310", "_api")] == [True, False, True, True]


# Node layout.

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


# --- hand-inlined hot paths agree with their general versions ------------------------
#
# The create_task wrapper inlines capture()'s common case (a traced task creating a child)
# and append_chain inlines append_frames() for task hops: for generated programs, each copy
# must give exactly what its original gives.

#: How a child task is created: the stdlib's paths that end in loop.create_task.
CREATION_PATHS = ["create_task", "loop_create_task", "ensure_future", "gather"]
if sys.version_info >= (3, 11):
    CREATION_PATHS.append("task_group")


def _same_node(made: _chain.Node, general: _chain.Node) -> list[str]:
    """The fields in which ``made`` (the wrapper's node) differs from ``general`` (capture()'s)."""
    diffs = []
    for name in ("parent", "code", "creator_ref"):
        if getattr(made, name) is not getattr(general, name):
            diffs.append(name)
    if type(made) is not type(general):
        diffs.append("type")
    if made.depth != general.depth:
        diffs.append("depth")
    if _frames.resolve(made.frames) != _frames.resolve(general.frames):
        diffs.append("frames")
    return diffs


class _Program:
    """Runs a generated spawn plan; at each creation compares the wrapper's node with capture()'s."""

    def __init__(self) -> None:
        self.diffs: list[tuple[str, list[str]]] = []
        self.compared = 0

    async def child(self, plan: list[tuple[str, int]], general: list[_chain.Node]) -> None:
        made = _chain.CURRENT.get()  # the wrapper's node, before anything in this task captures
        assert made is not None
        assert general
        self.compared += 1
        if diffs := _same_node(made, general[0]):
            self.diffs.append((plan[0][0] if plan else "leaf", diffs))
        await self.run(plan)

    async def run(self, plan: list[tuple[str, int]]) -> None:
        if not plan:
            return
        (path, nesting), rest = plan[0], plan[1:]
        await self.nested(path, nesting, rest)

    async def nested(self, path: str, nesting: int, rest: list[tuple[str, int]]) -> None:
        if nesting:  # a deeper stack between the task's coroutine and the creating line
            await self.nested(path, nesting - 1, rest)
            return
        loop = asyncio.get_running_loop()
        general: list[_chain.Node] = []

        def probe() -> Any:  # capture() at the very line that creates the task, just before it
            general.append(_capture.capture(_chain.TaskNode, loop, sys._getframe(1), self.child.__code__))
            return self.child(rest, general)

        if path == "create_task":
            await asyncio.create_task(probe())
        elif path == "loop_create_task":
            await loop.create_task(probe())
        elif path == "ensure_future":
            await asyncio.ensure_future(probe())
        elif path == "gather":
            await asyncio.gather(probe())
        else:
            async with asyncio.TaskGroup() as group:  # type: ignore[attr-defined]
                group.create_task(probe())


spawn_plans = st.lists(st.tuples(st.sampled_from(CREATION_PATHS), st.integers(0, 3)), min_size=1, max_size=6)


@settings(max_examples=60, deadline=None)
@given(plan=spawn_plans, eager=st.booleans(), max_depth=st.sampled_from([8, 256]))
def test_the_create_task_fast_path_makes_what_capture_makes(
    plan: list[tuple[str, int]], eager: bool, max_depth: int
) -> None:
    """Whatever path, stack depth, eager factory or chain bound: the wrapper's node equals capture()'s."""
    program = _Program()

    async def main() -> None:
        if eager and hasattr(asyncio, "eager_task_factory"):
            asyncio.get_running_loop().set_task_factory(asyncio.eager_task_factory)  # type: ignore[attr-defined,unused-ignore]
        await program.run(plan)

    async_trace.enable_tracing(max_depth=max_depth)
    try:
        asyncio.run(main())
    finally:
        async_trace.enable_tracing(max_depth=_config.DEFAULT_MAX_DEPTH)
    assert program.compared == len(plan)
    assert program.diffs == []


def _general_chain(node: _chain.Node | None, created: Any) -> tuple[list[TraceFrame], list[int]]:
    """append_chain's result built the general way: append_frames() for every hop (creators all known)."""
    frames: list[TraceFrame] = []
    boundaries: list[int] = []
    while node is not None:
        kind = type(node)
        if kind is _chain.TaskNode:
            start = len(frames)
            _collect.append_frames(frames, _frames.resolve(node.frames), created, False)
            real = [i for i in range(start, len(frames)) if frames[i]["line"] is not None]
            boundaries.extend(real[:1])
        elif kind is _chain.ExecutorNode:
            _collect.append_frames(frames, _frames.resolve(node.frames), None, True)
        elif kind is _chain.RootNode:
            name = created.get_name() if created is not None else node.name  # type: ignore[attr-defined]
            frames.append(
                {
                    "name": name or "<finished task>",
                    "line": None,
                    "filename": None,
                    "indent": len(frames),
                    "task": created,
                    "is_executor": False,
                    "is_process": False,
                    "in_app": True,
                }
            )
        created = node.creator
        node = node.parent
    return frames, boundaries


@settings(max_examples=40, deadline=None)
@given(plan=spawn_plans)
def test_append_chain_gives_what_append_frames_gives(plan: list[tuple[str, int]]) -> None:
    """The chain's frames and boundaries, task hop by task hop, equal the general appender's."""
    results: list[tuple[Any, Any]] = []

    async def leaf() -> None:
        node = _chain.CURRENT.get()
        task = asyncio.current_task()
        frames: list[TraceFrame] = []
        boundaries, _ = _collect.append_chain(frames, node, task, True, task, asyncio.get_running_loop())
        results.append(((frames, boundaries), _general_chain(node, task)))

    class Leafy(_Program):
        async def run(self, rest: list[tuple[str, int]]) -> None:
            if rest:
                await super().run(rest)
            else:
                await leaf()

    async def main() -> None:
        await Leafy().run(plan)

    asyncio.run(main())
    assert len(results) == 1
    assert results[0][0] == results[0][1]
