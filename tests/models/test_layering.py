"""`mtsa.models` imports point one way: no module reaches back (even lazily) to one that imports it."""

import ast
from pathlib import Path

import mtsa

PACKAGE = Path(mtsa.__file__).parent


def imported_modules(path: Path) -> set[str]:
    """Every `mtsa.*` module a file imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mtsa"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("mtsa"))
    return found


def test_the_models_package_has_no_import_cycle():
    graph = {f"mtsa.models.{p.stem}": {m for m in imported_modules(p) if m.startswith("mtsa.models.")}
             for p in (PACKAGE / "models").glob("*.py") if p.stem != "__init__"}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(m == goal or (m not in seen and reaches(m, goal, seen | {m})) for m in graph.get(start, ()))

    cycles = [module for module in graph if reaches(module, module, set())]
    assert not cycles


def test_spec_parsing_loads_no_backend():
    assert not {m for m in imported_modules(PACKAGE / "models" / "spec.py")
                if m in ("mtsa.models.hf", "mtsa.models.openai", "mtsa.models.registry")}
