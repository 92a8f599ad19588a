"""Shared test set-up: headless matplotlib, and small datasets several test files read."""
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

from ssd_lesson import collage as C  # noqa: E402

from .helpers import make_fastai, make_voc  # noqa: E402


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory) -> Path:
    return make_voc(tmp_path_factory.mktemp("voc"))


@pytest.fixture(scope="module")
def fastai_root(tmp_path_factory) -> Path:
    return make_fastai(tmp_path_factory.mktemp("fastai"))


@pytest.fixture(scope="module")
def collage_dir(tmp_path_factory) -> Path:
    return C.make_collage_dataset(12, seed=3, out_dir=tmp_path_factory.mktemp("collage") / "set")
