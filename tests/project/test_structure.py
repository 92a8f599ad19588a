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

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "ssd_lesson"
MODULES = sorted(PACKAGE.rglob("*.py"))

#: The layers, lowest first: the sub-packages of ``ssd_lesson``. A module's layer is its sub-package;
#: it may import its own layer and those below. The package's own modules (``__init__``, ``__main__``)
#: sit above them all, and no layer imports them.
LAYERS = ["core", "data", "model", "drawing", "course", "commands"]
#: Where each third-party dependency may be imported, by layer. The core needs torch only.
ALLOWED = {
    "fastai": {"data", "model"},
    "matplotlib": {"drawing", "course"},
    "ipywidgets": {"course"},
}
MAX_MODULE_LINES = 400
MAX_CELL_LINES = 15


def module_name(path: Path, package: Path) -> str:
    """``ssd_lesson/model/net.py`` -> ``ssd_lesson.model.net`` (a package's ``__init__`` is the package)."""
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, package: Path) -> set[str]:
    """Every module ``path`` imports, at module level or inside a function, as absolute dotted names
    (``from ..core.loss import ssd_loss`` in ``ssd_lesson/model/train.py`` gives ``ssd_lesson.core.loss``;
    ``from . import plots`` gives ``ssd_lesson.<its package>.plots``)."""
    here = module_name(path, package).split(".")
    if path.name != "__init__.py":
        here = here[:-1]  # the package the module is in
    is_module = lambda parts: (package.parent.joinpath(*parts).with_suffix(".py").is_file()  # noqa: E731
                                or package.parent.joinpath(*parts, "__init__.py").is_file())
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = here[:len(here) - node.level + 1] if node.level else []
            module = base + (node.module.split(".") if node.module else [])
            for alias in node.names:  # from x import y: the module x.y when there is one, else x
                names.add(".".join(module + [alias.name] if is_module(module + [alias.name]) else module))
    return names


def upward_edges(package: Path, layers: list[str]) -> list[str]:
    """``"a.b.c -> a.d.e (layer b imports the higher layer d)"`` for every import from a lower layer to a higher one."""
    edges = []
    for path in sorted(package.rglob("*.py")):
        me = module_name(path, package)
        mine = layer_of(me, package, layers)
        for other in sorted(imported_modules(path, package)):
            if other.split(".")[0] != package.name:
                continue
            theirs = layer_of(other, package, layers)
            if theirs > mine:
                name = lambda i: layers[i] if i < len(layers) else "the package itself"  # noqa: E731
                edges.append(f"{me} -> {other} (layer {name(mine)} imports the higher {name(theirs)})")
    return edges


def layer_of(module: str, package: Path, layers: list[str]) -> int:
    """The index of ``module``'s layer in ``layers`` (its sub-package's); ``len(layers)`` for the package's
    own modules. A sub-package in no layer is an error: every room of the house is on a floor."""
    parts = module.split(".")
    if len(parts) == 1 or (package / f"{parts[1]}.py").is_file():  # the package's own modules
        return len(layers)
    if parts[1] not in layers:
        raise ValueError(f"{module}: sub-package {parts[1]!r} is in no layer of {layers}")
    return layers.index(parts[1])


def test_the_layers_are_the_sub_packages():
    subpackages = sorted(p.parent.name for p in PACKAGE.glob("*/__init__.py"))
    assert subpackages == sorted(LAYERS), f"sub-packages {subpackages}, layers {LAYERS}"
    assert {p.stem for p in MODULES} >= {"boxes", "anchors", "matching", "loss", "options", "lesson", "images", "voc",
                                         "draw", "figures", "plots", "widgets", "checkpoint"}


def test_no_layer_imports_a_higher_one():
    assert upward_edges(PACKAGE, LAYERS) == []


def test_the_checker_finds_an_upward_edge(tmp_path):
    """The rule is the layout: a tiny package whose lower layer imports a higher one (inside a function,
    and relatively) fails it; the same imports pointing down pass."""
    pkg = tmp_path / "pkg"
    for layer in ("low", "high"):
        (pkg / layer).mkdir(parents=True)
        (pkg / layer / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("from .low import base\n")
    (pkg / "low" / "base.py").write_text("import os\n\ndef f():\n    from ..high.top import g\n    return g\n")
    (pkg / "high" / "top.py").write_text("from ..low.base import f\nfrom ..low import base\n\ndef g():\n    return f\n")
    assert upward_edges(pkg, ["low", "high"]) == ["pkg.low.base -> pkg.high.top (layer low imports the higher high)"]
    assert upward_edges(pkg, ["high", "low"]) == ["pkg.high.top -> pkg.low.base (layer high imports the higher low)"]
    (pkg / "low" / "base.py").write_text("import os\n")
    assert upward_edges(pkg, ["low", "high"]) == []
    (pkg / "low" / "up.py").write_text("from .. import VERSION\nfrom pkg import high\n")  # the package; absolutely
    assert upward_edges(pkg, ["low", "high"]) == [
        "pkg.low.up -> pkg (layer low imports the higher the package itself)",
        "pkg.low.up -> pkg.high (layer low imports the higher high)"]
    (pkg / "attic").mkdir()
    (pkg / "attic" / "__init__.py").write_text("")
    with pytest.raises(ValueError, match="sub-package 'attic' is in no layer"):
        upward_edges(pkg, ["low", "high"])


def third_party(path: Path) -> set[str]:
    """Top-level names of the modules outside the package (and the standard library) that ``path`` imports."""
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    return {m.split(".")[0] for m in imported_modules(path, PACKAGE) if m.split(".")[0] not in stdlib | {PACKAGE.name}}


@pytest.mark.parametrize("path", sorted((PACKAGE / "core").glob("*.py")), ids=lambda p: p.name)
def test_core_modules_import_torch_only(path):
    assert third_party(path) <= {"torch"}, f"{path.name} imports {sorted(third_party(path) - {'torch'})}"


@pytest.mark.parametrize("dependency", sorted(ALLOWED))
def test_heavy_dependencies_live_only_in_their_layers(dependency):
    layers = {path.relative_to(PACKAGE).parts[0] for path in MODULES if dependency in third_party(path)}
    assert layers, f"nothing imports {dependency}: the rule is stale"
    assert layers <= ALLOWED[dependency], f"{dependency} imported in layers {sorted(layers - ALLOWED[dependency])}"


def test_importing_the_core_loads_neither_fastai_nor_plotting():
    """The core loads with torch alone, its modules and every name ``ssd_lesson`` re-exports (the star-import
    loads them all, which ``import ssd_lesson`` alone does not): one fresh interpreter checks both."""
    code = ("import sys, ssd_lesson; from ssd_lesson.core import boxes, anchors, matching, loss, options; "
            "from ssd_lesson import *; "
            "print(sorted(m for m in ('fastai', 'matplotlib', 'ipywidgets', 'pandas', 'torchvision') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_nothing_shipped_imports_from_the_tests_or_the_benchmarks(path):
    assert not {"tests", "benchmarks"} & {m.split(".")[0] for m in imported_modules(path, PACKAGE)}


@pytest.mark.parametrize("path", sorted((ROOT / "benchmarks").glob("*.py")), ids=lambda p: p.name)
def test_the_benchmarks_take_only_the_loss_methods_from_the_tests(path):
    """The lesson's per-image loop lives with the tests (``tests/reference/lesson_loop.py``), its one copy,
    and so do the four ways of computing the loss that the benchmark times (``tests/reference/loss_methods.py``,
    which the tests prove equal); the benchmark takes nothing else from the tests."""
    from_tests = {m for m in imported_modules(path, PACKAGE) if m.split(".")[0] == "tests"}
    allowed = {"tests.reference.lesson_loop", "tests.reference.loss_methods"}
    assert from_tests <= allowed, f"{path.name} imports {sorted(from_tests - allowed)}"


@pytest.mark.parametrize("path", sorted((ROOT / "tests").rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_tests_import_no_benchmark_module(path):
    assert "benchmarks" not in {m.split(".")[0] for m in imported_modules(path, PACKAGE)}


def long_modules(paths: list[Path], limit: int = MAX_MODULE_LINES) -> dict[str, int]:
    """``{"ssd_lesson/model/net.py": 412, ...}``: the modules among ``paths`` with more than ``limit`` lines."""
    lines = {p: len(p.read_text().splitlines()) for p in paths}
    return {str(p.relative_to(ROOT)): n for p, n in sorted(lines.items()) if n > limit}


def test_each_module_is_a_page_or_two():
    """One check for the whole package, listing every module over the limit."""
    assert len(MODULES) > 40 and long_modules(MODULES, limit=MAX_MODULE_LINES // 2), "the check reads no module"
    assert long_modules(MODULES) == {}, f"modules over {MAX_MODULE_LINES} lines: {long_modules(MODULES)}"


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
