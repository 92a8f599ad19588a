"""Shared test set-up: headless matplotlib, one torch thread, the slow tier's marks, and small datasets
several test files read."""
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

from ssd_lesson.data import collage as C  # noqa: E402

from .helpers import make_fastai, make_voc  # noqa: E402


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


def pytest_collection_modifyitems(config, items):
    """The notebooks' cells that nbval runs (testpaths has ``notebooks``) are in the slow tier: executing the
    series takes many minutes. ``-m "not slow"`` leaves them out; the plain ``python -m pytest`` runs them."""
    for item in items:
        if item.path.suffix == ".ipynb":
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory) -> Path:
    return make_voc(tmp_path_factory.mktemp("voc"))


@pytest.fixture(scope="module")
def fastai_root(tmp_path_factory) -> Path:
    return make_fastai(tmp_path_factory.mktemp("fastai"))


@pytest.fixture(scope="module")
def collage_dir(tmp_path_factory) -> Path:
    return C.make_collage_dataset(12, seed=3, out_dir=tmp_path_factory.mktemp("collage") / "set")


def pytest_sessionfinish(session, exitstatus):
    """Fail the session if a test or a command it ran left anything in the temporary folder."""
    left = sorted(p.name for p in SESSION_TMP.iterdir() if not p.name.startswith(SESSION_OWN))
    shutil.rmtree(SESSION_TMP, ignore_errors=True)
    if left:
        session.config.get_terminal_writer().line(f"left in the temporary folder by the tests: {left}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
