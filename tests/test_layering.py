"""The layer rules of shared/DESIGN.md, checked rather than remembered.

1. import-linter holds the contracts in pyproject.toml: DESIGN.md's layers (a module imports
   only from layers below its own; modules of one layer are independent), and no Qt, pyqtgraph
   or numpy outside gui/ (nor in gui/model/). The contracts are shown to fail on planted
   imports in a copy of the package, so a contract that checks nothing cannot pass.
2. Every module of the package has a layer in the contract.
3. No module outside gui/ loads Qt, pyqtgraph or numpy at run time, even indirectly: each is
   imported in a fresh interpreter and sys.modules is inspected.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "loopmon"
FORBIDDEN = ("PySide6", "shiboken6", "pyqtgraph", "numpy")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


ALL_MODULES = sorted(module_name(p) for p in PACKAGE.rglob("*.py"))
# __main__ runs the program when imported: the contracts check it.
NON_GUI_MODULES = [
    m
    for m in ALL_MODULES
    if m not in ("loopmon.__main__", "loopmon.gui") and not m.startswith("loopmon.gui.")
]


def contracts() -> dict[str, dict[str, object]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return {c["id"]: c for c in config["contracts"]}


def layer_table() -> list[set[str]]:
    """The layers contract as sets of ``loopmon.X`` names, highest first (optional ones too)."""
    layers = contracts()["layers"]["layers"]
    assert isinstance(layers, list)
    return [{"loopmon." + name.strip().strip("()") for name in row.split("|")} for row in layers]


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    if not LINT_IMPORTS.exists():
        pytest.fail(f"{LINT_IMPORTS} is missing: install the dev extra (import-linter)")
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_contracts_hold() -> None:
    proc = lint_imports(ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout


def test_every_module_has_a_layer() -> None:
    placed = set().union(*layer_table())
    unknown = [
        m for m in ALL_MODULES if m != "loopmon" and ".".join(m.split(".")[:2]) not in placed
    ]
    assert not unknown, f"give these a layer in pyproject.toml and DESIGN.md: {unknown}"


# -- the contracts can fail ------------------------------------------------------------------


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """The package and pyproject.toml in a fresh directory, to plant imports in."""
    shutil.copytree(PACKAGE, tmp_path / "loopmon", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    assert lint_imports(tmp_path).returncode == 0
    return tmp_path


def plant(root: Path, module: str, line: str) -> None:
    path = root / Path(*module.split("."))
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.parent / "__init__.py").touch()  # a package not there yet (gui/model/)
    with path.open("a") as f:
        f.write(f"\n{line}  # planted by tests/test_layering.py\n")


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        # Same layer (1): the hand-made walker this replaces let this one through.
        ("loopmon.waker", "from loopmon import timers", "DESIGN.md's layers"),
        # Upward: the loop (2) reaching for the runner (5).
        ("loopmon.ioloop", "import loopmon.runner", "DESIGN.md's layers"),
        # The vocabulary (0) reaching for the records above it.
        ("loopmon.netaddr", "from loopmon import snapshot", "DESIGN.md's layers"),
        # Qt in the core, in the bench, and in the Qt-free GUI models.
        ("loopmon.netaddr", "import PySide6.QtCore", "Qt, pyqtgraph and numpy only in gui/"),
        ("loopmon.bench.stats", "import numpy", "Qt, pyqtgraph and numpy only in gui/"),
        ("loopmon.gui.model.rates", "import pyqtgraph", "gui/model is Qt-free"),
        # The window on the runner itself, past its Source.
        ("loopmon.gui.status_strip", "import loopmon.runner", "gui reaches the runner"),
    ],
)
def test_a_planted_import_breaks_its_contract(
    copy: Path, module: str, line: str, contract: str
) -> None:
    plant(copy, module, line)
    proc = lint_imports(copy)
    assert proc.returncode == 1, proc.stdout
    broken = [row for row in proc.stdout.splitlines() if " BROKEN" in row]
    # Its own contract breaks; Qt planted in the vocabulary also reaches gui/model through
    # the records, so that one may break too, but no unrelated contract does.
    assert any(row.startswith(contract) for row in broken), proc.stdout
    assert all(row.startswith((contract, "gui/model is Qt-free")) for row in broken), proc.stdout
    assert module in proc.stdout


# -- at run time ---------------------------------------------------------------------------


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


def test_non_gui_modules_found() -> None:
    assert {"loopmon.ioloop", "loopmon.cli", "loopmon.bench.session"} <= set(NON_GUI_MODULES)


@pytest.mark.parametrize("module", NON_GUI_MODULES)
def test_module_outside_gui_loads_no_gui_stack(module: str) -> None:
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


# -- module sizes ------------------------------------------------------------------------------
MAX_LINES = 410  # DESIGN.md: "past ~400 lines, its docstring says why it is still one job"


def test_a_module_past_about_400_lines_says_in_its_docstring_why_it_is_still_one_job() -> None:
    import ast

    unexplained = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        if text.count("\n") <= MAX_LINES:
            continue
        doc = ast.get_docstring(ast.parse(text)) or ""
        if "one job" not in " ".join(doc.split()):
            unexplained.append(f"{path.relative_to(ROOT)} ({text.count(chr(10))} lines)")
    assert unexplained == []
