"""Packaging promises: the CLI's front door, and environment.yml mirroring pyproject.toml."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

from ssd_lesson.__main__ import COMMANDS, main

ROOT = Path(__file__).resolve().parent.parent


def test_cli_lists_commands_and_rejects_unknown(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    for name in ("dissect", "train", "bench", "notebooks"):
        assert name in out and name in COMMANDS
    assert main(["nonsense"]) == 2
    assert "unknown command 'nonsense'" in capsys.readouterr().err


def _names(reqs):
    return {re.split(r"[<>=\[ ]", r.strip().strip('"'), maxsplit=1)[0].lower() for r in reqs}


def test_environment_yml_mirrors_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {r.replace(" ", "") for r in project["dependencies"] + project["optional-dependencies"]["test"]}
    text = (ROOT / "environment.yml").read_text()
    assert "python=3.11" in text
    listed = {line.strip()[2:].strip().strip('"') for line in text.splitlines() if line.strip().startswith("- ")}
    missing = wanted - {s.replace(" ", "") for s in listed}
    assert not missing, f"environment.yml lacks {sorted(missing)}"
    assert "torch>=2.1,<=2.14.1" in wanted  # torch stays installable at <= 2.14.1


def test_core_imports_no_heavy_dependency():
    # The core loads with torch alone: fastai, matplotlib, torchvision stay out of it.
    import subprocess
    import sys

    code = ("import sys, ssd_lesson; heavy = [m for m in ('fastai', 'matplotlib', 'torchvision', 'pandas', 'ipywidgets') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
