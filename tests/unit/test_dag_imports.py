"""durable.dag's import structure: one way, on the public durable API only (issue 11)."""

from __future__ import annotations

import ast
from pathlib import Path

import durable

DAG = Path(durable.__file__).parent / "dag"
#: Core internals a dag module may still reach: none.
KNOWN_INTERNALS: set[tuple[str, str]] = set()


def _modules() -> dict[str, ast.Module]:
    return {path.stem: ast.parse(path.read_text(), str(path)) for path in DAG.glob("*.py")}


def _imports(tree: ast.Module) -> list[tuple[ast.ImportFrom | ast.Import, bool]]:
    """Every import statement and whether it sits at module level (not in a function or
    under ``if TYPE_CHECKING:``)."""
    top = set(map(id, tree.body))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append((node, id(node) in top))
    return found


def _targets(node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    assert node.module is not None
    if node.module == "durable.dag":  # `from durable.dag import tasks`
        return [f"durable.dag.{alias.name}" for alias in node.names]
    return [node.module]


def test_dag_modules_import_each_other_one_way() -> None:
    modules = _modules()
    edges: dict[str, set[str]] = {name: set() for name in modules}
    for name, tree in modules.items():
        if name == "__init__":
            continue
        for node, _ in _imports(tree):
            for target in _targets(node):
                if target.startswith("durable.dag."):
                    edges[name].add(target.removeprefix("durable.dag."))
    state: dict[str, int] = {}

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for other in sorted(edges.get(name, ())):
            assert state.get(other) != 1, f"import cycle: {' -> '.join([*path, other])}"
            if other not in state:
                visit(other, [*path, other])
        state[name] = 2

    for name in sorted(edges):
        if name not in state:
            visit(name, [name])


def test_dag_imports_only_the_public_durable_api_at_module_level() -> None:
    for name, tree in _modules().items():
        for node, top in _imports(tree):
            for target in _targets(node):
                if not (target == "durable" or target.startswith("durable.")):
                    continue
                where = f"durable/dag/{name}.py line {node.lineno}"
                assert top, f"{where}: a function-local or TYPE_CHECKING import of {target}"
                allowed = (target in ("durable", "durable.errors")
                           or target.startswith("durable.dag")
                           or (name, target) in KNOWN_INTERNALS)
                assert allowed, f"{where}: imports {target}, not the public durable API"
                if isinstance(node, ast.ImportFrom):
                    private = [a.name for a in node.names if a.name.startswith("_")]
                    assert not private, f"{where}: imports private names {private}"


def test_no_dag_module_reaches_into_another_objects_private_names() -> None:
    for name, tree in _modules().items():
        for node in ast.walk(tree):
            own = isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id in ("self", "cls")
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                    and not node.attr.startswith("__") and not own):
                raise AssertionError(f"durable/dag/{name}.py line {node.lineno}: "
                                     f".{node.attr} is another object's private name")
