"""The package's layout rules: no import cycle between its modules, function-level imports included."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "promptsearch"


def _module_imports() -> dict[str, set[str]]:
    """Module name → the promptsearch modules it imports anywhere in its body (module, function or
    TYPE_CHECKING level: a cycle hidden in a function is still a cycle)."""
    modules: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        imported: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                    base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                imported |= {base} | {f"{base}.{alias.name}" for alias in node.names}
            elif isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
        modules[name] = imported
    return {m: {d for d in deps if d in modules and d != m} for m, deps in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> set[tuple[str, ...]]:
    found: set[tuple[str, ...]] = set()

    def visit(module: str, path: list[str], seen: set[tuple[str, str]]) -> None:
        for dependency in graph[module]:
            if dependency in path:
                found.add(tuple(sorted(path[path.index(dependency) :])))
            elif (module, dependency) not in seen:
                seen.add((module, dependency))
                visit(dependency, [*path, dependency], seen)

    for module in graph:
        visit(module, [module], set())
    return found


def test_the_import_graph_finds_a_cycle_it_is_shown() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == {("a", "b", "c")}


def test_no_import_cycles_between_promptsearch_modules() -> None:
    graph = _module_imports()
    assert "promptsearch.trial" in graph and "promptsearch.space" in graph["promptsearch.trial"]
    assert _cycles(graph) == set()
