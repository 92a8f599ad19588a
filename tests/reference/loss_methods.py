"""The four ways the loss benchmark computes the SSD loss of one batch, and the batch they share.

1. :func:`eager_loss`: ``ssd_lesson.ssd_loss`` batched over images, eager PyTorch;
2. :func:`compiled_loss`: the same function under ``torch.compile``;
3. :func:`lesson_loss`: the lesson's per-image loop (:mod:`tests.reference.lesson_loop`);
4. :func:`torchvision_loss`: torchvision's own SSD loss (a different formula: timed, not compared).

``benchmarks/bench_loss.py`` times them; ``tests/commands/test_bench.py`` proves (1) to (3) equal in
float64, loss and gradients, and (4) equal to torchvision's whole SSD run in training mode. They
live with the tests, which may not import the benchmarks, so that the code timed is the code proven.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Callable, Optional

import torch
from torch import Tensor

from ssd_lesson import AnchorSpec, Anchors, ssd_loss
from ssd_lesson.core.loss import SSDLossResult

from .lesson_loop import lesson_ssd_loss

METHODS = ("eager", "compiled", "lesson", "torchvision")
MATCH_MODES = ("predictions", "anchors")
N_CLASSES = 20
MAX_GT = 20  # ground-truth rows per image after padding; 1..MAX_GT of them are real


def anchor_spec(n_anchors: int) -> AnchorSpec:
    """The layout with ``n_anchors`` anchors: 189 (the lesson's 4x4/2x2/1x1) or 8732 (SSD300)."""
    for spec in (AnchorSpec(), AnchorSpec.ssd300()):
        if spec.n_anchors == n_anchors:
            return spec
    raise ValueError(f"no anchor layout with {n_anchors} anchors: choose 189 or 8732")


# ---------------------------------------------------------------- inputs

@dataclass
class Inputs:
    """One batch, in the library's layout and in torchvision's.

    class_logits: ``(B, A, C+1)`` background last; box_actns: ``(B, A, 4)`` (both leaves, requires_grad).
    gt_boxes: ``(B, G, 4)`` ``(y0, x0, y1, x1)`` fractions; gt_labels: ``(B, G)`` int64, -1 pads.
    tv_targets: per image ``{"boxes": (g, 4) (x0, y0, x1, y1), "labels": (g,) in 1..C}`` (0 is background).
    tv_anchors: per image the ``(A, 4)`` anchor boxes as ``(x0, y0, x1, y1)``.
    """

    class_logits: Tensor
    box_actns: Tensor
    gt_boxes: Tensor
    gt_labels: Tensor
    tv_targets: list[dict[str, Tensor]]
    tv_anchors: list[Tensor]

    @property
    def leaves(self) -> tuple[Tensor, Tensor]:
        return self.class_logits, self.box_actns


def make_inputs(batch: int, anchors: Anchors, *, seed: int = 0, device: str = "cpu",
                dtype: torch.dtype = torch.float32, max_gt: int = MAX_GT) -> Inputs:
    """Seeded random activations and realistic ground truth: 1 to ``max_gt`` boxes per image, padded.

    Boxes have sides of 5% to 80% of the image, like Pascal VOC's objects.
    """
    gen = torch.Generator().manual_seed(seed)
    A = len(anchors)
    gt_boxes = torch.zeros(batch, max_gt, 4, dtype=torch.float64)
    gt_labels = torch.full((batch, max_gt), -1, dtype=torch.long)
    for b in range(batch):
        g = int(torch.randint(1, max_gt + 1, (1,), generator=gen))
        hw = 0.05 + 0.75 * torch.rand(g, 2, generator=gen, dtype=torch.float64)
        tl = torch.rand(g, 2, generator=gen, dtype=torch.float64) * (1 - hw)
        gt_boxes[b, :g] = torch.cat([tl, tl + hw], dim=1)
        gt_labels[b, :g] = torch.randint(0, N_CLASSES, (g,), generator=gen)
    class_logits = torch.randn(batch, A, N_CLASSES + 1, generator=gen, dtype=torch.float64) * 2
    box_actns = torch.randn(batch, A, 4, generator=gen, dtype=torch.float64)

    def leaf(t: Tensor) -> Tensor:
        return t.to(device=device, dtype=dtype).requires_grad_()

    gt_boxes_d = gt_boxes.to(device=device, dtype=dtype)
    gt_labels_d = gt_labels.to(device)
    yx_to_xy = [1, 0, 3, 2]
    keep = [gt_labels[b] >= 0 for b in range(batch)]
    tv_targets = [{"boxes": gt_boxes_d[b, keep[b].to(device)][:, yx_to_xy].contiguous(),
                   "labels": gt_labels_d[b, keep[b].to(device)] + 1} for b in range(batch)]
    tv_anchor = anchors.corners.to(device=device, dtype=dtype)[:, yx_to_xy].contiguous()
    return Inputs(leaf(class_logits), leaf(box_actns), gt_boxes_d, gt_labels_d, tv_targets, [tv_anchor] * batch)


# ---------------------------------------------------------------- the four methods

LossFn = Callable[[Inputs], Tensor]


def eager_loss(anchors: Anchors, match_on: str) -> LossFn:
    """Method (1): the library, without input validation (it costs a host sync)."""
    def fn(x: Inputs) -> Tensor:
        return ssd_loss(x.class_logits, x.box_actns, x.gt_boxes, x.gt_labels, anchors, match_on=match_on,
                        validate=False).total
    return fn


def compiled_loss(anchors: Anchors, match_on: str, backend: str = "inductor", mode: Optional[str] = None) -> LossFn:
    """Method (2): the library under ``torch.compile``, one static-shape graph (``fullgraph``: no silent breaks).

    The compiled function is ``ssd_loss`` itself, returning its whole result as eager does.
    Compiling only ``.total`` lets inductor drop the IoU matrix from the outputs, and it
    then re-derives the IoU inside each of the four matching reductions instead of storing
    it once: measured in one process, that took 13-37 % longer per call (batch 32 and 128,
    blocks and interleaved).
    """
    def loss(cl: Tensor, bb: Tensor, gb: Tensor, gl: Tensor) -> SSDLossResult:
        return ssd_loss(cl, bb, gb, gl, anchors, match_on=match_on, validate=False)

    compiled = torch.compile(loss, backend=backend, mode=mode, dynamic=False, fullgraph=True)
    return lambda x: compiled(x.class_logits, x.box_actns, x.gt_boxes, x.gt_labels).total


def lesson_loss(anchors: Anchors, match_on: str) -> LossFn:
    """Method (3): the lesson's per-image loop (``tests/reference/lesson_loop.py``)."""
    def fn(x: Inputs) -> Tensor:
        return lesson_ssd_loss(x.class_logits, x.box_actns, x.gt_boxes, x.gt_labels, anchors.centers_hw,
                               anchors.grid_sizes, match_on=match_on)
    return fn


def torchvision_loss() -> LossFn:
    """Method (4): what ``SSD.forward`` does in training, minus the network.

    The per-image matching loop is ``SSD.forward``'s own (``box_iou`` of targets with
    anchors, then ``SSDMatcher(0.5)``); the losses come from calling
    ``SSD.compute_loss`` unbound, on an object holding the attributes it reads.
    """
    from torchvision.models.detection import _utils as det_utils
    from torchvision.models.detection.ssd import SSD
    from torchvision.ops import box_iou as tv_box_iou

    # SSD.__init__'s defaults: BoxCoder(10, 10, 5, 5), iou_thresh 0.5, positive_fraction 0.25.
    ssd = SimpleNamespace(box_coder=det_utils.BoxCoder(weights=(10.0, 10.0, 5.0, 5.0)),
                          proposal_matcher=det_utils.SSDMatcher(0.5), neg_to_pos_ratio=(1.0 - 0.25) / 0.25)

    def fn(x: Inputs) -> Tensor:
        matched_idxs = []
        for anchors_per_image, targets_per_image in zip(x.tv_anchors, x.tv_targets):
            if targets_per_image["boxes"].numel() == 0:
                matched_idxs.append(torch.full((anchors_per_image.size(0),), -1, dtype=torch.int64,
                                               device=anchors_per_image.device))
                continue
            match_quality_matrix = tv_box_iou(targets_per_image["boxes"], anchors_per_image)
            matched_idxs.append(ssd.proposal_matcher(match_quality_matrix))
        head_outputs = {"cls_logits": x.class_logits, "bbox_regression": x.box_actns}
        losses = SSD.compute_loss(ssd, x.tv_targets, head_outputs, x.tv_anchors, matched_idxs)
        return losses["bbox_regression"] + losses["classification"]
    return fn
