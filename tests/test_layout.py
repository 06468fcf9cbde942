"""The package's shape: only the package face, the commands, the LightningModule and checkpoint
loading at the ``cpc/`` root, no module longer than a reader takes in at once, and no import
circle between its modules (imports inside functions included: a circle closed by a late import
is still a circle)."""

import ast
from pathlib import Path

import cpc

PACKAGE = Path(cpc.__file__).parent
ROOT_MODULES = {"__init__.py", "cli.py", "module.py", "checkpoint.py"}
MAX_LINES = 300


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(
        ".__init__"
    )


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    """The ``cpc`` modules ``path`` imports anywhere in its code (``from a import b`` counts
    ``a.b`` when it is a module, else ``a``)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            found |= {
                f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names
            }
    return {m for m in found if m in modules and m != name}


def import_graph() -> dict[str, set[str]]:
    paths = list(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imported_modules(p, modules) for p in paths}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while (w := stack.pop()) != v:
                component.append(w)
            if component:
                found.append(sorted([v, *component]))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_package_root_holds_only_its_face_the_commands_the_module_and_loading():
    assert {p.name for p in PACKAGE.glob("*.py")} == ROOT_MODULES


def test_no_module_is_longer_than_300_lines():
    lines = {module_name(p): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    assert len(lines) > 50  # the walk found the package
    assert {name: n for name, n in lines.items() if n > MAX_LINES} == {}


def test_no_import_circle_between_cpc_modules():
    assert circles(import_graph()) == []


def test_the_circle_finder_finds_a_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert circles(graph) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []
