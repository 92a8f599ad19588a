"""The "your turn" cells as the learner finds them (``STUBS``) and filled in (``SOLUTIONS``), the instructors' key.

Each entry is the source of one function, ``my_...``; the notebook's cell is that source followed by
``check(name, my_...)`` (:func:`cell_source`). ``python -m ssd_lesson notebooks --solutions`` writes the series
with every stub replaced by its solution. The tests run every solution through the checker.
Boxes are ``(y0, x0, y1, x1)`` fractions of the image.
"""
from __future__ import annotations

import re
from typing import Any

__all__ = ["STUBS", "SOLUTIONS", "FUNCTION_NAMES", "cell_source", "fill_solutions"]

#: The learner's function of each code exercise.
FUNCTION_NAMES = {
    "02.anchor_boxes": "my_anchor_boxes", "03.decode_box": "my_decode", "04.iou_one_box": "my_iou",
    "05.match": "my_match", "06.bce": "my_bce", "07.l1": "my_l1", "08.grad": "my_grad",
    "11.anchor_targets": "my_anchor_targets", "12.mine": "my_hard_negatives",
}

STUBS = {
    "02.anchor_boxes": '''\
def my_anchor_boxes(grid, zooms, ratios):
    """grid: cells per side; zooms: floats; ratios: (rh, rw) pairs.
    Return (grid * grid * k, 4) corners (y0, x0, y1, x1), fractions; k = len(zooms) * len(ratios)."""
    ...  # your code here''',
    "03.decode_box": '''\
def my_decode(actn, anchor, cell):
    """actn: (4,) activations (dy, dx, dh, dw); anchor: (4,) (cy, cx, h, w); cell: its grid cell's side.
    Return the (4,) predicted box (y0, x0, y1, x1), fractions of the image."""
    ...  # your code here''',
    "04.iou_one_box": '''\
def my_iou(box, others):
    """box: (4,) corners; others: (N, 4) corners. Return (N,): the IoU of box with each row of others."""
    ...  # your code here''',
    "05.match": '''\
def my_match(ious):
    """ious: (A, G), the IoU of each of A boxes with each of G ground-truth boxes.
    Return gt_idx (A,) int64, gt_overlap (A,) float (1.99 where forced), positive (A,) bool."""
    ...  # your code here''',
    "06.bce": '''\
def my_bce(logits, target):
    """logits: (A, C+1), background last; target: (A,) int64 class ids, C = background.
    Return the lesson's BCE loss of this image: a number."""
    ...  # your code here''',
    "07.l1": '''\
def my_l1(pred, target, positive):
    """pred, target: (A, 4) corners; positive: (A,) bool.
    Return (mean, sum): the lesson's mean L1 over the positives' coordinates, and the article's sum of per-box MAEs."""
    ...  # your code here''',
    "08.grad": '''\
def my_grad(pred, target, positive):
    """pred, target: (A, 4) corners; positive: (A,) bool.
    Return (A, 4): the gradient of the mean L1 loss of 07 on pred, by hand (no autograd)."""
    ...  # your code here''',
    "11.anchor_targets": '''\
def my_anchor_targets(anchor_boxes, gt_boxes, gt_labels):
    """anchor_boxes: (A, 4); gt_boxes: (G, 4); gt_labels: (G,) int64.
    Return (A,) int64 target classes, matching on the anchor boxes; 20 = background."""
    ...  # your code here''',
    "12.mine": '''\
def my_hard_negatives(box_loss, positive, neg_pos_ratio):
    """box_loss: (B, A) each box's classification loss; positive: (B, A) bool; neg_pos_ratio: a number.
    Return (B, A) bool: in each image, its neg_pos_ratio * n_positives negatives of highest loss."""
    ...  # your code here''',
}

SOLUTIONS = {
    "02.anchor_boxes": '''\
def my_anchor_boxes(grid, zooms, ratios):
    """grid: cells per side; zooms: floats; ratios: (rh, rw) pairs.
    Return (grid * grid * k, 4) corners (y0, x0, y1, x1), fractions; k = len(zooms) * len(ratios)."""
    cell = 1 / grid
    boxes = []
    for row in range(grid):
        for col in range(grid):
            cy, cx = (row + 0.5) * cell, (col + 0.5) * cell
            for z in zooms:
                for rh, rw in ratios:
                    h, w = z * rh * cell, z * rw * cell
                    boxes.append([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2])
    return torch.tensor(boxes)''',
    "03.decode_box": '''\
def my_decode(actn, anchor, cell):
    """actn: (4,) activations (dy, dx, dh, dw); anchor: (4,) (cy, cx, h, w); cell: its grid cell's side.
    Return the (4,) predicted box (y0, x0, y1, x1), fractions of the image."""
    t = torch.tanh(actn)
    cy, cx = anchor[0] + t[0] / 2 * cell, anchor[1] + t[1] / 2 * cell
    h, w = anchor[2] * (1 + t[2] / 2), anchor[3] * (1 + t[3] / 2)
    return torch.stack([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2])''',
    "04.iou_one_box": '''\
def my_iou(box, others):
    """box: (4,) corners; others: (N, 4) corners. Return (N,): the IoU of box with each row of others."""
    h = (torch.minimum(box[2], others[:, 2]) - torch.maximum(box[0], others[:, 0])).clamp(min=0)
    w = (torch.minimum(box[3], others[:, 3]) - torch.maximum(box[1], others[:, 1])).clamp(min=0)
    inter = h * w
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / (area(box) + area(others) - inter)''',
    "05.match": '''\
def my_match(ious):
    """ious: (A, G), the IoU of each of A boxes with each of G ground-truth boxes.
    Return gt_idx (A,) int64, gt_overlap (A,) float (1.99 where forced), positive (A,) bool."""
    A, G = ious.shape
    if G == 0:  # no objects: everything is background
        return torch.zeros(A, dtype=torch.int64), torch.zeros(A), torch.zeros(A, dtype=torch.bool)
    gt_overlap, gt_idx = ious.max(dim=1)      # each box: the object it overlaps most
    for j in range(G):                        # each object claims its best box
        box = ious[:, j].argmax()
        gt_idx[box], gt_overlap[box] = j, 1.99
    return gt_idx, gt_overlap, gt_overlap > 0.4''',
    "06.bce": '''\
def my_bce(logits, target):
    """logits: (A, C+1), background last; target: (A,) int64 class ids, C = background.
    Return the lesson's BCE loss of this image: a number."""
    C = logits.shape[1] - 1
    one_hot = torch.nn.functional.one_hot(target, C + 1)[:, :C].float()
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits[:, :C].float(), one_hot, reduction="sum")
    return bce / C''',
    "07.l1": '''\
def my_l1(pred, target, positive):
    """pred, target: (A, 4) corners; positive: (A,) bool.
    Return (mean, sum): the lesson's mean L1 over the positives' coordinates, and the article's sum of per-box MAEs."""
    err = (pred[positive] - target[positive]).abs()   # (n, 4)
    n = max(err.shape[0], 1)
    return err.sum() / (4 * n), err.sum() / 4''',
    "08.grad": '''\
def my_grad(pred, target, positive):
    """pred, target: (A, 4) corners; positive: (A,) bool.
    Return (A, 4): the gradient of the mean L1 loss of 07 on pred, by hand (no autograd)."""
    n = max(int(positive.sum()), 1)
    return torch.sign(pred - target) / (4 * n) * positive[:, None]''',
    "11.anchor_targets": '''\
def my_anchor_targets(anchor_boxes, gt_boxes, gt_labels):
    """anchor_boxes: (A, 4); gt_boxes: (G, 4); gt_labels: (G,) int64.
    Return (A,) int64 target classes, matching on the anchor boxes; 20 = background."""
    from ssd_lesson import box_iou, match_boxes
    ious = box_iou(anchor_boxes, gt_boxes)                        # (A, G): anchors, not predictions
    match = match_boxes(ious[None], torch.ones(1, len(gt_boxes), dtype=torch.bool))
    labels = gt_labels[match.gt_idx[0]] if len(gt_boxes) else torch.zeros(len(anchor_boxes), dtype=torch.int64)
    return torch.where(match.positive[0], labels, 20)''',
    "12.mine": '''\
def my_hard_negatives(box_loss, positive, neg_pos_ratio):
    """box_loss: (B, A) each box's classification loss; positive: (B, A) bool; neg_pos_ratio: a number.
    Return (B, A) bool: in each image, its neg_pos_ratio * n_positives negatives of highest loss."""
    kept = torch.zeros_like(positive)
    for b in range(box_loss.shape[0]):  # one image at a time
        n_keep = int(neg_pos_ratio * positive[b].sum())
        loss = box_loss[b].masked_fill(positive[b], float("-inf"))  # positives rank last
        kept[b, loss.argsort(descending=True)[:n_keep]] = True
    return kept & ~positive  # fewer negatives than n_keep: the positives were reached, drop them''',
}


def cell_source(name: str, solved: bool = False) -> str:
    """The code of exercise ``name``'s "your turn" cell: the stub (or the solution) and the check."""
    fn = (SOLUTIONS if solved else STUBS)[name]
    return f'import torch\nfrom ssd_lesson.course.exercises import check\n\n\n{fn}\n\n\ncheck("{name}", {FUNCTION_NAMES[name]})'


def fill_solutions(nb: Any) -> list[str]:
    """Replace, in the nbformat notebook ``nb``, every "your turn" cell's stub by its solution, and every value
    exercise's ``answer = None`` by the library's answer (:func:`~ssd_lesson.course.exercises.solve`); return the names.

    A "your turn" cell is a code cell whose source is :func:`cell_source` of an exercise (as committed); its
    outputs are cleared. A cell the learner already changed is left alone.
    """
    filled = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        asked = re.search(r'^answer = None  # your answer.*\ncheck\("([^"]+)", answer(.*)\)$', cell.source, flags=re.M)
        if asked:  # a value exercise: the library's answer, from the same context the check receives
            name, context = asked.groups()
            cell.source = cell.source.replace(asked.group(0), f'from ssd_lesson.course.exercises import solve\n'
                                              f'answer = solve("{name}"{context})  # the key\ncheck("{name}", answer{context})')
            cell.outputs, cell.execution_count = [], None
            filled.append(name)
        for name in STUBS:
            if cell.source == cell_source(name):
                cell.source, cell.outputs, cell.execution_count = cell_source(name, solved=True), [], None
                filled.append(name)
    return filled
