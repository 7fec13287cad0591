"""Print the run-time import cycles between cargohold's modules (imports under
``TYPE_CHECKING`` excluded): ``python tools/import_cycles.py``; exit 1 if any."""

from __future__ import annotations

import sys

import grimp


def strongly_connected(graph: grimp.ImportGraph) -> list[list[str]]:
    """Tarjan's algorithm over the module graph; components of two or more are cycles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    sys.setrecursionlimit(10_000)

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def main() -> int:
    graph = grimp.build_graph("cargohold", exclude_type_checking_imports=True)
    # A package's __init__ importing its own submodules is how curated exports
    # work, not a cycle between rooms: drop child -> parent-package edges.
    for module in list(graph.modules):
        for imported in list(graph.find_modules_directly_imported_by(module)):
            if module.startswith(imported + "."):
                graph.remove_import(importer=module, imported=imported)
    cycles = strongly_connected(graph)
    for cycle in cycles:
        print("cycle:", " <-> ".join(cycle))
    print(f"{len(cycles)} run-time import cycle(s) among {len(graph.modules)} modules")
    return 1 if cycles else 0


if __name__ == "__main__":
    raise SystemExit(main())
