"""A matplotlib figure shown inside an ipywidget, at its own pixel size, with a static copy for offline pages.

The widgets (:mod:`ssd_lesson.course.widgets`: one module each) derive from :class:`FigureWidget`; each owns one
:class:`~matplotlib.figure.Figure`, draw it once and then, on every change, only what moves
(:class:`Frames`), and show it as image bytes in an ``ipywidgets.Image``: this works under
``%matplotlib inline`` (no ipympl) and in tests without a browser.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import io
from typing import Any, Iterator

import ipywidgets as W
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

__all__ = ["MARGIN_COLOR", "FigureWidget", "Frames", "Coalesce", "animate", "encode", "pixel_size", "show"]

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
