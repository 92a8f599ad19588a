"""``import ssd_lesson`` and the command line's dispatch cost nothing: the core's names are re-exported
lazily (PEP 562), so ``python -m ssd_lesson --help`` answers without importing torch (3 s of the 3.2 s it
took). Checked in fresh processes, by what ``sys.modules`` holds, not by the clock."""
from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import ssd_lesson

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "fastai", "matplotlib", "pandas", "numpy")


def heavy_modules_after(code: str) -> list[str]:
    """The heavy modules a fresh interpreter holds after running ``code``."""
    probe = f"{code}\nimport sys\nprint(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True,
                         timeout=120).stdout
    return eval(out.strip().splitlines()[-1])


def test_importing_the_package_and_the_command_line_imports_nothing_heavy():
    assert heavy_modules_after("import ssd_lesson, ssd_lesson.__main__, ssd_lesson.commands.cli") == []
    assert heavy_modules_after("import ssd_lesson; ssd_lesson.__version__; dir(ssd_lesson)") == []


@pytest.mark.parametrize("command", ["train", "evaluate", "dissect", "notebooks"])
def test_each_command_s_help_and_a_wrong_option_import_nothing_heavy(command):
    """``python -m ssd_lesson train --help`` lists the loss options' defaults and the bodies without torch
    (``bench --help`` is the benchmark script's own, which needs torch to describe its cases)."""
    for argv, want, said in (([command, "--help"], 0, "usage: python -m ssd_lesson"),
                             ([command, "--no-such-option"], 2, "error: unrecognized arguments: --no-such-option")):
        code = ("import contextlib, io\nfrom ssd_lesson.__main__ import main\n"
                "with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.redirect_stderr(io.StringIO()) as err:\n"
                f"    try:\n        code = main({argv!r})\n    except SystemExit as done:\n        code = done.code\n"
                f"assert code == {want}, (code, out.getvalue()[:300], err.getvalue()[:300])\n"
                f"assert {said!r} in out.getvalue() + err.getvalue()")
        assert heavy_modules_after(code) == [], argv


def test_the_first_core_name_used_imports_torch():
    loaded = heavy_modules_after("import ssd_lesson; ssd_lesson.box_iou")
    assert "torch" in loaded and not {"fastai", "matplotlib", "pandas"} & set(loaded)


@pytest.mark.parametrize("name", ssd_lesson.__all__)
def test_every_exported_name_is_its_core_modules_object(name):
    module = importlib.import_module(f"ssd_lesson.{ssd_lesson._HOME[name]}")
    assert getattr(ssd_lesson, name) is getattr(module, name)
    assert name in module.__all__  # exported where it is defined too


def test_the_exports_are_listed_and_a_wrong_name_is_named():
    assert len(ssd_lesson.__all__) == len(set(ssd_lesson.__all__)) >= 20
    # what type checkers see (the TYPE_CHECKING imports) is what the package exports
    tree = ast.parse(Path(ssd_lesson.__file__).read_text())
    (checking,) = [n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING"]
    seen = {f"{n.module}:{a.name}" for n in checking.body for a in n.names}
    assert seen == {f"{module}:{name}" for name, module in ssd_lesson._HOME.items()}
    assert set(ssd_lesson.__all__) <= set(dir(ssd_lesson))
    from ssd_lesson import IOU_THRESHOLD, ssd_loss  # noqa: F401  (from-imports go through __getattr__ too)

    with pytest.raises(AttributeError, match="module 'ssd_lesson' has no attribute 'ssd_los'"):
        ssd_lesson.ssd_los  # noqa: B018
