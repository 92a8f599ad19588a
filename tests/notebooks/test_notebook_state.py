"""The starting kit sets a notebook's process-wide state (seeds, deterministic algorithms, warning filters,
matplotlib's rcParams) inside a notebook's kernel only: a script, the command line or a test that calls
``start_lesson`` finds the process as it was. ``notebook_state`` gives the same set-up for a ``with`` block."""
from __future__ import annotations

import random
import warnings
from types import SimpleNamespace

import matplotlib
import numpy as np
import pytest
import torch

from ssd_lesson.course import lesson as K
from ssd_lesson.data.voc import VocNotFoundWarning

# Libraries add warning filters of their own when first imported: imported here, before any snapshot.
import fastai.vision.all  # noqa: E402, F401
import IPython  # noqa: E402, F401


def process_state() -> dict:
    """What the kit may set, as comparable values."""
    return {"filters": list(warnings.filters),
            "deterministic": (torch.are_deterministic_algorithms_enabled(),
                              torch.is_deterministic_algorithms_warn_only_enabled()),
            "random": random.getstate(), "numpy": np.random.get_state()[1].tolist(),
            "torch": torch.random.get_rng_state().tolist(),
            "rc": {k: matplotlib.rcParams[k] for k in ("figure.dpi", "savefig.dpi", "font.size", "figure.max_open_warning")},
            "backend": matplotlib.get_backend()}


def ignored(category: type) -> bool:
    return any(action == "ignore" and message is None and cat is category and module is None
               for action, message, cat, module, _ in warnings.filters)


def assert_notebook_set_up(seed: int) -> None:
    """Seeded as the notebooks are, deterministic (warn only), FutureWarning and the VOC advice quiet, 90 dpi, 9 pt."""
    assert random.random() == random.Random(seed).random()
    assert np.random.rand() == np.random.RandomState(seed).rand()
    assert torch.equal(torch.rand(3), torch.rand(3, generator=torch.Generator().manual_seed(seed)))
    assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
    assert ignored(FutureWarning) and ignored(VocNotFoundWarning)
    assert (matplotlib.rcParams["figure.dpi"], matplotlib.rcParams["savefig.dpi"], matplotlib.rcParams["font.size"]) == (90, 90, 9)


def test_outside_a_kernel_setup_notebook_and_start_lesson_change_nothing(capsys):
    before = process_state()
    assert K.setup_notebook(3, figure_format="jpeg") is False
    lesson = K.start_lesson(checkpoint=False, seed=3, verbose=False)
    assert process_state() == before
    assert lesson.class_logits.shape == (1, 189, 21)  # and the kit still works


def test_notebook_state_sets_the_notebooks_state_for_the_block_only():
    before = process_state()
    with K.notebook_state(seed=5):
        assert_notebook_set_up(5)
        warnings.simplefilter("error")  # what the block changes is put back too
    assert process_state() == before


def test_notebook_state_puts_everything_back_after_an_error():
    before = process_state()
    with pytest.raises(KeyError), K.notebook_state():
        torch.rand(10)
        raise KeyError("a failing test")
    assert process_state() == before


def test_in_a_kernel_setup_notebook_sets_everything(monkeypatch):
    monkeypatch.setattr(K, "in_notebook", lambda: True)
    with K.notebook_state(seed=11):  # only to put the process back afterwards
        random.seed(99), np.random.seed(99), torch.manual_seed(99)
        torch.use_deterministic_algorithms(False)
        warnings.resetwarnings()
        matplotlib.rcParams["font.size"] = 14
        assert K.setup_notebook(7, figure_format="jpeg") is True
        assert_notebook_set_up(7)


@pytest.mark.parametrize("shell, inside", [
    (None, False),                              # plain python, pytest, the command line
    (SimpleNamespace(), False),                 # a terminal IPython: no kernel
    (SimpleNamespace(kernel=object()), True),   # ipykernel: notebooks, JupyterLab, nbclient
])
def test_in_notebook_means_an_ipython_kernel(monkeypatch, shell, inside):
    import IPython

    monkeypatch.setattr(IPython, "get_ipython", lambda: shell)
    assert K.in_notebook() is inside


@pytest.mark.slow  # starts a Jupyter kernel
def test_in_a_real_kernel_the_notebook_is_set_up():
    """What the notebooks get: an ipykernel (started as nbclient and JupyterLab start it) is a notebook."""
    import nbformat
    from nbclient import NotebookClient

    code = ("import matplotlib, torch\nfrom ssd_lesson.course.lesson import in_notebook, setup_notebook\n"
            "print(in_notebook(), setup_notebook(figure_format='jpeg'), matplotlib.rcParams['font.size'],"
            " torch.are_deterministic_algorithms_enabled())")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    assert nb.cells[0].outputs[0]["text"] == "True True 9.0 True\n"
