"""The layout is the architecture: dependencies point one way, modules stay a page or two,
notebooks stay prose with short code cells, and nothing shipped imports from the tests.

Imports are read from the source (every ``import``, at module level or inside a function),
and checked again at run time: importing a core module loads neither fastai nor matplotlib.
"""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ssd_lesson"
MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent == PACKAGE)

CORE = {"boxes", "anchors", "matching", "loss"}
#: Where each heavy dependency may be imported. voc is the data layer's reader (fastai's untar_data).
ALLOWED = {
    "fastai": {"images", "voc", "net", "train", "metrics", "evaluate"},
    "matplotlib": {"draw", "placement", "figures", "follow", "formulas", "loss_figures", "plots", "pr_plot", "shown",
                   "widgets"},
    "ipywidgets": {"follow", "shown", "widgets"},
}
MAX_MODULE_LINES = 400
MAX_CELL_LINES = 15


def imports_of(path: Path) -> set[str]:
    """Top-level names of every module ``path`` imports (``from .x import`` gives ``.x``)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add("." + (node.module or "") if node.level else node.module.split(".")[0])
    return names


def test_the_package_modules_are_found():
    assert {p.stem for p in MODULES} >= CORE | {"lesson", "images", "voc", "draw", "figures", "plots", "widgets"}


@pytest.mark.parametrize("name", sorted(CORE))
def test_core_modules_import_torch_and_each_other_only(name):
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    for imp in imports_of(PACKAGE / "core" / f"{name}.py"):
        if imp.startswith("."):
            assert imp[1:] in CORE, f"{name}.py imports {imp}, which is not core"
        else:
            assert imp == "torch" or imp in stdlib, f"{name}.py imports {imp}"


@pytest.mark.parametrize("dependency", sorted(ALLOWED))
def test_heavy_dependencies_live_only_in_their_modules(dependency):
    users = {p.stem for p in MODULES if dependency in imports_of(p)}
    assert users, f"nothing imports {dependency}: the rule is stale"
    assert users <= ALLOWED[dependency], f"{dependency} imported by {sorted(users - ALLOWED[dependency])}"


def test_importing_the_core_loads_neither_fastai_nor_plotting():
    code = ("import sys, ssd_lesson; from ssd_lesson.core import boxes, anchors, matching, loss; "
            "print(sorted(m for m in ('fastai', 'matplotlib', 'ipywidgets', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("path", MODULES + sorted((ROOT / "benchmarks").glob("*.py")), ids=lambda p: p.name)
def test_nothing_shipped_imports_from_the_tests(path):
    assert "tests" not in imports_of(path)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_each_module_is_a_page_or_two(path):
    n = len(path.read_text().splitlines())
    assert n <= MAX_MODULE_LINES, f"{path.name} has {n} lines"


def code_lines(source: str) -> int:
    return sum(1 for ln in source.splitlines() if ln.strip() and not ln.lstrip().startswith("#"))


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")), ids=lambda p: p.stem)
def test_notebook_code_cells_are_short(path):
    nb = json.loads(path.read_text())
    long = [(i, code_lines("".join(c["source"]))) for i, c in enumerate(nb["cells"])
            if c["cell_type"] == "code" and code_lines("".join(c["source"])) > MAX_CELL_LINES]
    assert not long, f"cells (index, lines of code) over {MAX_CELL_LINES}: {long}"


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")), ids=lambda p: p.stem)
def test_notebooks_leave_nothing_in_tmp(path):
    source = "".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code")
    for word in ("tempfile", "/tmp", "mkdtemp", "gettempdir"):
        assert word not in source, f"{path.name} uses {word}: temporary work goes into ssd_lesson.course.lesson.cache_dir()"


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")), ids=lambda p: p.stem)
def test_stored_notebooks_show_no_stderr(path):
    """A learner opening the committed notebook sees no warnings or log lines of the machine that ran it
    (a stale matplotlib font cache once stored 21 'findfont' lines under the threshold widget)."""
    nb = json.loads(path.read_text())
    err = [(i, "".join(o["text"])[:80]) for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"
           for o in c.get("outputs", []) if o["output_type"] == "stream" and o["name"] == "stderr"]
    assert not err, f"stderr in stored outputs (cell, text): {err[:3]}"


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")), ids=lambda p: p.stem)
def test_stored_outputs_name_no_path_of_the_machine(path):
    """Paths in stored outputs are relative (``data/checkpoints/...``), never where the maintainer's checkout was."""
    text = json.dumps([c.get("outputs", []) for c in json.loads(path.read_text())["cells"]])
    home = str(Path.home())
    for where in {str(ROOT), "/tmp/", "/work/", "/home/"} | ({home + "/"} if len(home) > 1 else set()):
        assert where not in text, f"{path.name} stores the machine's path {where!r}"
