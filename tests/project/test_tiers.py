"""The unit tier (tests/tiers.py): which modules it holds, read from the source, and that collecting it
loads no fastai, checked in a fresh interpreter."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests import tiers

ROOT = Path(__file__).resolve().parents[2]


def test_the_reader_follows_imports_at_import_time_only(tmp_path):
    """A tiny repository: what a module imports at module level (in a ``try`` too, relatively, through a
    package's ``__init__``) counts, transitively; what a function imports, or ``if TYPE_CHECKING``, does not;
    a module whose ``pytestmark`` says ``fastai`` is out of the tier whatever it imports."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from .heavy import Model\n")
    (pkg / "sub" / "heavy.py").write_text("try:\n    from fastai.learner import Learner as Model\nexcept ImportError:\n"
                                          "    Model = object\n")
    (pkg / "light.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import fastai\n\n"
                                  "def later():\n    from .sub import heavy\n    return heavy\n")
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "conftest.py").write_text("import pytest\n")
    (tests / "test_light.py").write_text("from pkg.light import later\n")
    (tests / "test_via_package.py").write_text("import pkg.sub.heavy\n")  # pkg.sub's __init__ runs too
    (tests / "test_relative.py").write_text("from pkg import sub\n")
    for name, heavy in [("test_light", set()), ("test_via_package", {"fastai"}), ("test_relative", {"fastai"})]:
        assert tiers.heavy_imports(tests / f"{name}.py", tmp_path) == heavy, name
        assert tiers.is_unit_module(tests / f"{name}.py", tmp_path) == (not heavy), name
    (tests / "test_marked.py").write_text("import pytest\npytestmark = [pytest.mark.fastai]\n")  # it says it loads it
    assert tiers.module_marks(tests / "test_marked.py") == {"fastai"}
    assert not tiers.is_unit_module(tests / "test_marked.py", tmp_path) and not tiers.heavy_imports(tests / "test_marked.py", tmp_path)
    below = tests / "below"  # a conftest's imports count for every module under its folder
    below.mkdir()
    (below / "conftest.py").write_text("import pkg.sub\n")
    (below / "test_light.py").write_text("from pkg.light import later\n")
    assert tiers.heavy_imports(below / "test_light.py", tmp_path) == {"fastai"}


def test_the_project_s_tiers():
    """The core's tests are unit tests; those that import training or the fastai metric are not, nor the browser's."""
    for path in ("core/test_boxes.py", "core/test_matching.py", "core/test_loss.py"):
        assert tiers.is_unit_module(ROOT / "tests" / path), path
    for path in ("model/test_train.py", "model/test_metrics.py", "browser/test_jupyterlab.py"):
        assert not tiers.is_unit_module(ROOT / "tests" / path), path
    assert "fastai" in tiers.heavy_imports(ROOT / "tests" / "model" / "test_train.py")


@pytest.mark.slow  # collects the unit tier in a fresh interpreter
def test_collecting_the_unit_tier_loads_neither_fastai_nor_torchvision():
    """``python -m pytest -m unit --collect-only`` in a fresh interpreter: it collects the core's tests, none
    outside the unit modules, and neither fastai nor torchvision was imported (the conftest would fail the
    session for fastai too)."""
    code = ("import sys, pytest\n"
            "rc = pytest.main(['-m', 'unit', '--collect-only', '-q', '-p', 'no:cacheprovider'])\n"
            "print('HEAVY', sorted(m for m in ('fastai', 'torchvision') if m in sys.modules))\n"
            "sys.exit(rc)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "HEAVY []" in r.stdout
    collected = [line.split("::")[0] for line in r.stdout.splitlines() if "::" in line]
    assert "tests/core/test_matching.py" in collected and "tests/core/test_boxes.py" in collected
    assert all(tiers.is_unit_module(ROOT / path) for path in set(collected)), sorted(set(collected))
