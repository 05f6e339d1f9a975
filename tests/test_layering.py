"""The layer rules of shared/DESIGN.md, checked rather than remembered.

1. No core module (layers 0-4) loads Qt, pyqtgraph or numpy, even indirectly: each is imported in
   a fresh interpreter and sys.modules is inspected.
2. A module imports loopmon modules only from layers below its own.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "loopmon"

LAYERS: dict[str, int] = {
    "loopmon": 0,
    "loopmon.events": 0,
    "loopmon.snapshot": 0,
    "loopmon.pollers": 1,
    "loopmon.waker": 1,
    "loopmon.timers": 1,
    "loopmon.watchdog": 1,
    "loopmon.loopstats": 1,
    "loopmon.signalpipe": 1,
    "loopmon.coro": 1,
    "loopmon.wire": 1,
    "loopmon.histogram": 0,
    "loopmon.netaddr": 0,
    "loopmon.mailbox": 1,
    "loopmon.ioloop": 2,
    "loopmon.echo": 3,
    "loopmon.loadgen": 3,
    "loopmon.telemetry": 3,
    "loopmon.stream": 4,
    "loopmon.runner": 4,
    "loopmon.gui": 5,
    "loopmon.serve": 6,
    "loopmon.cli": 6,
    "loopmon.bench": 6,
    "loopmon.benchpeers": 6,
    "loopmon.__main__": 6,
}
CORE_MAX = 4
FORBIDDEN = ("PySide6", "shiboken6", "pyqtgraph", "numpy")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(name: str) -> int:
    while name:
        if name in LAYERS:
            return LAYERS[name]
        name = name.rpartition(".")[0]
    raise KeyError(name)


ALL_MODULES = sorted(module_name(p) for p in PACKAGE.rglob("*.py"))
CORE_MODULES = [m for m in ALL_MODULES if layer_of(m) <= CORE_MAX]


def test_every_module_has_a_layer() -> None:
    unknown = []
    for name in ALL_MODULES:
        try:
            layer_of(name)
        except KeyError:
            unknown.append(name)
    assert not unknown, f"give these a layer in tests/test_layering.py and DESIGN.md: {unknown}"


def test_core_modules_found() -> None:
    assert {"loopmon.ioloop", "loopmon.events", "loopmon.snapshot"} <= set(CORE_MODULES)


def loaded_after_import(module: str) -> list[str]:
    code = (
        "import importlib, json, sys\n"
        f"importlib.import_module({module!r})\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    loaded: list[str] = json.loads(out.stdout.strip().splitlines()[-1])
    return loaded


@pytest.mark.parametrize("module", CORE_MODULES)
def test_core_module_loads_no_gui_stack(module: str) -> None:
    assert loaded_after_import(module) == [], f"{module} pulls in the GUI stack"


def test_the_check_catches_a_qt_import(tmp_path: Path) -> None:
    # The guard must be able to fail: a module that imports PySide6 is reported.
    (tmp_path / "qt_leak.py").write_text("import PySide6.QtCore\n")
    code = (
        f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import qt_leak; "
        "print([m for m in sys.modules if m.startswith('PySide6')])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "PySide6" in out.stdout


def imported_loopmon_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    package = (
        module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    )
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("loopmon"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join([*base, node.module] if node.module else base)
            else:
                mod = node.module or ""
            if not mod.startswith("loopmon"):
                continue
            for alias in node.names:
                candidate = f"{mod}.{alias.name}"
                found.add(
                    candidate
                    if (ROOT / Path(*candidate.split("."))).exists()
                    or (ROOT / Path(*candidate.split("."))).with_suffix(".py").exists()
                    else mod
                )
    return found


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=module_name)
def test_imports_go_down_the_layers(path: Path) -> None:
    me = module_name(path)
    mine = layer_of(me)
    upward = []
    for imported in imported_loopmon_modules(path):
        if imported == me or imported.startswith(me + ".") or me.startswith(imported + "."):
            continue  # a package and its own modules
        theirs = layer_of(imported)
        same_package = imported.rpartition(".")[0] == me.rpartition(".")[0] and mine == theirs
        if theirs > mine or (theirs == mine and not same_package and mine < 5):
            upward.append(f"{imported} (layer {theirs})")
    assert not upward, f"{me} (layer {mine}) imports from its own layer or above: {upward}"
