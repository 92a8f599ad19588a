"""The unit tier: the fast tests whose modules import no fastai (nor torchvision), collected in seconds.

Whether collecting a test module loads either is read from the source, before anything is imported: the
imports that run when the module is imported (at module level, in a ``try`` or an ``if`` too;
not those inside a function, which run only when it is called, nor those under ``if TYPE_CHECKING``),
followed through every module of the repository they reach (``ssd_lesson``, ``tests``: a package's
``__init__`` included) and the ``conftest.py`` files above the test module. A test module that
reaches none of :data:`SLOW_TO_IMPORT` holds unit tests.

The conftest marks the tests of those modules ``unit`` (unless they are marked slow, browser, or
``fastai``: a test that loads fastai when it runs says so) and, when the mark expression is ``unit``
alone, does not even import the other modules: ``python -m pytest -m unit`` collects in a few
seconds. The run-time check (the conftest again) fails a unit test that loads fastai when it runs,
and a unit session whose collection loaded it.

Only the standard library here: the conftest imports this module before any test module.
"""
from __future__ import annotations

import ast
import functools
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[1]
#: The top-level modules a unit test may not load, neither collecting nor running: fastai (5 s to import).
HEAVY = frozenset({"fastai"})
#: What collecting the unit tier does not import either: torchvision costs 2 s more (its models come with
#: ``torchvision.ops``). A unit test may use it when it runs (``torchvision.ops.box_iou`` as a reference).
SLOW_TO_IMPORT = HEAVY | {"torchvision"}
#: Folders of tests that are never unit tests: the browser tier drives a real Chromium.
NOT_UNIT_DIRS = ("browser",)
#: Marks that keep a test out of the unit tier: ``fastai`` says that running it loads fastai (it builds a
#: model, trains or evaluates in the test process), which no import at the top of its module shows.
NOT_UNIT_MARKS = ("slow", "browser", "fastai")
#: The mark expression for which the other modules are not collected at all.
UNIT_ONLY = "unit"


def _is_type_checking(test: ast.expr) -> bool:
    """``if TYPE_CHECKING:`` or ``if typing.TYPE_CHECKING:``: a block that never runs."""
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_time_nodes(body: list[ast.stmt]):
    """The ``import`` statements among ``body`` that run when the module runs: not inside functions,
    nor in ``if TYPE_CHECKING`` blocks; inside classes, ``try``, ``with`` and other blocks, yes."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _import_time_nodes(node.orelse)
        else:
            for field in ("body", "orelse", "finalbody", "handlers", "cases"):
                inner = getattr(node, field, None)
                if isinstance(inner, list):
                    yield from _import_time_nodes([n for n in inner if isinstance(n, ast.AST)])


@functools.lru_cache(maxsize=None)
def _file_of(dotted: str, root: Path) -> Optional[Path]:
    """The source file of the repository's module ``dotted`` under ``root`` (None: not one of ours)."""
    base = root.joinpath(*dotted.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _name_of(path: Path, root: Path) -> str:
    """``root/tests/core/test_boxes.py`` -> ``tests.core.test_boxes`` (a package's ``__init__`` is the package)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@functools.lru_cache(maxsize=None)
def _parsed(path: Path) -> ast.Module:
    return ast.parse(path.read_text())


@functools.lru_cache(maxsize=None)
def import_time_modules(path: Path, root: Path = ROOT) -> frozenset[str]:
    """Every module that importing ``path`` imports at once, as absolute dotted names, with the packages
    they are in (``import a.b.c`` runs ``a`` and ``a.b`` too). ``from x import y`` names ``x.y`` when that
    is a module of the repository, else ``x``."""
    here = _name_of(path, root).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    names: set[str] = set()
    for node in _import_time_nodes(_parsed(path).body):
        if isinstance(node, ast.Import):
            targets = [a.name.split(".") for a in node.names]
        else:
            base = package[:len(package) - node.level + 1] if node.level else []
            module = base + (node.module.split(".") if node.module else [])
            targets = [module + [a.name] if _file_of(".".join(module + [a.name]), root) else module
                       for a in node.names]
        for parts in targets:
            names.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return frozenset(names)


@functools.lru_cache(maxsize=None)
def _heavy_reached(path: Path, root: Path, heavy: frozenset[str]) -> frozenset[str]:
    """The modules of ``heavy`` that importing ``path`` loads, through the repository's own modules."""
    seen, todo, found = {path}, [path], set()
    while todo:
        for name in import_time_modules(todo.pop(), root):
            if name.split(".")[0] in heavy:
                found.add(name.split(".")[0])
            source = _file_of(name, root)
            if source is not None and source not in seen:
                seen.add(source)
                todo.append(source)
    return frozenset(found)


def heavy_imports(test_module: Path, root: Path = ROOT, heavy: frozenset[str] = SLOW_TO_IMPORT) -> frozenset[str]:
    """The modules of ``heavy`` (fastai, torchvision) that collecting ``test_module`` loads: its imports, its
    packages' ``__init__`` files and the ``conftest.py`` files from ``root`` down to its folder."""
    test_module = test_module.resolve()
    starts = [test_module]
    rel = test_module.parent.relative_to(root).parts
    for folder in (root.joinpath(*rel[:i]) for i in range(len(rel) + 1)):
        for extra in ("conftest.py", "__init__.py"):
            candidate = folder / extra
            if candidate.is_file() and candidate != test_module:
                starts.append(candidate)
    return frozenset().union(*(_heavy_reached(p, root, heavy) for p in starts))


def module_marks(test_module: Path) -> frozenset[str]:
    """The marks a module's ``pytestmark = pytest.mark.<name>`` (or a list of them) sets on all its tests."""
    marks = set()
    for node in _parsed(test_module).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets):
            for sub in ast.walk(node.value):
                if (isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Attribute)
                        and sub.value.attr == "mark"):
                    marks.add(sub.attr)
    return frozenset(marks)


@functools.lru_cache(maxsize=None)
def is_unit_module(test_module: Path, root: Path = ROOT) -> bool:
    """True for a test module outside the browser tier, not marked out of the unit tier as a whole
    (``pytestmark`` with one of :data:`NOT_UNIT_MARKS`), whose collection loads nothing of :data:`SLOW_TO_IMPORT`."""
    test_module = test_module.resolve()
    if test_module.suffix != ".py" or any(part in NOT_UNIT_DIRS for part in test_module.relative_to(root).parts):
        return False
    return not module_marks(test_module) & set(NOT_UNIT_MARKS) and not heavy_imports(test_module, root)
