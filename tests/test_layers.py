"""The import graph: no cycle between modules, no import that runs right to left.

Every module of the package is parsed with :mod:`ast`; every import counts — at module
level, inside functions, under ``TYPE_CHECKING`` — because a lazy import is still a
dependency. ``from pkg import name`` where ``pkg`` re-exports ``name`` (a lazy PEP 562
table or a plain ``from .mod import name``) counts as an import of the module that
defines it, so a package's ``__init__`` does not hide a dependency or invent one. The
layer order is data in :mod:`hybridnb._layers`.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import hybridnb
from hybridnb import _layers

PACKAGE = Path(hybridnb.__file__).parent


@dataclass(frozen=True)
class Edge:
    importer: str
    imported: str
    line: int

    def __str__(self) -> str:
        return f"{self.importer} -> {self.imported} (line {self.line})"


def _modules(root: Path) -> dict[str, tuple[Path, bool]]:
    """``module name -> (file, is_package)`` for every ``.py`` file under ``root``."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts.pop()
        out[".".join(parts)] = (path, is_pkg)
    return out


def _absolute(node: ast.ImportFrom, package: str) -> str:
    if not node.level:
        return node.module or ""
    base = package.split(".")
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


class Graph:
    """The package's modules and the imports between them."""

    def __init__(self, root: Path) -> None:
        self.modules = _modules(root)
        self.root = root.name
        self.trees = {m: ast.parse(p.read_text(), str(p)) for m, (p, _) in self.modules.items()}
        self.exports = {m: self._exports(m) for m, (_, pkg) in self.modules.items() if pkg}
        self.edges = [e for m in self.modules for e in self._imports(m)]

    def _package(self, module: str) -> str:
        return module if self.modules[module][1] else module.rpartition(".")[0]

    def _exports(self, package: str) -> dict[str, str]:
        """Names a package's ``__init__`` re-exports: ``name -> module`` it comes from."""
        out: dict[str, str] = {}
        for node in ast.walk(self.trees[package]):
            if isinstance(node, ast.ImportFrom):
                source = _absolute(node, package)
                for alias in node.names:
                    out[alias.asname or alias.name] = source
            elif isinstance(node, ast.Dict):  # a lazy table: "name": "module:attr"
                for key, value in zip(node.keys, node.values, strict=True):
                    if (isinstance(key, ast.Constant) and isinstance(key.value, str)
                        and isinstance(value, ast.Constant)
                            and isinstance(value.value, str)
                            and value.value.startswith(self.root + ".")):
                        out[key.value] = value.value.partition(":")[0]
        return out

    def _resolve(self, name: str, seen: frozenset[str] = frozenset()) -> str | None:
        """The module that ``name`` (``pkg.mod`` or ``pkg.attr``) lands on."""
        if name in self.modules:
            return name
        package, _, attr = name.rpartition(".")
        if package in self.exports and attr in self.exports[package] and name not in seen:
            return self._resolve(f"{self.exports[package][attr]}.{attr}", seen | {name})
        while name and name not in self.modules:
            name = name.rpartition(".")[0]
        return name or None

    def _imports(self, module: str) -> Iterator[Edge]:
        tree = self.trees[module]
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                source = _absolute(node, self._package(module))
                targets = [f"{source}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Dict) and self.modules[module][1]:
                targets = [v.value.partition(":")[0] for v in node.values
                           if isinstance(v, ast.Constant) and isinstance(v.value, str)
                           and v.value.startswith(self.root + ".")]
            for target in targets:
                if target != self.root and not target.startswith(self.root + "."):
                    continue
                resolved = self._resolve(target)
                if resolved and resolved != module:
                    yield Edge(module, resolved, getattr(node, "lineno", 0))

    def cycles(self) -> list[tuple[list[str], set[str]]]:
        """Per knot (a strongly connected component of more than one module): a cycle
        path through it, and its modules."""
        succ: dict[str, set[str]] = {m: set() for m in self.modules}
        for e in self.edges:
            succ[e.importer].add(e.imported)
        index: dict[str, int] = {}
        low: dict[str, int] = {}
        stack: list[str] = []
        on_stack: set[str] = set()
        components: list[set[str]] = []

        def visit(v: str) -> None:  # Tarjan; the package is small enough for recursion
            index[v] = low[v] = len(index)
            stack.append(v)
            on_stack.add(v)
            for w in sorted(succ[v]):
                if w not in index:
                    visit(w)
                    low[v] = min(low[v], low[w])
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
            if low[v] == index[v]:
                comp = set()
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.add(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    components.append(comp)

        for v in sorted(self.modules):
            if v not in index:
                visit(v)
        return [(self._path(min(c), c, succ), c) for c in components]

    @staticmethod
    def _path(start: str, comp: set[str], succ: dict[str, set[str]]) -> list[str]:
        """A shortest cycle through ``start`` inside ``comp`` (breadth first)."""
        parent: dict[str, str] = {}
        frontier = [start]
        while frontier:
            nxt = []
            for v in frontier:
                for w in sorted(succ[v] & comp):
                    if w == start:
                        path = [v]
                        while path[-1] != start:
                            path.append(parent[path[-1]])
                        return [start, *reversed(path[:-1]), start] if v != start else [v, v]
                    if w not in parent:
                        parent[w] = v
                        nxt.append(w)
            frontier = nxt
        raise AssertionError(f"{start} is on no cycle")  # pragma: no cover


@pytest.fixture(scope="module")
def graph() -> Graph:
    return Graph(PACKAGE)


def test_every_module_has_a_layer(graph: Graph) -> None:
    missing = [m for m in graph.modules if _layers.member_of(m) is None]
    assert not missing, f"modules in no layer (add them to hybridnb/_layers.py): {missing}"


def test_every_listed_member_exists(graph: Graph) -> None:
    names = set(graph.modules)
    stale = [m for layer in _layers.LAYERS for m in layer.members if m not in names]
    assert not stale, f"hybridnb/_layers.py lists modules that do not exist: {stale}"


def test_no_import_cycle(graph: Graph) -> None:
    cycles = graph.cycles()
    lines = [f"{' -> '.join(path)}   [{', '.join(sorted(knot))}]" for path, knot in cycles]
    assert not cycles, "import cycles (a path per knot, then its modules):\n" + "\n".join(lines)


def test_imports_run_left_to_right(graph: Graph) -> None:
    breaks = sorted({e for e in graph.edges if not _layers.allowed(e.importer, e.imported)},
                    key=str)
    lines = [f"{e}: {_layers.layer_of(e.importer).name} imports "
             f"{_layers.layer_of(e.imported).name}" for e in breaks]
    assert not breaks, "imports that run right to left:\n" + "\n".join(lines)


def test_the_graph_sees_what_it_must(tmp_path: Path) -> None:
    """The walker finds function-level, relative and re-exported imports, and cycles."""
    pkg = tmp_path / "hybridnb"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text('_LAZY = {"thing": "hybridnb.sub.b:thing"}\n')
    (pkg / "sub" / "__init__.py").write_text("from .b import thing\n")
    (pkg / "a.py").write_text("def f():\n    from .sub import thing\n")
    (pkg / "sub" / "b.py").write_text("from typing import TYPE_CHECKING\n"
                                      "if TYPE_CHECKING:\n    from .. import a\n")
    g = Graph(pkg)
    assert {str(e) for e in g.edges} >= {"hybridnb.a -> hybridnb.sub.b (line 2)",
                                         "hybridnb.sub.b -> hybridnb.a (line 3)",
                                         "hybridnb -> hybridnb.sub.b (line 1)"}
    assert g.cycles() == [(["hybridnb.a", "hybridnb.sub.b", "hybridnb.a"],
                           {"hybridnb.a", "hybridnb.sub.b"})]
