"""Shared test set-up: headless matplotlib, and small datasets several test files read."""
import getpass
import tempfile
from pathlib import Path

# Where inductor keeps what it compiles unless told otherwise; importing torch._inductor makes it.
# Looked at before anything imports torch, so the session knows whether it made the folder.
INDUCTOR_DEFAULT = Path(tempfile.gettempdir()) / f"torchinductor_{getpass.getuser()}"
INDUCTOR_DEFAULT_EXISTED = INDUCTOR_DEFAULT.exists()

import os
import shutil

# Every test, and every process a test starts (TMPDIR is inherited), keeps its temporary files in a
# folder of the session's own; at the end the session checks that nothing was left there
# (pytest_sessionfinish below), then removes it: nothing stays in the system's temporary folder.
SESSION_TMP = Path(tempfile.mkdtemp(prefix="ssd-lesson-tests-"))
os.environ["TMPDIR"] = tempfile.tempdir = str(SESSION_TMP)
#: What the session itself makes there: pytest's tmp_path folders, the compile caches (below), and the
#: torchinductor_<user> folder that importing torch._dynamo makes in the test process itself.
SESSION_OWN = ("pytest-of-", "ssd-lesson-compile-", "torchinductor_")

import matplotlib
import pytest

matplotlib.use("Agg")

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


@pytest.fixture(scope="session", autouse=True)
def _fresh_process_state():
    """The warning filters and torch's deterministic switch as the session starts (set up before any
    module's fixtures, so before anything called the starting kit)."""
    import warnings

    import torch

    return list(warnings.filters), (torch.are_deterministic_algorithms_enabled(),
                                    torch.is_deterministic_algorithms_warn_only_enabled())


@pytest.fixture(autouse=True)
def _process_state_restored(_fresh_process_state):
    """Tests that call the starting kit set up a notebook (warning filters, deterministic algorithms):
    after each test the process is put back as a fresh ``python -m ssd_lesson`` would find it."""
    import warnings

    import torch

    yield
    filters, (deterministic, warn_only) = _fresh_process_state
    warnings.filters[:] = filters
    warnings._filters_mutated()  # drop the cached "once"/"default" decisions made under the old filters
    torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)


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
