"""Grid cells, anchors and anchor boxes, and the activations that move them.

The model's last three layers are 4x4, 2x2 and 1x1. Each output cell is a grid
cell over the image; its centre is the *anchor*; about it sit ``k`` anchor boxes,
one per (zoom, ratio). A ratio ``(rh, rw)`` scales the height by ``rh`` and the
width by ``rw``, so ``(1, .5)`` is tall and narrow.

Anchor order (the order of the model's 189 outputs): grid by grid in spec
order, cells row-major within a grid, then the ``k`` scales with zoom outer.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import NamedTuple, Optional

import torch
from torch import Tensor

from .boxes import centers_to_corners
from .coding import decode_log_offsets
from .options import BOX_CODINGS, BoxCoding, DecodeOptions

__all__ = ["AnchorSpec", "Anchors", "AnchorInfo", "make_anchors", "activations_to_boxes", "activations_to_box_planes",
           "SATURATION_LIMIT", "saturated"]

#: |tanh(activation)| above this counts as saturated: the activation is beyond atanh(0.98) = 2.30, where
#: tanh's slope 1 - tanh**2 is below 0.04, so a box there barely moves under a gradient.
SATURATION_LIMIT = 0.98

Scale = tuple[float, float]


def _positive(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) and v > 0


@dataclass(frozen=True)
class AnchorSpec:
    """Which anchor boxes sit on which grid.

    By default every grid gets the ``zooms x ratios`` scales (zoom outer). For
    layouts that vary per grid (SSD300), ``grid_scales`` gives for each grid the
    explicit ``(h, w)`` sizes as multiples of that grid's cell size.
    """

    grids: tuple[int, ...] = (4, 2, 1)
    zooms: tuple[float, ...] = (0.7, 1.0, 1.3)
    ratios: tuple[Scale, ...] = ((1.0, 1.0), (1.0, 0.5), (0.5, 1.0))
    grid_scales: Optional[tuple[tuple[Scale, ...], ...]] = None

    def __post_init__(self) -> None:
        # Tuples throughout, whatever was given (lists from a saved checkpoint): equal specs compare equal.
        try:
            grids, zooms = tuple(self.grids), tuple(self.zooms)
            ratios = tuple(tuple(r) for r in self.ratios)
            grid_scales = None if self.grid_scales is None else tuple(tuple(tuple(s) for s in g) for g in self.grid_scales)
        except TypeError as e:
            raise ValueError(f"AnchorSpec: grids, zooms, ratios and grid_scales must be sequences ({e})") from None
        for name, value in (("grids", grids), ("zooms", zooms), ("ratios", ratios), ("grid_scales", grid_scales)):
            object.__setattr__(self, name, value)
        if not grids or any(not isinstance(g, numbers.Real) or int(g) != g or g < 1 for g in grids):
            raise ValueError(f"AnchorSpec.grids must be positive integers, got {grids}")
        if grid_scales is not None and len(grid_scales) != len(grids):
            raise ValueError(f"AnchorSpec.grid_scales needs one entry per grid: {len(grid_scales)} for {len(grids)} grids")
        if grid_scales is None and (not zooms or not ratios):
            raise ValueError("AnchorSpec needs at least one zoom and one ratio")
        if grid_scales is None and not all(_positive(z) for z in zooms):
            raise ValueError(f"AnchorSpec.zooms must be finite numbers above 0, got {zooms}")
        for name, pairs in [("ratios", ratios)] if grid_scales is None else [(f"grid_scales[{i}]", g) for i, g in enumerate(grid_scales)]:
            if not pairs or not all(len(r) == 2 and _positive(r[0]) and _positive(r[1]) for r in pairs):
                raise ValueError(f"AnchorSpec.{name} must be (height, width) pairs of finite numbers above 0, got {pairs}")

    def scales(self, grid_i: int) -> tuple[Scale, ...]:
        """The ``(h, w)`` multiples of the cell size for grid number ``grid_i``."""
        if self.grid_scales is not None:
            return tuple(self.grid_scales[grid_i])
        return tuple((z * rh, z * rw) for z in self.zooms for rh, rw in self.ratios)

    def k(self, grid_i: int = 0) -> int:
        """Anchor boxes per cell of grid ``grid_i``."""
        return len(self.scales(grid_i))

    @property
    def n_anchors(self) -> int:
        return sum(g * g * self.k(i) for i, g in enumerate(self.grids))

    def scale_label(self, grid_i: int, scale_i: int) -> str:
        """Human label of one scale, e.g. ``'zoom 0.7, ratio (1.0, 0.5)'``."""
        if self.grid_scales is None:
            z, r = divmod(scale_i, len(self.ratios))
            return f"zoom {self.zooms[z]}, ratio {tuple(self.ratios[r])}"
        h, w = self.grid_scales[grid_i][scale_i]
        return f"size ({h:.2f}, {w:.2f}) cells"

    @classmethod
    def ssd300(cls) -> "AnchorSpec":
        """The SSD300 layout: grids 38, 19, 10, 5, 3, 1 with 4 or 6 boxes per cell, 8732 in all."""
        grids, ks = (38, 19, 10, 5, 3, 1), (4, 6, 6, 6, 4, 4)
        s = [0.1] + [0.2 + 0.7 * i / 4 for i in range(5)] + [1.05]  # paper's sizes, with the conv4_3 tweak
        grid_scales = []
        for i, (g, k) in enumerate(zip(grids, ks)):
            extra = math.sqrt(s[i] * s[i + 1])
            aspect = [2.0] if k == 4 else [2.0, 3.0]
            sizes = [(s[i], s[i]), (extra, extra)]
            for a in aspect:
                sizes += [(s[i] / math.sqrt(a), s[i] * math.sqrt(a)), (s[i] * math.sqrt(a), s[i] / math.sqrt(a))]
            grid_scales.append(tuple((h * g, w * g) for h, w in sizes))
        return cls(grids=grids, grid_scales=tuple(grid_scales))


class AnchorInfo(NamedTuple):
    """Where anchor ``index`` comes from."""

    index: int
    grid: int  # grid size, e.g. 4
    row: int
    col: int
    scale: int  # index into ``spec.scales(grid_i)``
    zoom: Optional[float]
    ratio: Optional[Scale]


@dataclass
class Anchors:
    """All anchor boxes of a spec, in model-output order.

    Attributes:
        spec: the :class:`AnchorSpec` they were made from.
        centers_hw: ``(A, 4)`` ``(cy, cx, h, w)`` as fractions of the image.
        corners: ``(A, 4)`` ``(y0, x0, y1, x1)`` as fractions of the image.
        grid_sizes: ``(A, 1)`` side of the anchor's grid cell (``1/4`` on the 4x4 grid).
        grid_index, row, col, scale_index: ``(A,)`` int64, where each anchor comes from.
        center_planes, corner_planes: ``(4, A)`` contiguous copies of ``centers_hw`` and
            ``corners``, coordinate-major, for the loss (see :func:`activations_to_box_planes`).
    """

    spec: AnchorSpec
    centers_hw: Tensor
    corners: Tensor
    grid_sizes: Tensor
    grid_index: Tensor
    row: Tensor
    col: Tensor
    scale_index: Tensor
    offsets: list[int] = field(default_factory=list)  # first anchor of each grid
    center_planes: Tensor = field(init=False, repr=False)
    corner_planes: Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # Stored, not a transposed view: torch.compile then reads each coordinate as one
        # contiguous row, and vectorises the IoU along the anchors instead of gathering.
        self.center_planes = self.centers_hw.T.contiguous()
        self.corner_planes = self.corners.T.contiguous()

    def __len__(self) -> int:
        return self.centers_hw.shape[0]

    @property
    def device(self) -> torch.device:
        return self.centers_hw.device

    @property
    def dtype(self) -> torch.dtype:
        return self.centers_hw.dtype

    def to(self, device=None, dtype: Optional[torch.dtype] = None) -> "Anchors":
        """A copy on ``device`` with float tensors in ``dtype``."""
        f = lambda t: t.to(device=device, dtype=dtype)  # noqa: E731
        i = lambda t: t.to(device=device)  # noqa: E731
        return Anchors(self.spec, f(self.centers_hw), f(self.corners), f(self.grid_sizes),
                       i(self.grid_index), i(self.row), i(self.col), i(self.scale_index), list(self.offsets))

    def info(self, index: int) -> AnchorInfo:
        """Map anchor ``index`` to its grid, cell row and column, and (zoom, ratio)."""
        if not 0 <= index < len(self):
            raise IndexError(f"anchor index {index} out of range for {len(self)} anchors")
        gi, s = int(self.grid_index[index]), int(self.scale_index[index])
        zoom = ratio = None
        if self.spec.grid_scales is None:
            z, r = divmod(s, len(self.spec.ratios))
            zoom, ratio = self.spec.zooms[z], tuple(self.spec.ratios[r])
        return AnchorInfo(index, self.spec.grids[gi], int(self.row[index]), int(self.col[index]), s, zoom, ratio)

    def select(self, grid: int, scale: int) -> Tensor:
        """``(g*g,)`` indices of the anchors of one grid (given by its size) and one scale, row-major."""
        gi = self.spec.grids.index(grid)
        return torch.nonzero((self.grid_index == gi) & (self.scale_index == scale)).flatten()


def make_anchors(spec: AnchorSpec = AnchorSpec(), device=None, dtype: torch.dtype = torch.float32) -> Anchors:
    """Build the anchors of ``spec``: 189 for the lesson's default."""
    if not isinstance(spec, AnchorSpec):
        raise ValueError(f"spec: expected an AnchorSpec, got {type(spec).__name__}")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype: anchors are fractions of the image and need a floating-point dtype, got {dtype}")
    parts: dict[str, list[Tensor]] = {k: [] for k in ("chw", "gs", "gi", "row", "col", "si")}
    offsets, start = [], 0
    for gi, g in enumerate(spec.grids):
        scales = torch.tensor(spec.scales(gi), dtype=torch.float64)  # (k, 2)
        k = scales.shape[0]
        rows, cols = torch.meshgrid(torch.arange(g), torch.arange(g), indexing="ij")
        rows, cols = rows.reshape(-1).repeat_interleave(k), cols.reshape(-1).repeat_interleave(k)
        si = torch.arange(k).repeat(g * g)
        cell = 1.0 / g
        ctr = torch.stack([(rows + 0.5) * cell, (cols + 0.5) * cell], dim=1)
        parts["chw"].append(torch.cat([ctr, scales[si] * cell], dim=1))
        parts["gs"].append(torch.full((g * g * k, 1), cell, dtype=torch.float64))
        parts["gi"].append(torch.full((g * g * k,), gi))
        parts["row"].append(rows)
        parts["col"].append(cols)
        parts["si"].append(si)
        offsets.append(start)
        start += g * g * k
    centers_hw = torch.cat(parts["chw"])
    f = lambda t: t.to(device=device, dtype=dtype)  # noqa: E731
    i = lambda t: t.to(device=device, dtype=torch.int64)  # noqa: E731
    return Anchors(spec, f(centers_hw), f(centers_to_corners(centers_hw)), f(torch.cat(parts["gs"])),
                   i(torch.cat(parts["gi"])), i(torch.cat(parts["row"])), i(torch.cat(parts["col"])),
                   i(torch.cat(parts["si"])), offsets)


def activations_to_boxes(box_actns: Tensor, anchors: Anchors, *, validate: bool = True,
                         coding: BoxCoding = DecodeOptions.coding) -> Tensor:
    """Decode box activations into predicted boxes, as the lesson does (or as the SSD paper does).

    The lesson's coding, ``"tanh_corners"``: ``tanh`` squashes each activation into (-1, 1); the
    centre then moves by up to half a grid cell from the anchor, and the height and width become
    0.5 to 1.5 times the anchor box's. The paper's, ``"log_offsets"``: see
    :func:`~ssd_lesson.core.coding.decode_log_offsets`.

    Args:
        box_actns: ``(..., A, 4)`` raw activations ``(dy, dx, dh, dw)``.
        anchors: the :class:`Anchors` the model's outputs are laid out for.
        coding: the box coding the model was trained with (``LossOptions.box_coding``).
        validate: refuse NaN or infinite activations (``ValueError``), which would give NaN boxes
            without a word; the check costs a host sync, so ``False`` skips it (as ``ssd_loss``'s).
            The loss decodes through :func:`activations_to_box_planes`, which never checks
            (``ssd_loss`` validates its inputs itself).

    Returns:
        ``(..., A, 4)`` predicted boxes ``(y0, x0, y1, x1)`` as fractions of the image.
    """
    planes = activations_to_box_planes(box_actns, anchors, coding)  # checks the type and shape first
    if validate and not torch.isfinite(box_actns).all():
        raise ValueError("box_actns: contains NaN or inf; the boxes decoded from it would be NaN")
    return planes.transpose(-1, -2).contiguous()


def activations_to_box_planes(box_actns: Tensor, anchors: Anchors, coding: BoxCoding = DecodeOptions.coding) -> Tensor:
    """:func:`activations_to_boxes`, laid out coordinate-major: ``(..., 4, A)``, rows y0, x0, y1, x1.

    The same numbers; the loss uses this layout because each coordinate is then one
    contiguous row along the anchors, which the IoU and matching vectorise over.
    """
    if not isinstance(anchors, Anchors):
        raise ValueError(f"anchors: expected an Anchors (from make_anchors), got {type(anchors).__name__}")
    if not isinstance(box_actns, Tensor) or not box_actns.is_floating_point():
        raise ValueError(f"box_actns: expected a floating-point tensor, got {getattr(box_actns, 'dtype', type(box_actns).__name__)}")
    if box_actns.shape[-2:] != (len(anchors), 4):
        raise ValueError(f"box_actns: expected shape (..., {len(anchors)}, 4) for these anchors, got {tuple(box_actns.shape)}")
    if coding == "log_offsets":
        return decode_log_offsets(box_actns, anchors.center_planes)
    if coding != "tanh_corners":
        raise ValueError(f"coding must be one of {', '.join(map(repr, BOX_CODINGS))}, got {coding!r}")
    ty, tx, th, tw = torch.tanh(box_actns).unbind(-1)  # (..., A) each
    cy, cx, h, w = anchors.center_planes.to(box_actns.dtype)  # (A,) each
    cell = anchors.grid_sizes.to(box_actns.dtype).squeeze(-1)  # (A,)
    cy, cx = cy + ty / 2 * cell, cx + tx / 2 * cell
    half_h, half_w = (th / 2 + 1) * h / 2, (tw / 2 + 1) * w / 2
    # One plane per coordinate: a cat of 2-row blocks makes torch.compile loop 2 wide.
    return torch.stack([cy - half_h, cx - half_w, cy + half_h, cx + half_w], dim=-2)


def saturated(box_actns: Tensor, limit: float = SATURATION_LIMIT) -> Tensor:
    """``|tanh(box_actns)| > limit``, elementwise: ``(..., 4)`` bool, True where an activation sits at the
    flat end of tanh (the predicted box's centre half a cell off, or its side 0.5x / 1.5x the anchor box's).

    ``saturated(box_actns).float().mean()`` is the share of saturated activations;
    ``saturated(box_actns).any(-1)`` marks the boxes with at least one.
    """
    if not 0 < limit < 1:
        raise ValueError(f"saturated: limit must be between 0 and 1 (a value of |tanh|), got {limit}")
    if box_actns.shape[-1:] != (4,):
        raise ValueError(f"saturated: box_actns must end in 4 activations (dy, dx, dh, dw), got shape {tuple(box_actns.shape)}")
    return torch.tanh(box_actns).abs() > limit
