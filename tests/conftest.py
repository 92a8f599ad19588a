"""Shared test set-up: headless matplotlib, one torch thread, the tiers' marks (slow, unit), and small
datasets several test files read.

Nothing here imports fastai, nor the package's data modules, at import time: the unit tier
(``python -m pytest -m unit``, :mod:`tests.tiers`) collects in a few seconds because of it.
"""
import getpass
import tempfile
from pathlib import Path

# Where inductor keeps what it compiles unless told otherwise; importing torch._inductor makes it.
# Looked at before anything imports torch, so the session knows whether it made the folder.
INDUCTOR_DEFAULT = Path(tempfile.gettempdir()) / f"torchinductor_{getpass.getuser()}"
INDUCTOR_DEFAULT_EXISTED = INDUCTOR_DEFAULT.exists()

import atexit
import os
import shutil
import sys

# Every test, and every process a test starts (TMPDIR is inherited), keeps its temporary files in a
# folder of the session's own; at the end the session checks that nothing was left there
# (pytest_sessionfinish below), then removes it: nothing stays in the system's temporary folder.
SESSION_TMP = Path(tempfile.mkdtemp(prefix="ssd-lesson-tests-"))
os.environ["TMPDIR"] = tempfile.tempdir = str(SESSION_TMP)
# A run that stops before the session ends (a wrong option: pytest's usage error) never reaches
# pytest_sessionfinish; the folder goes when the interpreter exits all the same.
atexit.register(shutil.rmtree, SESSION_TMP, ignore_errors=True)
#: What the session itself makes there: pytest's tmp_path folders, the compile caches (below), and the
#: torchinductor_<user> folder that importing torch._dynamo makes in the test process itself.
SESSION_OWN = ("pytest-of-", "ssd-lesson-compile-", "torchinductor_")

import matplotlib
import pytest
import torch

matplotlib.use("Agg")
# The tests' tensors are small: torch's intra-op threads cost more than they give, and on a busy machine
# they spin against other processes (the training tests took 5x the CPU with two threads on two loaded
# cores). One thread, unless OMP_NUM_THREADS says otherwise. Subprocesses and notebook kernels keep theirs.
if not os.environ.get("OMP_NUM_THREADS"):
    torch.set_num_threads(1)

from . import tiers  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _compile_caches_removed_at_the_end():
    """torch.compile's on-disk caches (inductor, triton) go into a folder removed when the session ends,
    not into /tmp/torchinductor_<user>, where they would stay (subprocesses inherit the variables).
    Inductor puts its precompiled headers in that default folder whatever the variables say: if the
    session made the folder, the session removes it."""
    import shutil

    with tempfile.TemporaryDirectory(prefix="ssd-lesson-compile-") as d, pytest.MonkeyPatch.context() as env:
        env.setenv("TORCHINDUCTOR_CACHE_DIR", f"{d}/inductor")
        env.setenv("TRITON_CACHE_DIR", f"{d}/triton")
        try:
            yield
        finally:
            if not INDUCTOR_DEFAULT_EXISTED:
                shutil.rmtree(INDUCTOR_DEFAULT, ignore_errors=True)


#: Whether the session selected unit tests only, and whether fastai was loaded when their collection ended.
UNIT_SESSION = pytest.StashKey[bool]()
HEAVY_AFTER_COLLECTION = pytest.StashKey[list]()


def pytest_ignore_collect(collection_path: Path, config) -> bool | None:
    """Under ``-m unit`` alone, the modules that hold no unit test are not imported at all (nor the notebooks,
    nor the browser tier): the selection is the same, and collecting it takes seconds, not half a minute."""
    if config.getoption("markexpr", "") != tiers.UNIT_ONLY:
        return None
    if collection_path.suffix == ".ipynb" or (collection_path.is_dir() and collection_path.name in tiers.NOT_UNIT_DIRS):
        return True
    if collection_path.suffix == ".py" and collection_path.name.startswith("test_") \
            and not tiers.is_unit_module(collection_path):
        return True
    return None


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects by these marks
def pytest_collection_modifyitems(config, items):
    """The notebooks' cells that nbval runs (testpaths has ``notebooks``) are in the slow tier: executing the
    series takes many minutes. ``-m "not slow"`` leaves them out; the plain ``python -m pytest`` runs them.
    The unit tier: the tests of modules that import no fastai (:func:`tests.tiers.is_unit_module`), unless
    marked slow, browser, or fastai (they load it when they run)."""
    for item in items:
        if item.path.suffix == ".ipynb":
            item.add_marker(pytest.mark.slow)
        elif not any(item.get_closest_marker(mark) for mark in tiers.NOT_UNIT_MARKS) and tiers.is_unit_module(item.path):
            item.add_marker(pytest.mark.unit)


def heavy_loaded() -> list[str]:
    """The modules of :data:`tests.tiers.HEAVY` (fastai) that this process has imported."""
    return sorted(m for m in tiers.HEAVY if m in sys.modules)


def pytest_collection_finish(session):
    session.config.stash[UNIT_SESSION] = bool(session.items) and all(i.get_closest_marker("unit") for i in session.items)
    session.config.stash[HEAVY_AFTER_COLLECTION] = heavy_loaded()


@pytest.fixture(autouse=True)
def _unit_tests_load_no_fastai(request):
    """A unit test fails if running it loaded fastai (checked whenever fastai was not loaded before it)."""
    check = request.node.get_closest_marker("unit") is not None and not heavy_loaded()
    yield
    if check and heavy_loaded():
        pytest.fail(f"{request.node.nodeid} is in the unit tier but loaded {heavy_loaded()}: mark it "
                    "@pytest.mark.fastai, or keep fastai out of what it runs", pytrace=False)


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory) -> Path:
    from .helpers import make_voc

    return make_voc(tmp_path_factory.mktemp("voc"))


@pytest.fixture(scope="module")
def fastai_root(tmp_path_factory) -> Path:
    from .helpers import make_fastai

    return make_fastai(tmp_path_factory.mktemp("fastai"))


@pytest.fixture(scope="module")
def voc_trees(tmp_path_factory) -> Path:
    """Small VOC 2007 and 2012 trees: both/ (VOCdevkit/VOC2007 and VOC2012), only12/ (VOCdevkit/VOC2012),
    fastai/ (pascal_2007 and pascal_2012), no_test/ (VOCdevkit/VOC2007 without its test split)."""
    from .helpers import SPEC_2012, make_fastai, make_voc

    root = tmp_path_factory.mktemp("years")
    for year_spec in ((), (SPEC_2012, "2012")):
        make_voc(root / "both", *year_spec)
        make_fastai(root / "fastai", *year_spec)
    make_voc(root / "only12", SPEC_2012, "2012")
    (make_voc(root / "no_test") / "ImageSets/Main/test.txt").unlink()  # as before VOCtest_06-Nov-2007.tar is unpacked
    return root


@pytest.fixture(scope="module")
def collage_dir(tmp_path_factory) -> Path:
    from ssd_lesson.data import collage

    return collage.make_collage_dataset(12, seed=3, out_dir=tmp_path_factory.mktemp("collage") / "set")


def pytest_sessionfinish(session, exitstatus):
    """Fail the session if a test or a command it ran left anything in the temporary folder, or if a session
    of unit tests only loaded fastai (while collecting them, or later)."""
    left = sorted(p.name for p in SESSION_TMP.iterdir() if not p.name.startswith(SESSION_OWN))
    shutil.rmtree(SESSION_TMP, ignore_errors=True)
    problems = [f"left in the temporary folder by the tests: {left}"] if left else []
    if session.config.stash.get(UNIT_SESSION, False) and heavy_loaded():
        when = "collecting it" if session.config.stash.get(HEAVY_AFTER_COLLECTION, []) else "running it"
        problems.append(f"the unit tier (tests/tiers.py) loaded {heavy_loaded()} while {when}")
    for line in problems:
        session.config.get_terminal_writer().line(line, red=True)
    if problems:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
