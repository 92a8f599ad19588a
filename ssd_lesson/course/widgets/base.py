"""A matplotlib figure shown inside an ipywidget, at its own pixel size, with a static copy for offline pages.

The widgets (:mod:`ssd_lesson.course.widgets`: one module each) derive from :class:`FigureWidget`; each owns one
:class:`~matplotlib.figure.Figure`, draw it once and then, on every change, only what moves
(:class:`Frames`), and show it as image bytes in an ``ipywidgets.Image``: this works under
``%matplotlib inline`` (no ipympl) and in tests without a browser.

Every argument of a widget, to its constructor or to ``.set``, is checked when it is given, before anything
changes (:func:`number_arg`, :func:`tensor_arg`, ...): a wrong one is a ``TypeError`` (wrong type) or a
``ValueError`` (wrong shape, length, value, NaN) saying ``Widget: name must be <what is expected>; got <what was given>``.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import math
import numbers
from typing import Any, Iterator, NoReturn, Optional, Sequence

import ipywidgets as W
import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

__all__ = ["MARGIN_COLOR", "FigureWidget", "Frames", "Coalesce", "animate", "encode", "pixel_size", "show",
           "refuse", "number_arg", "tensor_arg", "sequence_arg", "choice_arg", "display_args", "scene_arg",
           "one_image_args"]

MARGIN_COLOR = "#5a5a5a"  # around the photo: white dashes and light boxes stay visible


def _png(fig: Figure, dpi: int, fmt: str = "png") -> bytes:
    """The figure as image bytes: PNG, or JPEG (quality 75: 5x smaller for figures full of photographs)."""
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=dpi, **({"pil_kwargs": {"quality": 75}} if fmt == "jpeg" else {}))
    return buf.getvalue()


def pixel_size(fig: Figure, dpi: int) -> tuple[int, int]:
    """``(width, height)`` in pixels of ``fig`` saved at ``dpi`` (its inches times ``dpi``)."""
    w, h = fig.get_size_inches()
    return int(round(w * dpi)), int(round(h * dpi))


def show(image: W.Image, fig: Figure, dpi: int) -> None:
    """Put ``fig`` into ``image`` (in the image's format) at its own pixel size: never stretched."""
    image.value = _png(fig, dpi, image.format)
    w, h = pixel_size(fig, dpi)
    image.layout.width, image.layout.height = f"{w}px", f"{h}px"


class FigureWidget:
    """The base of every widget of the course: one matplotlib figure shown in an ``ipywidgets.Image``.

    A subclass sets ``widget`` (the tree of controls and the image), ``figure``, ``image`` and ``dpi``;
    displaying the object displays ``widget``, with a static copy of the figure for pages that show
    no widgets (:meth:`_repr_mimebundle_`).
    """

    widget: W.Widget
    figure: Figure
    image: W.Image
    dpi: int

    @property
    def pixel_size(self) -> tuple[int, int]:
        """``(width, height)`` of the image shown, in pixels (the figure's inches times ``dpi``)."""
        return pixel_size(self.figure, self.dpi)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        """The widget view plus a static copy of its figure as it is now (``image/png`` or ``image/jpeg``).

        JupyterLab shows the live widget; a page without a widget renderer (an HTML
        export opened offline, GitHub's viewer) shows the widget's own figure instead.
        """
        bundle = self.widget._repr_mimebundle_(**kwargs)
        if isinstance(bundle, tuple):  # (data, metadata)
            data, metadata = bundle
        else:
            data, metadata = bundle, None
        if data is not None and self.image.value:
            data = dict(data)
            data[f"image/{self.image.format}"] = base64.b64encode(self.image.value).decode("ascii")
        return data if metadata is None else (data, metadata)


def encode(rgba: np.ndarray, fmt: str) -> bytes:
    """``(H, W, 4)`` uint8 pixels as image bytes: JPEG (quality 75) or PNG (fast compression: a widget frame)."""
    buf = io.BytesIO()
    im = Image.fromarray(np.ascontiguousarray(rgba[..., :3]))
    if fmt == "jpeg":
        im.save(buf, format="JPEG", quality=75)
    else:
        im.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


class Frames:
    """Blitting: the figure drawn once without its *animated* artists (the cached background); each
    frame restores that background and draws only the animated artists (what changes), by zorder.

    ``invalidate()`` after changing a static artist (a new view, a new image): the next frame redraws all.
    A full ``savefig`` still draws every artist, animated or not (the static copy, the legibility test).
    """

    def __init__(self, fig: Figure, dpi: int):
        fig.set_dpi(dpi)
        self.figure, self.canvas, self.background = fig, FigureCanvasAgg(fig), None

    def invalidate(self) -> None:
        self.background = None

    def frame(self) -> np.ndarray:
        """``(H, W, 4)`` uint8: the figure as it is now."""
        if self.background is None:
            self.canvas.draw()
            if self.figure.get_layout_engine() is not None:  # laid out once: the panels stay where they are
                self.figure.set_layout_engine("none")
            placers = [a for ax in self.figure.axes for a in ax.get_children() if a.get_animated() and hasattr(a, "place")]
            if placers:  # an animated label placer also places the static labels: the background shows them placed
                for p in placers:
                    p.place(self.canvas.get_renderer())
                self.canvas.draw()
            self.background = self.canvas.copy_from_bbox(self.figure.bbox)
        else:
            self.canvas.restore_region(self.background)
        for ax in self.figure.axes:
            moving = [a for a in ax.get_children() if a.get_animated() and a.get_visible()]
            for a in sorted(moving, key=lambda a: a.get_zorder()):
                self.figure.draw_artist(a)
        return np.asarray(self.canvas.buffer_rgba())

    def show(self, image: W.Image) -> None:
        """The current frame into ``image`` (in its format) at the figure's own pixel size."""
        rgba = self.frame()
        image.value = encode(rgba, image.format)
        image.layout.width, image.layout.height = f"{rgba.shape[1]}px", f"{rgba.shape[0]}px"


def animate(*artists: Any) -> None:
    """Mark artists as drawn on every frame (not part of the cached background)."""
    for a in artists:
        if a is not None:
            a.set_animated(True)


def _kernel_loop() -> Any:
    """The running event loop of the Jupyter kernel this runs in, else None. A loop that merely exists in
    the thread is not enough: Playwright's sync API keeps one there (a test session that drove the browser),
    and a redraw scheduled on it would never run."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    if shell is None or getattr(shell, "kernel", None) is None:
        return None
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class Coalesce:
    """Dragging never queues: a change from the browser only asks for a redraw; inside a running event
    loop (the kernel) the redraw is scheduled once and draws the state as it is then, so the values
    that arrived in between are dropped and the figure ends on the last one. Without a running loop
    (tests, scripts) the redraw happens at once; :meth:`now` redraws at once in any case (``.set``)."""

    def __init__(self, redraw: Any):
        self.redraw, self.pending, self.handle = redraw, False, None

    def set(self, control: Any, value: Any) -> None:
        """``control.value = value`` without a redraw of its own, then one redraw now (a widget's ``.set``)."""
        with self.hold():
            control.value = value

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Change several controls, then redraw once: inside the block their changes ask for nothing
        (as if a redraw were on its way); when it ends without an error, one redraw now."""
        self.pending = True
        try:
            yield
        finally:
            self.pending = False
        self.now()

    def now(self) -> None:
        """Redraw now, dropping a scheduled redraw (a widget's ``.set(...)``: done when it returns)."""
        if self.handle is not None:
            self.handle.cancel()
        self.pending, self.handle = False, None
        self.redraw()

    def __call__(self, *_: Any) -> None:
        if self.pending:
            return  # a redraw is on its way (or .set draws at once): it draws the state as it is then
        loop = _kernel_loop()
        if loop is None:
            self.redraw()
            return
        if not self.pending:
            self.pending = True
            self.handle = loop.call_soon(self._run)

    def _run(self) -> None:
        self.pending, self.handle = False, None
        self.redraw()


# ---------------------------------------------------------------- arguments, checked when they are given
IMAGE_FORMATS = ("png", "jpeg")
DPI_RANGE = (10, 600)  # below, the figure is a smudge; above, one frame is megabytes


def _shown(value: Any) -> str:
    """A refused value in a message: a tensor or an array by its shape, anything else by its repr (cut short)."""
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return f"a {'tensor' if isinstance(value, torch.Tensor) else 'numpy array'} of shape {tuple(value.shape)}"
    text = repr(value)
    return f"{text if len(text) <= 60 else text[:57] + '...'} ({type(value).__name__})"


def refuse(where: str, name: str, expected: str, value: Any, error: type = ValueError) -> NoReturn:
    """``error("where: name must be expected; got value")``."""
    raise error(f"{where}: {name} must be {expected}; got {_shown(value)}")


def number_arg(where: str, name: str, value: Any, lo: Optional[float] = None, hi: Optional[float] = None,
               whole: bool = False) -> Any:
    """``value`` as a float (an int with ``whole``) in ``[lo, hi]``; a one-element tensor counts as its number.
    A bool, text or anything else is a ``TypeError``; NaN, infinity or a value out of range a ``ValueError``."""
    span = (f" from {lo:g} to {hi:g}" if lo is not None and hi is not None else
            f" of at least {lo:g}" if lo is not None else f" of at most {hi:g}" if hi is not None else "")
    expected = f"{'a whole number' if whole else 'a number'}{span}"
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral if whole else numbers.Real):
        refuse(where, name, expected, value, TypeError)
    if not math.isfinite(value) or (lo is not None and value < lo) or (hi is not None and value > hi):
        refuse(where, name, expected, value)
    return int(value) if whole else float(value)


def tensor_arg(where: str, name: str, value: Any, shape: Sequence[Any]) -> torch.Tensor:
    """``value``, a tensor of ``shape`` (a size per dimension: a number, or a name such as ``"C+1"`` for any size)
    whose values are all finite; else a ``TypeError`` (not a tensor) or a ``ValueError`` naming what is wrong."""
    expected = f"a tensor of shape ({', '.join(map(str, shape))}{',' if len(shape) == 1 else ''})"
    if not isinstance(value, torch.Tensor):
        refuse(where, name, expected, value, TypeError)
    if value.dim() != len(shape) or any(isinstance(s, int) and s != v for s, v in zip(shape, value.shape)):
        refuse(where, name, expected, value)
    if value.is_floating_point() and not bool(torch.isfinite(value).all()):
        bad = int((~torch.isfinite(value)).sum())
        refuse(where, name, f"finite numbers ({bad} of its values are NaN or infinite)", value)
    return value


def sequence_arg(where: str, name: str, value: Any, length: Optional[int] = None, what: str = "items") -> list:
    """``value`` (a list, a tuple or a tensor's first dimension) as a list of ``length`` items."""
    expected = f"a list of {length if length is not None else 'some'} {what}"
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, torch.Tensor, np.ndarray)):
        refuse(where, name, expected, value, TypeError)
    if length is not None and len(value) != length:
        raise ValueError(f"{where}: {name} must be {expected}; got {len(value)}")
    return list(value)


def choice_arg(where: str, name: str, value: Any, choices: Sequence[Any]) -> Any:
    """``value``, one of ``choices``; else a ``ValueError`` listing them."""
    if not any(value == c and type(value) is type(c) for c in choices):
        refuse(where, name, f"one of {', '.join(map(repr, choices))}", value)
    return value


def display_args(where: str, dpi: Any, image_format: Any) -> int:
    """The arguments every widget takes: ``dpi`` (a whole number, 10 to 600) and ``image_format``; ``dpi`` as an int."""
    choice_arg(where, "image_format", image_format, IMAGE_FORMATS)
    return number_arg(where, "dpi", dpi, *DPI_RANGE, whole=True)


def scene_arg(where: str, example: Any) -> Any:
    """:func:`~ssd_lesson.drawing.plots.as_scene` of ``example``, or a ``TypeError`` saying what it takes."""
    from ...drawing import plots

    try:
        return plots.as_scene(example)
    except (AttributeError, TypeError, ValueError):
        refuse(where, "example", "a data.Example, a Scene or (image, boxes, labels)", example, TypeError)


def one_image_args(where: str, example: Any, anchors: Any, class_logits: Any, box_actns: Any) -> tuple[Any, Any, Any]:
    """The scene of ``example``, and the model's outputs for it, detached: ``(1, A, C+1)`` class logits and
    ``(1, A, 4)`` box activations for ``A = len(anchors)``, with a column for every class the example holds."""
    from ...core.anchors import Anchors

    scene = scene_arg(where, example)
    if not isinstance(anchors, Anchors):
        refuse(where, "anchors", "the Anchors of make_anchors()", anchors, TypeError)
    cl = tensor_arg(where, "class_logits", class_logits, (1, len(anchors), "C+1"))
    ba = tensor_arg(where, "box_actns", box_actns, (1, len(anchors), 4))
    labels = np.asarray(scene.labels)
    if cl.shape[-1] < 2 or (labels.size and int(labels.max()) >= cl.shape[-1] - 1):
        refuse(where, "class_logits", f"a tensor with a column per class and one for the background (the example "
               f"holds class {int(labels.max()) if labels.size else 0})", cl)
    return scene, cl.detach(), ba.detach()
