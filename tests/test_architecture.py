"""The package's shape: imports point one way (down the floors of ARCHITECTURE.md), no module
imports itself back through others, nothing on the search path imports training, and only
settings.py reads the environment. Read from the source (every import, also those inside
functions and under TYPE_CHECKING), so a lazy import cannot hide an upward edge."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "facesearch"

#: Floors, lowest first: a module may import from its own floor and the floors below it.
FLOORS: tuple[tuple[str, ...], ...] = (
    ("errors", "spec"),
    ("settings", "registry"),
    ("models",),
    ("pipeline",),
    ("index",),
    ("search",),
    ("api", "render", "training"),
    ("cli", "__main__", "server", "distributed"),
)


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in PACKAGE.rglob("*.py")}


def _imports(path: Path, name: str) -> set[str]:
    """facesearch modules imported anywhere in a file (absolute and relative imports)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("facesearch")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if not module.startswith("facesearch"):
                continue
            for alias in node.names:  # `from facesearch.search import text` imports a module
                found.add(f"{module}.{alias.name}" if f"{module}.{alias.name}" in MODULES else module)
    return found


MODULES = _modules()
GRAPH = {name: {target for target in _imports(path, name) if target in MODULES and target != name}
         for name, path in MODULES.items()}


def _floor(module: str) -> int:
    top = module.split(".")[1] if "." in module else ""
    for level, names in enumerate(FLOORS):
        if top in names:
            return level
    raise AssertionError(f"{module} is on no floor: add its folder to FLOORS (and ARCHITECTURE.md)")


def test_every_module_is_on_a_floor() -> None:
    for module in MODULES:
        if module != "facesearch":  # the package's own __init__: the public surface, lazily
            _floor(module)


def test_imports_point_down() -> None:
    upward = [f"{source} (floor {_floor(source)}) imports {target} (floor {_floor(target)})"
              for source, targets in GRAPH.items() if source != "facesearch"
              for target in targets if target != "facesearch" and _floor(target) > _floor(source)]
    assert not upward, "\n".join(upward)


def test_no_import_cycles() -> None:
    """Tarjan's strongly connected components: every component must be a single module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in GRAPH[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in GRAPH:
        if node not in index:
            visit(node)
    assert not cycles, f"import cycles: {cycles}"


@pytest.mark.parametrize("floor", ["pipeline", "index", "search", "api", "render", "models"])
def test_the_search_path_never_imports_training(floor: str) -> None:
    offenders = [f"{source} imports {target}" for source, targets in GRAPH.items()
                 if source.split(".")[1:2] == [floor] or source == f"facesearch.{floor}"
                 for target in targets if target.startswith("facesearch.training")]
    assert not offenders, "\n".join(offenders)


def test_only_settings_reads_the_environment() -> None:
    """`os.environ.get(...)`, `os.environ[...]` and `os.getenv(...)` appear in settings.py alone
    (setting a third-party library's variable, `os.environ.setdefault`, is not reading ours)."""
    readers = []
    for name, path in MODULES.items():
        if name == "facesearch.settings":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                target = ast.unparse(node.func)
                if target in ("os.environ.get", "os.getenv"):
                    readers.append(f"{name}:{node.lineno} {target}")
            elif isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ" \
                    and isinstance(node.ctx, ast.Load):
                readers.append(f"{name}:{node.lineno} os.environ[...]")
    assert not readers, "\n".join(readers)


def test_one_meaning_per_public_class_name() -> None:
    """No two modules define a public class of the same name (the result `Face` and the SQL
    row used to share one)."""
    seen: dict[str, str] = {}
    clashes = []
    for name, path in MODULES.items():
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                if node.name in seen:
                    clashes.append(f"{node.name}: {seen[node.name]} and {name}")
                seen.setdefault(node.name, name)
    assert not clashes, "\n".join(clashes)
