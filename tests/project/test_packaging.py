"""Packaging promises: the CLI's front door, the learner's environment, and the tested versions pinned."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from ssd_lesson.__main__ import COMMANDS, main

ROOT = Path(__file__).resolve().parents[2]


def test_cli_lists_commands_and_rejects_unknown(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    for name in ("dissect", "train", "evaluate", "bench", "notebooks"):
        assert name in out and name in COMMANDS
    assert main(["nonsense"]) == 2
    assert "unknown command 'nonsense'" in capsys.readouterr().err


def _names(reqs):
    return {re.split(r"[<>=\[ ]", r.strip().strip('"'), maxsplit=1)[0].lower() for r in reqs}


def test_environment_yml_is_the_learners_install():
    """environment.yml (conda, and Binder's repo2docker) installs the course as pyproject.toml says, at the
    tested versions, without the test and browser extras: a learner gets no pytest and no Playwright."""
    text = (ROOT / "environment.yml").read_text()
    assert "python=3.11" in text
    listed = [line.strip()[2:].strip().strip('"') for line in text.splitlines() if line.strip().startswith("- ")]
    assert listed[-2:] == ["-c constraints.txt", "-e ."], listed
    assert not [x for x in listed if "[test]" in x or "playwright" in x or "pytest" in x], listed


def _pins(path: Path) -> dict[str, str]:
    lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    return {ln.split("==")[0].lower().replace("_", "-"): ln.split("==")[1] for ln in lines}


def test_constraints_pin_every_dependency_and_ci_installs_with_them():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = _pins(ROOT / "constraints.txt")
    wanted = _names(project["dependencies"] + project["optional-dependencies"]["test"])
    assert not wanted - set(pins), f"constraints.txt lacks {sorted(wanted - set(pins))}"
    assert all(re.fullmatch(r"[\w.+!-]+", v) for v in pins.values())  # exact versions, one per package
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    test_command = 'pip install -c constraints.txt -e ".[test]" && python -m pytest'
    assert test_command in ci and test_command in readme  # CI runs the README's test command, with the pins
    assert "pip install -c constraints.txt -e . && python -m ssd_lesson dissect" in readme


def test_the_installed_versions_are_the_pinned_ones():
    """In the environment the tests run in (CI's, made by .ci/run), each pinned dependency has its pinned
    version: constraints.txt says what was tested."""
    from importlib.metadata import version

    pins = _pins(ROOT / "constraints.txt")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = _names(project["dependencies"] + project["optional-dependencies"]["test"])
    differ = {n: (version(n), pins[n]) for n in names if version(n).split("+")[0] != pins[n].split("+")[0]}
    assert not differ, f"installed vs pinned: {differ}"


@pytest.mark.slow  # builds and installs a wheel with pip
def test_wheel_carries_the_data(tmp_path):
    # A plain (non-editable) install must run the lesson as a checkout does: the wheel holds
    # data/ as ssd_lesson/_data, and DATA_DIR finds it there. Built from a copy of the sources,
    # so the checkout gets no build/ folder.
    import os
    import shutil
    import subprocess
    import sys

    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("ssd_lesson", "data"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    subprocess.run(pip + ["wheel", str(src), "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "wheel")],
                   check=True, capture_output=True)
    (wheel,) = (tmp_path / "wheel").glob("ssd_lesson-*.whl")
    site = tmp_path / "site"
    subprocess.run(pip + ["install", str(wheel), "--no-deps", "-q", "--target", str(site)], check=True, capture_output=True)
    code = ("import ssd_lesson.data.paths as d, ssd_lesson.data.voc as v, ssd_lesson.course.lesson as s; "
            "print(d.__file__); print(d.DATA_DIR); print(s.find_checkpoint()); "
            "print(len(v.parse_voc_xml(d.EXAMPLE_DIR / 'example.xml', d.EXAMPLE_DIR).class_names))")
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    module, data_dir, checkpoint, n_objects = out.stdout.split("\n")[:4]
    assert Path(module).is_relative_to(site)  # the installed copy, not the checkout
    assert Path(data_dir) == site / "ssd_lesson" / "_data"
    assert Path(checkpoint) == site / "ssd_lesson" / "_data" / "checkpoints" / "ssd_collage.pth"
    assert int(n_objects) == 4


def test_readme_python_example_runs():
    # The README's code block, as a newcomer pastes it: it runs, and says what it claims.
    text = (ROOT / "README.md").read_text()
    (block,) = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    scope: dict = {}
    exec(compile(block, "README.md", "exec"), scope)
    res, anchors = scope["res"], scope["anchors"]
    assert len(anchors) == 189 and res.total.dim() == 0
    assert scope["class_logits"].grad.shape == (2, 189, 21) and scope["box_actns"].grad.shape == (2, 189, 4)
    assert res.match.gt_idx.shape == res.match.positive.shape == (2, 189)
    assert not (res.match.gt_idx[1] == 1).any()  # the padding row (-1) is never matched


def test_the_wheel_lists_every_sub_package():
    """setuptools installs only the packages pyproject.toml names: a new sub-package left out of the list
    would be missing from the wheel while every test of the checkout passes."""
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "ssd_lesson").rglob("__init__.py")}
    assert folders - listed == set(), f"not in pyproject.toml's packages: {sorted(folders - listed)}"
    assert {"ssd_lesson.io", "ssd_lesson.course.widgets", "ssd_lesson.course.exercises"} <= listed
