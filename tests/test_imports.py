"""The engine's floors: no module under compression/ imports from a module above it.

Every import is read with ast, at module level and inside functions alike, so a lazy import cannot
hide a circle. A method module loaded by name (``importlib.import_module(f"...{name}")``) is not an
import statement and is fine: the catalogue lists methods it does not need to import.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "compression"

# Lowest first; a module may import from its own floor or below. Each floor only needs what is under it:
# settings and leaves, what a method is, the catalogue, recipes of specs, their names in plain words,
# what runs and how it is saved, the model and data sources, the methods, the protocol, the store,
# preparation, one job, the workers, the CSV, the front door, and the CLI over it. ("recipes" and "schema" are the splits of specs and store.)
LAYERS: list[tuple[str, ...]] = [
    ("config", "training", "pareto", "measurement", "packed"),
    ("spec_base",),
    ("specs", "layer_maps"),
    ("registry",),
    ("recipes",),
    ("estimate",),
    ("plain",),
    ("__init__",),
    ("workload",),
    ("families", "layerwise"),
    ("runtimes",),
    ("artifacts",),
    ("models", "data", "splits"),
    ("methods",),
    ("timing",),
    ("measure",),
    ("schema", "store", "evals"),
    ("baseline", "prefetch"),
    ("engine",),
    ("sensitivity",),
    ("search",),
    ("executors",),
    ("report",),
    ("refusals", "workers", "search_api"),
    ("api",),
    ("cli",),
    ("__main__",),
]
FLOOR = {name: i for i, names in enumerate(LAYERS) for name in names}

# The CLI reaches these only through compression.api.
NOT_FROM_CLI = {"models", "data", "store", "schema", "baseline", "executors", "report", "workers"}


def unit(f: Path) -> str:
    """The floor's name for a file: packages (methods/, executors/) are one unit each."""
    rel = f.relative_to(PKG)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def imported_units(f: Path) -> set[tuple[str, int]]:
    """(unit, line) for every import of a compression module in ``f``, wherever it stands in the file."""
    pkg = ["compression", *f.relative_to(PKG).parent.parts]
    out = set()
    for node in ast.walk(ast.parse(f.read_text(), str(f))):
        if isinstance(node, ast.Import):
            targets = [a.name.split(".") for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = (pkg[:len(pkg) - node.level + 1] if node.level else []) + (node.module or "").split(".")
            base = [p for p in base if p]
            # ``from . import config`` names a module; ``from . import Recipe`` names the package's __init__
            targets = [base + [a.name] for a in node.names] if not node.module else [base]
        else:
            continue
        for t in targets:
            if t[0] != "compression":
                continue
            is_module = len(t) > 1 and ((PKG / t[1]).is_dir() or (PKG / f"{t[1]}.py").exists())
            out.add((t[1] if is_module else "__init__", node.lineno))
    return out


FILES = sorted(PKG.rglob("*.py"))


def test_every_module_has_a_floor():
    missing = sorted({unit(f) for f in FILES} - set(FLOOR))
    assert not missing, f"declare these compression modules in LAYERS (tests/test_imports.py): {missing}"


@pytest.mark.parametrize("f", FILES, ids=[str(f.relative_to(ROOT)) for f in FILES])
def test_no_import_from_above(f):
    me = unit(f)
    if me not in FLOOR:
        pytest.fail(f"{f.relative_to(ROOT)} is not in LAYERS")
    upward = sorted(f"line {line}: {name}" for name, line in imported_units(f)
                    if name != me and FLOOR.get(name, -1) > FLOOR[me])
    assert not upward, f"{f.relative_to(ROOT)} ({me}) imports from a higher floor: {upward}"


def test_artifacts_imports_no_method():
    assert "methods" not in {name for name, _ in imported_units(PKG / "artifacts.py")}


def test_cli_goes_through_the_api():
    used = sorted(f"line {line}: {name}" for name, line in imported_units(PKG / "cli.py") if name in NOT_FROM_CLI)
    assert not used, f"compression/cli.py imports these directly instead of through compression.api: {used}"


def test_state_and_sidebar_are_no_circle():
    def ui_imports(f: Path) -> set[str]:
        names = set()
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "ui":
                names |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ui."):
                names.add(node.module.split(".")[1])
            elif isinstance(node, ast.Import):
                names |= {a.name.split(".")[1] for a in node.names if a.name.startswith("ui.")}
        return names

    # the sidebar reads state's handles; state draws nothing, so it needs no sidebar
    assert "sidebar" not in ui_imports(ROOT / "ui" / "state.py")
    assert "state" in ui_imports(ROOT / "ui" / "sidebar.py"), "the check reads the imports it should"
