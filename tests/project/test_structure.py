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
LAYERS = ["io", "core", "data", "model", "drawing", "course", "commands"]
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


def import_base(node: ast.ImportFrom, path: Path, package: Path) -> list[str]:
    """The dotted parts of the module a ``from ... import`` statement in ``path`` reads from, made absolute."""
    here = module_name(path, package).split(".")
    if path.name != "__init__.py":
        here = here[:-1]  # the package the module is in
    base = here[:len(here) - node.level + 1] if node.level else []
    return base + (node.module.split(".") if node.module else [])


def private_uses(package: Path) -> list[str]:
    """``"a.b: from a.c import _name"`` or ``"a.b: c._name"`` for every private name (one underscore, not a
    dunder) that a module of ``package`` takes from another module of it: by ``from x import _name``, or as
    an attribute of a module it imported (``from . import lesson`` then ``lesson._helper``)."""
    private = lambda name: name.startswith("_") and not name.startswith("__")  # noqa: E731
    found = []
    for path in sorted(package.rglob("*.py")):
        me, tree = module_name(path, package), ast.parse(path.read_text())
        modules: dict[str, str] = {}  # a local name -> the package's module it is bound to
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                base = import_base(node, path, package)
                if base[:1] != [package.name]:
                    continue
                for alias in node.names:
                    if private(alias.name):
                        found.append(f"{me}: from {'.'.join(base)} import {alias.name}")
                    modules[alias.asname or alias.name] = ".".join(base + [alias.name])
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == package.name:  # import pkg.a.b as m: m is pkg.a.b; else pkg
                        modules[alias.asname or package.name] = alias.name if alias.asname else package.name
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules
                    and private(node.attr)):
                found.append(f"{me}: {node.value.id}.{node.attr}")
    return sorted(set(found))


def import_nodes(tree: ast.AST, module_level: bool = False) -> list[ast.stmt]:
    """The ``import`` statements of ``tree``; with ``module_level``, only those run when the module is imported
    (at the top, or under an ``if``/``try``, ``if TYPE_CHECKING:`` included; not inside a function)."""
    found, todo = [], [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        todo += [c for c in ast.iter_child_nodes(node)
                 if not (module_level and isinstance(c, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))]
    return found


def imported_modules(path: Path, package: Path, module_level: bool = False) -> set[str]:
    """Every module ``path`` imports, at module level or inside a function (only the former with
    ``module_level``), as absolute dotted names (``from ..core.loss import ssd_loss`` in
    ``ssd_lesson/model/train.py`` gives ``ssd_lesson.core.loss``; ``from . import plots`` gives
    ``ssd_lesson.<its package>.plots``)."""
    is_module = lambda parts: (package.parent.joinpath(*parts).with_suffix(".py").is_file()  # noqa: E731
                                or package.parent.joinpath(*parts, "__init__.py").is_file())
    names = set()
    for node in import_nodes(ast.parse(path.read_text()), module_level):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = import_base(node, path, package)
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


def import_circles(package: Path) -> list[str]:
    """``"a -> b -> a"`` for import circles between the modules of ``package``, through imports run when a module
    is imported (:func:`import_nodes`; a type annotation's ``if TYPE_CHECKING:`` import counts: the two modules
    still lean on each other). At least one circle of every knot is named, each starting at its smallest name."""
    graph = {module_name(p, package): {m for m in imported_modules(p, package, module_level=True)
                                       if m.split(".")[0] == package.name}
             for p in sorted(package.rglob("*.py"))}
    circles: set[str] = set()
    done: set[str] = set()

    def visit(module: str, way: list[str]) -> None:
        for other in sorted(graph.get(module, set()) - {module}):
            if other in way:  # back to a module on the way here: a circle
                circle = way[way.index(other):]
                first = circle.index(min(circle))
                circle = circle[first:] + circle[:first]
                circles.add(" -> ".join([*circle, circle[0]]))
            elif other not in done:
                visit(other, [*way, other])
        done.add(module)

    for module in sorted(graph):
        if module not in done:
            visit(module, [module])
    return sorted(circles)


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
                                         "draw", "figures", "plots", "threshold", "checkpoint"}


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


def test_no_module_takes_a_private_name_from_another():
    """What one module shares with another is public and documented; a leading underscore means
    "this module's own", so no other module imports it or reads it through the module."""
    assert private_uses(PACKAGE) == []


def test_the_checker_finds_a_private_name_taken_across_modules(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "low").mkdir(parents=True)
    for init in (pkg / "__init__.py", pkg / "low" / "__init__.py"):
        init.write_text("")
    (pkg / "low" / "base.py").write_text("_SECRET = 1\nSHARED = 2\n\ndef _helper():\n    return _SECRET\n")
    (pkg / "low" / "user.py").write_text("from .base import SHARED, __all__ as ALL\nfrom . import base\n\n"
                                         "def f():\n    return base.SHARED, SHARED, ALL\n")
    assert private_uses(pkg) == []  # public names, a dunder, and a module's own privates pass
    (pkg / "low" / "user.py").write_text("from .base import _SECRET\nfrom pkg.low import base as b\n\n"
                                         "def f():\n    from ..low import base\n    return base._helper(), b._SECRET\n")
    assert private_uses(pkg) == ["pkg.low.user: b._SECRET", "pkg.low.user: base._helper",
                                 "pkg.low.user: from pkg.low.base import _SECRET"]


def test_no_import_circle():
    assert import_circles(PACKAGE) == []


def test_the_checker_finds_an_import_circle(tmp_path):
    """Two modules of a tiny package that import each other at module level (one for a type annotation only)
    are a circle; an import inside a function runs later and makes none; a longer circle is named whole."""
    pkg = tmp_path / "pkg"
    (pkg / "low").mkdir(parents=True)
    for init in (pkg / "__init__.py", pkg / "low" / "__init__.py"):
        init.write_text("")
    (pkg / "low" / "net.py").write_text("from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n"
                                        "    from .record import Record\n")
    (pkg / "low" / "record.py").write_text("from . import net\n")
    assert import_circles(pkg) == ["pkg.low.net -> pkg.low.record -> pkg.low.net"]
    (pkg / "low" / "net.py").write_text("def build():\n    from .record import Record\n    return Record\n")
    assert import_circles(pkg) == []
    (pkg / "low" / "net.py").write_text("from pkg.low import train\n")
    (pkg / "low" / "train.py").write_text("import os\n")
    assert import_circles(pkg) == []  # record -> net -> train, and no way back
    (pkg / "low" / "train.py").write_text("from .record import *\n")
    assert import_circles(pkg) == ["pkg.low.net -> pkg.low.train -> pkg.low.record -> pkg.low.net"]


def third_party(path: Path) -> set[str]:
    """Top-level names of the modules outside the package (and the standard library) that ``path`` imports."""
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    return {m.split(".")[0] for m in imported_modules(path, PACKAGE) if m.split(".")[0] not in stdlib | {PACKAGE.name}}


@pytest.mark.parametrize("path", sorted((PACKAGE / "core").glob("*.py")), ids=lambda p: p.name)
def test_core_modules_import_torch_only(path):
    assert third_party(path) <= {"torch"}, f"{path.name} imports {sorted(third_party(path) - {'torch'})}"


@pytest.mark.parametrize("path", sorted((PACKAGE / "io").glob("*.py")), ids=lambda p: p.name)
def test_io_modules_import_the_standard_library_only(path):
    assert third_party(path) == set(), f"{path.name} imports {sorted(third_party(path))}"


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
