"""The starting kit: one call gives a notebook (or a test) everything it starts from.

* :func:`start_lesson`: the example (the article's VOC image when Pascal VOC is here,
  else the embedded offline one, with a line saying which), the 189 anchors, the model's
  activations on it (the trained checkpoint, else seeded random numbers) and the ground
  truth as a batch of one. Notebooks 02-08 and 11 open with it.
* :func:`lesson_records`: a small train / valid split, VOC when present, else the offline
  collage set, made once in the cache folder (notebook 09).
* :func:`save_short_model`: where notebook 09's short model goes;
  :mod:`ssd_lesson.course.held_out` finds it (or the shipped checkpoint) and the images it never saw.

Temporary work goes into :func:`cache_dir`, never a fixed path in ``/tmp``. Boxes are
``(y0, x0, y1, x1)`` fractions of the image.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Iterator, Literal, NamedTuple, Optional

import numpy as np
import torch
from torch import Tensor

from ..core.anchors import Anchors, make_anchors
from ..data.example import Example
from ..data.paths import DATA_DIR
from ..core.loss import SSDLossResult, ssd_loss
from ..core.options import LossOptions
from ..model.checkpoint import CHECKPOINT_DIR, find_checkpoint
from ..data.voc import BACKGROUND, VOC_CLASSES

__all__ = ["CHECKPOINT_DIR", "OUT_ENV_VAR", "output_dir", "cache_dir", "Lesson", "start_lesson", "setup_notebook",
           "in_notebook", "notebook_state",
           "synthetic_example", "load_example", "example_activations", "find_checkpoint", "lesson_records",
           "save_short_model", "short_model_path", "collage_split", "shown_path", "voc_status", "SHORT_MODEL",
           "COLLAGE_IMAGES"]

OUT_ENV_VAR = "SSD_LESSON_OUT"
#: The small model notebooks 09 and 10 train and use when no trained checkpoint ships.
SHORT_MODEL = dict(body="tiny", pretrained=False, n_hidden=128)
COLLAGE_IMAGES = 200  # the offline set of notebooks 09 and 10

# (class id, (y0, x0, y1, x1)): cow, person, bicycle, motorbike, as in the article's image.
SYNTHETIC_OBJECTS = ((9, (0.30, 0.04, 0.80, 0.50)), (14, (0.12, 0.55, 0.86, 0.74)),
                     (1, (0.56, 0.40, 0.95, 0.70)), (13, (0.50, 0.73, 0.93, 0.98)))


def output_dir() -> Path:
    """Where the project writes: ``$SSD_LESSON_OUT``, else ``ssd_lesson_out/`` of the checkout
    (so notebooks, which run in ``notebooks/``, and the command line share it), else of the
    current folder (an installed package)."""
    if os.environ.get(OUT_ENV_VAR):
        return Path(os.environ[OUT_ENV_VAR]).expanduser()
    root = DATA_DIR.parent
    return (root if (root / "pyproject.toml").is_file() else Path.cwd()) / "ssd_lesson_out"


def cache_dir() -> Path:
    """``output_dir() / "cache"``: made data and models, reused from one run to the next."""
    return output_dir() / "cache"


# ---------------------------------------------------------------- the example and its activations
def synthetic_example(size: int = 224, seed: int = 0) -> Example:
    """A plain synthetic picture with the article's four objects (cow, person, bicycle, motorbike).

    Used only when the embedded example is unavailable. Boxes: ``(4, 4)`` fractions.
    """
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, size)[:, None, None]
    sky, grass = np.array([150, 190, 230.0]), np.array([110, 160, 90.0])
    img = np.where(y < 0.55, sky * (1 - 0.3 * y), grass * (1.2 - 0.4 * y)) * np.ones((1, size, 1))
    tints = {9: (120, 80, 50), 14: (200, 60, 60), 1: (60, 60, 200), 13: (40, 40, 40)}
    for cls, (y0, x0, y1, x1) in SYNTHETIC_OBJECTS:  # a soft blob inside each box stands in for the object
        yy, xx = np.mgrid[0:size, 0:size] / size
        inside = ((yy - (y0 + y1) / 2) / ((y1 - y0) / 2)) ** 2 + ((xx - (x0 + x1) / 2) / ((x1 - x0) / 2)) ** 2 < 0.8
        img[inside] = 0.35 * img[inside] + 0.65 * np.array(tints[cls])
    img = np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)
    boxes = np.array([b for _, b in SYNTHETIC_OBJECTS], np.float32)
    labels = np.array([c for c, _ in SYNTHETIC_OBJECTS], np.int64)
    return Example(img, img, boxes, labels, [VOC_CLASSES[c] for c in labels],
                   "Using a seeded synthetic example (4 boxes: cow, person, bicycle, motorbike)", None)


def load_example(offline: bool = False, voc: Optional[str] = None) -> Example:
    """:func:`ssd_lesson.data.example.lesson_example` (VOC, else the embedded photo collage), else :func:`synthetic_example`."""
    from ..data.example import lesson_example

    try:
        return lesson_example(voc=voc, offline=offline)
    except FileNotFoundError:  # the embedded example is not there (a broken install)
        return synthetic_example()


def example_activations(example: Example, anchors: Optional[Anchors] = None, seed: int = 0, scale: float = 1.0,
                        checkpoint: str | Path | None | Literal[False] = None,
                        verbose: bool = True) -> tuple[Tensor, Tensor, str]:
    """The model's outputs on ``example``: ``(1, A, 21)`` class logits, ``(1, A, 4)`` box activations, and a source line.

    From a trained checkpoint (``checkpoint``, else the first of ``data/checkpoints/*.pth``),
    so the predicted boxes float as in the article; when there is none (or
    ``checkpoint=False``), seeded ``randn * scale``. Prints the source line if ``verbose``.
    """
    anchors = make_anchors() if anchors is None else anchors
    path = None if checkpoint is False else find_checkpoint(checkpoint)
    if path is not None:
        from ..model.checkpoint import load_checkpoint  # imports fastai: only when there is a model to load

        model = load_checkpoint(path, spec=anchors.spec)
        with torch.no_grad():
            class_logits, box_actns = model(example.batch()[0])
        source = f"Activations: the trained model in {shown_path(path)} ({model.body_name} body)"
    else:
        g = torch.Generator().manual_seed(seed)
        class_logits = torch.randn(1, len(anchors), BACKGROUND + 1, generator=g) * scale
        box_actns = torch.randn(1, len(anchors), 4, generator=g) * scale
        why = "checkpoint=False" if checkpoint is False else f"no checkpoint in {shown_path(CHECKPOINT_DIR)}"
        source = f"Activations: seeded random (torch.randn * {scale:g}, seed {seed}); {why}"
    if verbose:
        print(source)
    return class_logits, box_actns, source


def shown_path(path: Path) -> str:
    """``path`` relative to the project (``data/checkpoints/x.pth``) when inside it: no machine's paths in outputs."""
    try:
        return str(Path(path).resolve().relative_to(DATA_DIR.parent.resolve()))
    except ValueError:
        return str(path)


class Lesson(NamedTuple):
    """What every dissection notebook starts from; unpacks as the six names the notebooks use.

    example: the image and its ground truth; anchors: the 189 anchor boxes;
    class_logits ``(1, A, C+1)`` and box_actns ``(1, A, 4)``: the model's activations on it;
    gt_boxes ``(1, G, 4)`` fractions and gt_labels ``(1, G)``: the ground truth as a batch of one.
    """

    example: Example
    anchors: Anchors
    class_logits: Tensor
    box_actns: Tensor
    gt_boxes: Tensor
    gt_labels: Tensor

    def loss(self, **options: Any) -> SSDLossResult:
        """``ssd_loss`` of the example; ``options`` as :class:`~ssd_lesson.core.loss.LossOptions` (the lesson's by default)."""
        return ssd_loss(self.class_logits, self.box_actns, self.gt_boxes, self.gt_labels, self.anchors, **options)


def start_lesson(figure_format: Optional[str] = None, *, requires_grad: bool = False,
                 checkpoint: str | Path | None | Literal[False] = None, offline: bool = False,
                 voc: Optional[str] = None, seed: int = 0, verbose: bool = True) -> Lesson:
    """Set the notebook up (:func:`setup_notebook`: in a kernel only) and return the example, anchors and activations.

    Prints two lines: which example is used and where the activations come from.
    ``requires_grad`` makes the activations leaves that ``.backward()`` fills (notebook 08).
    ``figure_format`` (``"jpeg"`` for figures full of photographs) as in :func:`setup_notebook`.
    """
    setup_notebook(seed, figure_format=figure_format)
    example = load_example(offline=offline, voc=voc)
    if verbose:
        print(example.source)
    anchors = make_anchors()
    class_logits, box_actns, _ = example_activations(example, anchors, seed=seed, checkpoint=checkpoint,
                                                     verbose=verbose)
    if requires_grad:
        class_logits.requires_grad_()
        box_actns.requires_grad_()
    _, gt_boxes, gt_labels = example.batch()
    return Lesson(example, anchors, class_logits, box_actns, gt_boxes, gt_labels)


def in_notebook() -> bool:
    """True inside an IPython kernel (a notebook, JupyterLab, nbclient); False in a script, a test or the
    command line, and in a terminal IPython."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    return getattr(get_ipython(), "kernel", None) is not None


def setup_notebook(seed: int = 0, quiet_voc: bool = True, figure_format: Optional[str] = None,
                   jpeg_quality: int = 75) -> bool:
    """Inside a notebook's kernel: fixed seeds, quiet known warnings, one plotting style, figures inline.

    All of that is the kernel's own process-wide state (the seeds of ``random``, numpy and torch,
    torch's deterministic algorithms, warning filters, matplotlib's backend and rcParams), so
    outside a kernel (a script, the tests, ``python -m ssd_lesson``) it changes nothing and
    returns False; :func:`notebook_state` gives the same set-up for a ``with`` block only.
    ``quiet_voc`` hides the (long) "Pascal VOC not found" message, which notebook 01
    shows once on purpose; each notebook still prints which example it uses.
    ``figure_format`` (e.g. ``"jpeg"``) is how figures are stored in the notebook: the
    figures full of photographs (Figs. 1-3, 5, 6) are about 4x smaller as JPEG
    (``jpeg_quality``) than as PNG. None leaves IPython's choice.
    """
    if not in_notebook():
        return False
    _set_up(seed, quiet_voc)
    from ..drawing.draw import notebook_style

    notebook_style(figure_format, jpeg_quality)
    return True


def _set_up(seed: int, quiet_voc: bool) -> None:
    """Seeds, torch's deterministic algorithms and the warning filters of a notebook (process-wide)."""
    import random
    import warnings

    from ..data.voc import VocNotFoundWarning

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    warnings.filterwarnings("ignore", category=FutureWarning)  # deprecations inside fastai/torch, not ours
    if quiet_voc:
        warnings.filterwarnings("ignore", category=VocNotFoundWarning)


@contextlib.contextmanager
def notebook_state(seed: int = 0, quiet_voc: bool = True) -> Iterator[None]:
    """What :func:`setup_notebook` sets in a kernel (seeds, deterministic algorithms, warning filters,
    the plotting style's rcParams), for the ``with`` block only: the random states, torch's
    deterministic switch, the filters and rcParams are put back after it. For tests and scripts
    that draw or compute as the notebooks do."""
    import random
    import warnings

    from ..drawing.draw import notebook_style_scope

    states = random.getstate(), np.random.get_state(), torch.random.get_rng_state()
    deterministic = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        with warnings.catch_warnings(), notebook_style_scope():
            _set_up(seed, quiet_voc)
            yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.random.set_rng_state(states[2])
        torch.use_deterministic_algorithms(deterministic[0], warn_only=deterministic[1])


def voc_status() -> str:
    """Where :func:`~ssd_lesson.data.voc.find_voc` looks for Pascal VOC 2007 (a path passed to it, else
    ``$SSD_LESSON_VOC``, else fastai's data folder: the first one given) and what it found, in a few lines
    (notebook 01); the README says how to get the data."""
    from ..data.voc import ENV_VAR, fastai_default_voc, find_voc

    root = find_voc(warn=False)
    if root is not None:
        return f"Pascal VOC 2007 found in {_home_as_tilde(root)}"
    env = os.environ.get(ENV_VAR)
    if env:
        fastai_line = "not looked at: the environment variable comes first"
    else:
        try:
            fastai_line = f"{_home_as_tilde(fastai_default_voc())}, which does not hold it"
        except Exception as e:  # a broken fastai install or config: say so, as find_voc does
            fastai_line = f"unavailable ({type(e).__name__}: {e})"
    return "\n".join([
        "Pascal VOC 2007 was not found. Where the library looks, the first of these that is given:",
        "  1. a path passed to find_voc(path): none passed here",
        f"  2. the environment variable {ENV_VAR}: " + (f"{_home_as_tilde(env)}, which does not hold it" if env
                                                      else "not set"),
        f"  3. fastai's data folder: {fastai_line}",
        "README.md, section 'Data: Pascal VOC 2007, or the embedded example', says how to get it."])


def _home_as_tilde(path: Any) -> str:
    """``path`` with the home folder written ``~``: no machine's home folder in a stored output."""
    return str(path).replace(str(Path.home()), "~")


# ---------------------------------------------------------------- notebooks 09 and 10: data and models
def lesson_records(n_train: int = 160, n_valid: int = 40, seed: int = 0, verbose: bool = True) -> tuple[list, list]:
    """A short run's train and valid records: the first ``n_train`` / ``n_valid`` of VOC 2007's
    train / val when present, else the offline collage set (200 images, ``seed``) in the cache."""
    from ..data.voc import find_voc, load_voc

    voc = find_voc()
    if voc is not None:
        train, valid = load_voc(voc, "train")[:n_train], load_voc(voc, "val")[:n_valid]
        line = f"Using Pascal VOC 2007 ({voc}): a short run on {len(train)} train / {len(valid)} valid images"
    else:
        train, valid = collage_split(seed)
        line = (f"VOC not found: using the offline collage set ({COLLAGE_IMAGES} images, seed {seed}): "
                f"{len(train)} train / {len(valid)} valid images")
    if verbose:
        print(line)
    return train, valid


def collage_split(seed: int) -> tuple[list, list]:
    """The offline collage set's train and valid records (``COLLAGE_IMAGES`` images made from ``seed``, in the cache)."""
    from ..data.collage import collage_records

    train, valid, _ = collage_records(COLLAGE_IMAGES, seed=seed, root=cache_dir(), verbose=False)
    return train, valid


def short_model_path() -> Path:
    """Where :func:`save_short_model` keeps notebook 09's short-trained model (in the cache folder)."""
    return cache_dir() / "ssd_short.pth"


def save_short_model(model: Any, options: Optional[LossOptions] = None) -> Path:
    """Save notebook 09's short-trained model where :func:`lesson_model` finds it, with the loss
    ``options`` it was trained with (``learn.loss_func.options``) in its record."""
    from ..model.checkpoint import CheckpointRecord, save_checkpoint

    return save_checkpoint(model, short_model_path(), record=CheckpointRecord(
        command="notebook 09's short training", loss_options=options))
