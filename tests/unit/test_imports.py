"""The package's imports run one way: no module imports another in a cycle."""

from __future__ import annotations

import grimp


def _related(a: str, b: str) -> bool:
    return a.startswith(b + ".") or b.startswith(a + ".")


def test_no_durable_module_is_part_of_an_import_cycle() -> None:
    graph = grimp.build_graph("durable", exclude_type_checking_imports=True)
    # The public surface (durable/__init__) imports everything, and durable.dag uses it.
    for imported in graph.find_modules_directly_imported_by("durable"):
        graph.remove_import(importer="durable", imported=imported)
    cycles = []
    for module in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(module):
            if module == imported or _related(module, imported):
                continue  # a package and its own modules
            if graph.chain_exists(importer=imported, imported=module):
                cycles.append(f"{module} -> {imported}")
    assert cycles == []
