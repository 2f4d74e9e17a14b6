"""The import graph of ``mlx/`` has no cycle.

Every ``import mlx...`` counts, at module level or inside a function (a lazy import still ties
two modules together); imports under ``if TYPE_CHECKING:`` do not, since they never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import mlx

ROOT = Path(mlx.__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def import_graph() -> dict[str, set[str]]:
    """module -> the mlx modules it imports (a package import counts as its ``__init__``)."""
    modules = {_module_name(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        skip = _type_checking_lines(tree)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(tree):
            if getattr(node, "lineno", None) in skip:
                continue
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                    base = f"{base}.{node.module}" if node.module else base
                # `from mlx.x import y` imports mlx.x.y when y is a module, else mlx.x
                targets = [
                    f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                    for a in node.names
                ]
            for target in targets:
                if target in modules and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_checker_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_mlx_has_no_import_cycle():
    graph = import_graph()
    assert "mlx.run" in graph and graph["mlx.run"], "the graph reader found no imports"
    assert cycles(graph) == []


def test_no_module_imports_the_command_line():
    graph = import_graph()
    assert [m for m, deps in graph.items() if "mlx.cli" in deps] == []


def test_every_area_error_is_a_user_error():
    from mlx.compression import CompressionError
    from mlx.data.sources import DataConfigError
    from mlx.engine.checkpoint import CheckpointError
    from mlx.errors import ConfigError, MlxError
    from mlx.nas.spaces import NasError
    from mlx.record import RecordError
    from mlx.report.collect import ReportError
    from mlx.sweep.ledger import LedgerError
    from mlx.sweep.results import SweepStatusError
    from mlx.sweep.space import SearchSpaceError
    from mlx.sweep.sweeper import SweepError

    areas = [CompressionError, DataConfigError, CheckpointError, ConfigError, NasError]
    areas += [RecordError, ReportError, LedgerError, SweepStatusError, SearchSpaceError, SweepError]
    assert all(issubclass(e, MlxError) for e in areas)
