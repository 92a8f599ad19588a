"""Pascal VOC average precision (ssd_lesson.model.metrics.voc_ap) against a plain reference that reads
like the devkit's voc_eval.py, hand-worked cases, input errors, the COCO-style numbers of
torchmetrics where the two protocols must agree, ``difficult`` passed on as ``iscrowd``, the
per-class table and the ``mAP_voc07`` training metric."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ssd_lesson.model.infer import Detections
from ssd_lesson.model.metrics import (VOC07_RECALLS, average_precision, coco_ap_per_class, detection_hits, map_metrics,
                                      per_class_table, voc_ap)
from ssd_lesson.model.metrics import _tm_inputs
from tests.reference import ref_iou
from tests.reference.voc_devkit import devkit_voc_eval


def random_case(seed, n_images=30, num_classes=6, ties=False):
    """GT in classes 0..3 only (class 4: difficult boxes only; class 5: none at all), about a fifth
    difficult, some images without objects; detections: jittered copies of GT boxes (several per box:
    duplicates), the same with a wrong class, and boxes anywhere, in every class."""
    g = np.random.default_rng(seed)
    preds, targets = [], []
    for i in range(n_images):
        m = 0 if i % 7 == 3 else int(g.integers(1, 6))
        y0, x0 = g.uniform(0, 300, (2, m))
        h, w = g.uniform(10, 150, (2, m))
        gt = np.stack([y0, x0, y0 + h, x0 + w], 1).round()  # integer pixels, as in VOC's XML
        labels = g.integers(0, 4, m)
        difficult = g.random(m) < 0.2
        if m and i % 5 == 0:
            labels[0], difficult[0] = 4, True
        boxes, det_labels = [], []
        for b, lab in zip(gt, labels):
            for _ in range(int(g.integers(0, 4))):  # 0 to 3 detections of this object
                size = np.array([b[2] - b[0], b[3] - b[1]] * 2)
                boxes.append(b + g.normal(0, 0.08, 4) * size)  # IoU mostly 0.6-0.9, sometimes below 0.5
                det_labels.append(lab if g.random() < 0.8 else int(g.integers(0, num_classes)))
        for _ in range(int(g.integers(0, 5))):  # boxes anywhere
            yy, xx, hh, ww = g.uniform(0, 300), g.uniform(0, 300), g.uniform(5, 150), g.uniform(5, 150)
            boxes.append(np.array([yy, xx, yy + hh, xx + ww])), det_labels.append(int(g.integers(0, num_classes)))
        boxes = np.array(boxes).reshape(-1, 4)
        boxes = np.concatenate([np.minimum(boxes[:, :2], boxes[:, 2:]), np.maximum(boxes[:, :2], boxes[:, 2:])], 1)
        scores = g.random(len(boxes))
        if ties:
            scores = scores.round(1)  # many equal scores, within and across images
        preds.append(dict(boxes=torch.tensor(boxes), scores=torch.tensor(scores), labels=torch.tensor(det_labels, dtype=torch.int64)))
        targets.append(dict(boxes=torch.tensor(gt), labels=torch.tensor(labels, dtype=torch.int64),
                            difficult=torch.tensor(difficult)))
    return preds, targets


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("use_07", [True, False])
def test_equals_the_devkit_reference_on_random_cases(seed, use_07):
    preds, targets = random_case(seed, ties=seed % 2 == 1)
    thr, inclusive = (0.5, 0.7)[seed % 3 == 2], seed % 4 != 3
    r = voc_ap(preds, targets, hit_iou=thr, use_07_metric=use_07, num_classes=6, inclusive=inclusive)
    want = []
    for c in range(6):
        ap, rec, prec = devkit_voc_eval(preds, targets, c, thr, use_07, plus_one=float(inclusive))
        want.append(ap)
        if rec is None:
            assert math.isnan(r.ap[c]) and torch.isnan(r.recall[c]).all()
        else:
            np.testing.assert_allclose(r.recall[c].numpy(), rec, rtol=0, atol=1e-12)
            np.testing.assert_allclose(r.precision[c].numpy(), prec, rtol=0, atol=1e-12)
    np.testing.assert_allclose(r.ap.numpy(), np.array(want), rtol=0, atol=1e-12)  # NaN where NaN
    assert math.isnan(want[5]) and math.isnan(want[4]) and not any(math.isnan(a) for a in want[:4])
    assert r.map == pytest.approx(np.mean(want[:4]), abs=1e-12)
    assert 0.05 < r.map < 0.95  # a real mix of hits, misses and false alarms
    assert int(r.n_difficult[4]) > 0 and int(r.n_positives[4]) == 0 and int(r.n_positives[5] + r.n_difficult[5]) == 0


@pytest.mark.parametrize("seed", range(4))
def test_detection_hits_are_the_devkits_true_positives(seed):
    """Image by image, class by class: the hits are the detections the devkit's reference counts as true positives
    (its recall steps up at them), in the same score order; no difficult boxes (detection_hits knows none)."""
    preds, targets = random_case(seed, n_images=8)
    met = np.zeros(2, int)  # false alarms, hits
    for p, t in zip(preds, targets):
        t = dict(t, difficult=torch.zeros_like(t["difficult"]))
        hit = detection_hits(Detections(p["boxes"], p["labels"], p["scores"]), t["boxes"], t["labels"]).numpy()
        for cls in range(6):
            mine = np.flatnonzero(p["labels"].numpy() == cls)
            order = mine[np.argsort(-p["scores"].numpy()[mine], kind="stable")]
            npos = int((t["labels"] == cls).sum())
            if npos == 0:
                assert not hit[mine].any()
                continue
            _, rec, _ = devkit_voc_eval([p], [t], cls, plus_one=0.0)  # half-open boxes: no devkit +1
            true_positive = np.diff(np.concatenate([[0.0], np.asarray(rec) * npos])).round().astype(bool)
            assert hit[order].tolist() == true_positive.tolist()
            met += np.bincount(true_positive.astype(int), minlength=2)
    assert (met > 3).all()  # hits and false alarms were both met


def test_detection_hits_by_hand():
    """Two people, one found twice: the better-scored box is the hit, the second box on it a false alarm (though
    its IoU is above 0.5), a box of the wrong class a false alarm, the other person missed; padding rows ignored."""
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0], [0.0, 0.0, 0.0, 0.0]])
    labels = torch.tensor([14, 14, -1])
    boxes = torch.tensor([[0.0, 0.0, 10.0, 9.0], [0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0], [40.0, 40.0, 50.0, 50.0]])
    dets = Detections(boxes, torch.tensor([14, 14, 7, 14]), torch.tensor([0.6, 0.9, 0.8, 0.3]))
    assert detection_hits(dets, gt, labels).tolist() == [False, True, False, False]
    assert detection_hits(dets, gt[:0], labels[:0]).tolist() == [False] * 4  # no objects: every detection false


def test_inclusive_boxes_give_the_same_ious_as_the_projects_half_open_ones():
    """The project's boxes are VOC's XML boxes with ymin - 1 and xmin - 1 (parse_voc_xml): with
    inclusive=False they score as the devkit scores the XML's coordinates."""
    preds, targets = random_case(11)
    shift = lambda items: [{**d, "boxes": d["boxes"] + torch.tensor([1.0, 1.0, 0.0, 0.0])} for d in items]  # noqa: E731
    for use_07 in (True, False):
        a = voc_ap(shift(preds), shift(targets), num_classes=6, use_07_metric=use_07, inclusive=True)
        b = voc_ap(preds, targets, num_classes=6, use_07_metric=use_07, inclusive=False)
        np.testing.assert_allclose(a.ap.numpy(), b.ap.numpy(), rtol=0, atol=1e-12)


# ---------------------------------------------------------------- small cases worked on paper
def one_class(dets, gts):
    """dets: [(image, box, score)], gts: [(image, box, difficult)]; class 0, 2 images unless more are named."""
    n = 1 + max([i for i, *_ in dets] + [i for i, *_ in gts] + [1])
    preds = [dict(boxes=torch.tensor([b for j, b, _ in dets if j == i], dtype=torch.float64).reshape(-1, 4),
                  scores=torch.tensor([s for j, _, s in dets if j == i], dtype=torch.float64),
                  labels=torch.zeros(sum(j == i for j, *_ in dets), dtype=torch.int64)) for i in range(n)]
    targets = [dict(boxes=torch.tensor([b for j, b, _ in gts if j == i], dtype=torch.float64).reshape(-1, 4),
                    labels=torch.zeros(sum(j == i for j, *_ in gts), dtype=torch.int64),
                    difficult=torch.tensor([d for j, _, d in gts if j == i], dtype=torch.bool)) for i in range(n)]
    return preds, targets


G1, G2, G3, G4 = (0, 0, 99, 99), (200, 200, 299, 299), (0, 0, 49, 49), (100, 100, 149, 149)
NOWHERE = (400, 400, 420, 420)


def test_hand_worked_difficult_duplicate_and_miss():
    """Image 0: G1 and G2 (difficult); image 1: G3 and G4. Non-difficult boxes: 3.
    Sorted detections: .9 on G1 -> TP; .8 on G2 -> difficult: neither; .7 on G1 again -> claimed: FP;
    .6 on G3 -> TP; .5 nowhere -> FP. G4 is never found.
    Points (precision, recall): (1, 1/3), (1/2, 1/3), (2/3, 2/3), (1/2, 2/3).
    VOC07: thresholds 0, .1, .2, .3 reach recall 1/3 with best precision 1 (4 x 1); .4, .5, .6 reach
    only 2/3 with best precision 2/3 (3 x 2/3); .7 .. 1 are never reached (4 x 0): (4 + 2) / 11 = 6/11.
    All points: recall 0 -> 1/3 at precision 1, 1/3 -> 2/3 at 2/3: 1/3 + 2/9 = 5/9."""
    preds, targets = one_class([(0, G1, .9), (0, G2, .8), (0, G1, .7), (1, G3, .6), (1, NOWHERE, .5)],
                               [(0, G1, False), (0, G2, True), (1, G3, False), (1, G4, False)])
    r07 = voc_ap(preds, targets, num_classes=1)
    assert r07.ap[0] == pytest.approx(6 / 11, abs=1e-15) and r07.map == pytest.approx(6 / 11, abs=1e-15)
    assert voc_ap(preds, targets, num_classes=1, use_07_metric=False).map == pytest.approx(5 / 9, abs=1e-15)
    np.testing.assert_allclose(r07.precision[0].numpy(), [1, 1 / 2, 2 / 3, 1 / 2])
    np.testing.assert_allclose(r07.recall[0].numpy(), [1 / 3, 1 / 3, 2 / 3, 2 / 3])
    np.testing.assert_allclose(r07.scores[0].numpy(), [.9, .7, .6, .5])  # .8 (on the difficult box) makes no point
    assert r07.n_positives.tolist() == [3] and r07.n_difficult.tolist() == [1]


def test_the_eleven_thresholds_are_voc_evals_floats():
    """10 boxes, 3 found first (precision 1), then 2 false alarms. Recall reaches exactly 3/10 = 0.3,
    but voc_eval.py's 4th threshold is np.arange(0, 1.1, .1)[3] = 3 * 0.1 = 0.30000000000000004 > 0.3:
    only thresholds 0, .1, .2 count: 3/11, not 4/11. The area is 0.3 x 1 = 0.3."""
    assert VOC07_RECALLS.tolist() == np.arange(0., 1.1, 0.1).tolist() and VOC07_RECALLS[3] > 0.3
    boxes = [(0, 100 * k, 0 + 50, 100 * k + 50) for k in range(10)]
    preds, targets = one_class([(0, boxes[k], 1 - k / 10) for k in range(3)] + [(0, NOWHERE, .1), (1, NOWHERE, .05)],
                               [(0, b, False) for b in boxes])
    assert voc_ap(preds, targets, num_classes=1).map == pytest.approx(3 / 11, abs=1e-15)
    assert voc_ap(preds, targets, num_classes=1, use_07_metric=False).map == pytest.approx(0.3, abs=1e-15)


def test_iou_must_be_strictly_above_the_threshold_in_inclusive_pixels():
    """G1 is 100 x 100 inclusive pixels (0..99). (0, 0, 99, 49) is 100 x 50: IoU 5000/10000 = 0.5 exactly,
    not above 0.5: a false positive (AP 0). (0, 0, 99, 50): 100 x 51, IoU 0.51: a hit (AP 1). Without the
    devkit's +1, (0, 0, 99, 50) is 99 x 50 against 99 x 99: 4950/9801 = 0.505, still a hit, and
    (0, 0, 99, 49.5), 99 x 49.5, is exactly 0.5 again."""
    for box, inclusive, want in [((0, 0, 99, 49), True, 0.0), ((0, 0, 99, 50), True, 1.0),
                                 ((0, 0, 99, 50), False, 1.0), ((0, 0, 99, 49.5), False, 0.0)]:
        preds, targets = one_class([(0, box, .9)], [(0, G1, False)])
        assert voc_ap(preds, targets, num_classes=1, inclusive=inclusive).map == pytest.approx(want, abs=1e-15), (box, inclusive)
        assert voc_ap(preds, targets, num_classes=1, inclusive=inclusive, hit_iou=0.4).map == pytest.approx(1.0)


def test_a_detection_exactly_at_the_hit_iou_scores_as_the_devkit_scores_it():
    """The devkit's rule is ``ovmax > ovthresh``: a detection whose IoU is exactly the hit IoU (0.5) is a false
    positive. Half-open (0, 0, 100, 50) on (0, 0, 100, 100), and the same pixels inclusive, (0, 0, 99, 49) on
    G1: 5000 / 10000, exactly 0.5 in floats. The devkit reference and voc_ap call it a miss (AP 0), one more
    row of pixels a hit (AP 1). COCO's rule (torchmetrics, pycocotools: IoU >= the threshold) counts it: AP 1."""
    half_open_gt, half_open_det = (0, 0, 100, 100), (0, 0, 100, 50)
    iou = ref_iou(torch.tensor([half_open_det], dtype=torch.float64), torch.tensor([half_open_gt], dtype=torch.float64))
    assert iou.item() == 0.5  # exactly the hit IoU (inclusive (0, 0, 99, 49) is these pixels: y0 = ymin - 1)
    cases = [(half_open_det, half_open_gt, False, 0.0), ((0, 0, 100, 51), half_open_gt, False, 1.0),
             ((0, 0, 99, 49), G1, True, 0.0), ((0, 0, 99, 50), G1, True, 1.0)]
    for det, gt, inclusive, want in cases:
        preds, targets = one_class([(0, det, .9)], [(0, gt, False)])
        devkit, _, _ = devkit_voc_eval(preds, targets, 0, ovthresh=0.5, plus_one=float(inclusive))
        assert devkit == pytest.approx(want, abs=1e-12), (det, inclusive)  # 11 x 1/11 is 1 + 2e-16
        assert voc_ap(preds, targets, num_classes=1, inclusive=inclusive).map == pytest.approx(want, abs=1e-12)
        assert voc_ap(preds, targets, num_classes=1, inclusive=inclusive, use_07_metric=False).map == want
    preds, targets = one_class([(0, half_open_det, .9)], [(0, half_open_gt, False)])
    ap, mean = coco_ap_per_class(preds, targets, num_classes=1, hit_iou=0.5)
    assert ap.tolist() == pytest.approx([1.0]) and mean == pytest.approx(1.0)  # COCO's >=: a hit there


def test_best_overlap_decides_even_when_difficult_or_claimed():
    """The devkit looks only at the best-overlapping box. Image 0: G1 (difficult) and A = (0, 0, 99, 79)
    (not difficult, IoU 0.8 with G1). A detection on G1 exactly overlaps A by 0.8 > 0.5, but its best box
    is G1: difficult, so it counts as nothing; A stays unfound: AP 0 (no point at all).
    Then a second detection exactly on A (score .8) finds A: precision 1 at recall 1: AP 1.
    Claimed: image 1, B = (0, 0, 99, 99) and C = (0, 0, 99, 69) (IoU .7). Detections .9 exactly on B,
    then .8 on B again: its best is B, claimed -> FP, even though C (IoU .7) is free. Then .7 on C: TP.
    Points: (1, 1/2), (1/2, 1/2), (2/3, 1): VOC07 = (6 x 1 + 5 x 2/3) / 11 = 28/33."""
    A = (0, 0, 99, 79)
    preds, targets = one_class([(0, G1, .9)], [(0, G1, True), (0, A, False)])
    r = voc_ap(preds, targets, num_classes=1)
    assert r.map == 0.0 and r.precision[0].numel() == 0
    preds, targets = one_class([(0, G1, .9), (0, A, .8)], [(0, G1, True), (0, A, False)])
    assert voc_ap(preds, targets, num_classes=1).map == pytest.approx(1.0)
    B, C = (0, 0, 99, 99), (0, 0, 99, 69)
    preds, targets = one_class([(1, B, .9), (1, B, .8), (1, C, .7)], [(1, B, False), (1, C, False)])
    r = voc_ap(preds, targets, num_classes=1)
    np.testing.assert_allclose(r.precision[0].numpy(), [1, 1 / 2, 2 / 3])
    assert r.map == pytest.approx((6 + 5 * 2 / 3) / 11, abs=1e-15) and r.map == pytest.approx(28 / 33)


def test_equal_scores_keep_image_order_then_detection_order():
    """Two detections of score .5: image 0's is a false alarm, image 1's finds the one box. Stable order:
    the false alarm first: points (0, 0) and (1/2, 1): area 1/2. Swap the images: (1, 1): area 1.
    Within an image, the earlier of two equal detections on the same box is the true positive."""
    preds, targets = one_class([(0, NOWHERE, .5), (1, G1, .5)], [(1, G1, False)])
    assert voc_ap(preds, targets, num_classes=1, use_07_metric=False).map == pytest.approx(0.5)
    assert voc_ap(preds[::-1], targets[::-1], num_classes=1, use_07_metric=False).map == pytest.approx(1.0)
    preds, targets = one_class([(0, (0, 0, 99, 60), .5), (0, G1, .5)], [(0, G1, False)])
    r = voc_ap(preds, targets, num_classes=1)
    np.testing.assert_allclose(r.precision[0].numpy(), [1, 1 / 2])  # the (0, 0, 99, 60) one was first: TP


def test_empty_images_missing_classes_and_nothing_at_all():
    """Detections in an image without objects are false positives; a class without a non-difficult box
    is NaN and left out of the mean; a class with boxes but no detections has AP 0."""
    preds = [dict(boxes=torch.tensor([[0, 0, 10, 10.], [0, 0, 99, 99]]), scores=torch.tensor([.9, .8]),
                  labels=torch.tensor([2, 0])), dict(boxes=torch.zeros(0, 4), scores=torch.zeros(0), labels=torch.zeros(0, dtype=torch.int64))]
    targets = [dict(boxes=torch.tensor([[0, 0, 99, 99.]]), labels=torch.tensor([0]), difficult=torch.tensor([False])),
               dict(boxes=torch.tensor([[0, 0, 50, 50.]]), labels=torch.tensor([1]))]  # no 'difficult': none is
    r = voc_ap(preds, targets, num_classes=3)
    assert r.ap[0] == pytest.approx(1.0) and r.ap[1] == 0.0 and math.isnan(r.ap[2]) and r.map == pytest.approx(0.5)
    assert r.precision[2].tolist() == [0.0] and torch.isnan(r.recall[2]).all()
    empty = [dict(boxes=torch.zeros(0, 4), scores=torch.zeros(0), labels=torch.zeros(0, dtype=torch.int64))]
    nothing = voc_ap(empty, [dict(boxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.int64))], num_classes=2)
    assert math.isnan(nothing.map) and torch.isnan(nothing.ap).all()
    assert average_precision(torch.zeros(0), torch.zeros(0), True) == 0.0


@pytest.mark.parametrize("change, message", [
    (lambda p, t: ("boxes", t), "preds must be a list with one dict per image, got str"),
    (lambda p, t: (p[:1], t), "1 images in preds but 2 in targets"),
    (lambda p, t: ([p[0], [1, 2]], t), r"preds\[1\] must be a dict"),
    (lambda p, t: ([p[0], {"boxes": p[1]["boxes"], "labels": p[1]["labels"]}], t), r"preds\[1\] lacks the key\(s\) 'scores'"),
    (lambda p, t: (p, [t[0], {"labels": t[1]["labels"]}]), r"targets\[1\] lacks the key\(s\) 'boxes'"),
    (lambda p, t: ([p[0], {**p[1], "boxes": p[1]["boxes"][:, :3]}], t), r"preds\[1\]\['boxes'\] must be \(1, 4\)"),
    (lambda p, t: ([p[0], {**p[1], "labels": p[1]["labels"].float()}], t), r"preds\[1\]\['labels'\] must be integer"),
    (lambda p, t: ([p[0], {**p[1], "labels": p[1]["labels"] + 7}], t), r"preds\[1\]\['labels'\] must be in 0\.\.2"),
    (lambda p, t: ([p[0], {**p[1], "scores": torch.tensor([math.nan])}], t), r"preds\[1\]\['scores'\] holds NaN"),
    (lambda p, t: ([p[0], {**p[1], "scores": torch.tensor([1, 2])}], t), r"preds\[1\]\['scores'\] must be \(1,\) floats"),
    (lambda p, t: (p, [t[0], {**t[1], "difficult": torch.tensor([1])}]), r"targets\[1\]\['difficult'\] must be \(1,\) bool"),
    (lambda p, t: (p, [t[0], {**t[1], "boxes": torch.tensor([[10., 0, 5, 5]])}]), r"targets\[1\]\['boxes'\]\[0\] .* y1 < y0"),
    (lambda p, t: (p, [t[0], {**t[1], "boxes": torch.tensor([[0., 0, math.inf, 5]])}]), r"targets\[1\]\['boxes'\] holds NaN"),
])
def test_input_errors_name_the_argument_image_and_key(change, message):
    preds, targets = one_class([(0, G1, .9), (1, G3, .8)], [(0, G1, False), (1, G3, False)])
    with pytest.raises((TypeError, ValueError), match=message):
        voc_ap(*change(preds, targets), num_classes=3)


def test_fast_on_a_voc_sized_class():
    """Vectorised per class: 4,000 images, 20,000 detections of one class, 4 boxes an image."""
    import time

    g = torch.Generator().manual_seed(0)
    targets = [dict(boxes=torch.rand(4, 2, generator=g).mul(300).repeat(1, 2) + torch.tensor([0, 0, 50, 50.]),
                    labels=torch.zeros(4, dtype=torch.int64), difficult=torch.zeros(4, dtype=torch.bool)) for _ in range(4000)]
    preds = [dict(boxes=t["boxes"].repeat(5, 1) + torch.randn(20, 4, generator=g) * 3, scores=torch.rand(20, generator=g),
                  labels=torch.zeros(20, dtype=torch.int64)) for t in targets]
    t0 = time.perf_counter()
    r = voc_ap(preds, targets, num_classes=1)
    assert time.perf_counter() - t0 < 10 and 0.2 < r.map < 1  # a loop over detections in Python takes about a minute


# ---------------------------------------------------------------- torchmetrics (COCO-style), difficult as iscrowd
def separated_case(seed, n_images=12, num_classes=3, clean=False):
    """Boxes on a grid (no two GT boxes overlap), detections either on a box (IoU > 0.7, never near 0.5)
    or far from all; distinct scores; some GT difficult. ``clean``: all detections of a box (and every
    detection on a difficult box) score above every false alarm, so precision stays 1 up to recall 1."""
    g = np.random.default_rng(seed)
    preds, targets = [], []
    for i in range(n_images):
        cells = g.choice(16, size=int(g.integers(0 if i % 4 == 1 else 1, 6)), replace=False)
        gt = np.array([[120 * (c // 4), 120 * (c % 4), 120 * (c // 4) + 80, 120 * (c % 4) + 80] for c in cells], float).reshape(-1, 4)
        labels = g.integers(0, num_classes, len(gt))
        difficult = g.random(len(gt)) < 0.25
        boxes, det_labels, scores = [], [], []
        for b, lab, diff in zip(gt, labels, difficult):
            for k in range(int(g.integers(1 if clean else 0, 3))):  # k = 1: a duplicate
                boxes.append(b + g.uniform(-3, 3, 4)), det_labels.append(lab)
                scores.append(g.uniform(0.6, 1.0) if clean and (k == 0 or diff) else g.uniform(0.0, 1.0) * (0.5 if clean else 1))
        for _ in range(int(g.integers(0, 4))):
            y, x = g.uniform(0, 400, 2)
            boxes.append(np.array([y, x, y + 30, x + 30]) + 1000), det_labels.append(int(g.integers(0, num_classes)))
            scores.append(g.uniform(0.0, 0.5) if clean else g.uniform(0.0, 1.0))
        preds.append(dict(boxes=torch.tensor(np.array(boxes)).reshape(-1, 4).float(), scores=torch.tensor(scores).float(),
                          labels=torch.tensor(det_labels, dtype=torch.int64)))
        targets.append(dict(boxes=torch.tensor(gt).float(), labels=torch.tensor(labels), difficult=torch.tensor(difficult)))
    return preds, targets


def coco_interpolated(recall, precision):
    """COCO's AP from a curve: at recalls 0, .01, .., 1 the best precision at that recall or beyond."""
    best = precision.flip(0).cummax(0).values.flip(0)
    # torchmetrics' recall thresholds: torch.linspace(0, 1, 101) in float32, so 0.6 is 0.6000000238...; a
    # recall of exactly 0.6 (9 of 15) does not reach it. pycocotools' own np.linspace would.
    at = torch.searchsorted(recall.contiguous(), torch.linspace(0.0, 1.00, 101).double())
    return float(torch.where(at < len(recall), best[at.clamp(max=len(recall) - 1)], torch.zeros(())).mean())


def test_clean_case_every_protocol_gives_one_and_iscrowd_is_what_makes_coco_agree():
    preds, targets = separated_case(0, clean=True)
    assert sum(int(t["difficult"].sum()) for t in targets) >= 3
    for use_07 in (True, False):
        r = voc_ap(preds, targets, num_classes=3, use_07_metric=use_07, inclusive=False)
        assert r.ap.tolist() == pytest.approx([1.0] * 3, abs=1e-12)
    coco, coco_mean = coco_ap_per_class(preds, targets, num_classes=3)
    assert coco.tolist() == pytest.approx([1.0] * 3, abs=1e-6) and coco_mean == pytest.approx(1.0, abs=1e-6)
    # without difficult -> iscrowd the detections on difficult boxes count, and so do the duplicates that
    # follow them and the difficult boxes that were never found: no longer 1
    plain = [{k: v for k, v in t.items() if k != "difficult"} for t in targets]
    assert coco_ap_per_class(preds, plain, num_classes=3)[1] < 0.99


def test_iscrowd_pass_through():
    preds, targets = separated_case(1)
    _, tm_targets = _tm_inputs(preds, targets)
    for t, tm in zip(targets, tm_targets):
        assert tm["iscrowd"].dtype == torch.int64 and tm["iscrowd"].tolist() == t["difficult"].long().tolist()
        assert torch.equal(tm["boxes"], t["boxes"][:, [1, 0, 3, 2]])  # (x0, y0, x1, y1) for torchmetrics


@pytest.mark.parametrize("seed", range(3))
def test_torchmetrics_curves_are_the_voc_curves_on_separated_boxes(seed):
    """No two GT boxes overlap and no IoU is near 0.5, so COCO's and VOC's matching decide alike; then
    torchmetrics' per-class AP@0.5 is the VOC precision-recall curve interpolated at COCO's 101 points."""
    preds, targets = separated_case(seed + 10, n_images=20)
    r = voc_ap(preds, targets, num_classes=3, inclusive=False)
    coco, coco_mean = coco_ap_per_class(preds, targets, num_classes=3)
    want = [coco_interpolated(r.recall[c], r.precision[c]) for c in range(3)]
    np.testing.assert_allclose(coco.numpy(), want, atol=1e-6)
    assert min(want) < 0.95 and coco_mean == pytest.approx(np.mean(want), abs=1e-6)


# ---------------------------------------------------------------- the per-class table
def test_per_class_table_holds_the_protocols_numbers():
    preds, targets = random_case(3, num_classes=6)
    names = ["a", "b", "c", "d", "e", "f"]
    table = per_class_table(preds, targets, names)
    assert list(table.columns) == ["class", "gt_boxes", "difficult", "ap_voc07", "ap_all_point", "ap_coco50"]
    assert table["class"].tolist() == names + ["mean"]
    r07 = voc_ap(preds, targets, num_classes=6, inclusive=False)
    rall = voc_ap(preds, targets, num_classes=6, inclusive=False, use_07_metric=False)
    coco, coco_mean = coco_ap_per_class(preds, targets, num_classes=6)
    np.testing.assert_allclose(table["ap_voc07"].to_numpy(), [*r07.ap.tolist(), r07.map])
    np.testing.assert_allclose(table["ap_all_point"].to_numpy(), [*rall.ap.tolist(), rall.map])
    np.testing.assert_allclose(table["ap_coco50"].to_numpy(), [*coco.tolist(), coco_mean])
    assert table["gt_boxes"].tolist()[:-1] == r07.n_positives.tolist() and table["gt_boxes"].iloc[-1] == int(r07.n_positives.sum())
    assert math.isnan(table["ap_voc07"].iloc[4]) and math.isnan(table["ap_coco50"].iloc[4])  # difficult only: COCO agrees
    assert table["ap_coco50"].iloc[-1] == pytest.approx(np.nanmean(coco.numpy()), abs=1e-6)


def test_per_class_table_of_no_images_is_all_nan():
    """No images: no class has a box to find, so every AP is NaN (as for a class without boxes), counts 0."""
    table = per_class_table([], [], ["cat", "dog"])
    assert table["class"].tolist() == ["cat", "dog", "mean"]
    assert table["gt_boxes"].tolist() == [0, 0, 0] and table["difficult"].tolist() == [0, 0, 0]
    assert table[["ap_voc07", "ap_all_point", "ap_coco50"]].isna().all().all()


# ---------------------------------------------------------------- the evaluation options
def test_every_ap_function_takes_one_eval_options_or_its_loose_keywords_never_both():
    """The hit IoU and the AP rule travel as one EvalOptions; the loose keywords (hit_iou, the devkit's
    use_07_metric) give the same numbers, and both at once is a TypeError naming both."""
    from ssd_lesson import EvalOptions
    from ssd_lesson.model.evaluate import Evaluation

    preds, targets = random_case(1, num_classes=6)
    strict = EvalOptions(hit_iou=0.7, ap_rule="all_point")
    r = voc_ap(preds, targets, strict, num_classes=6)
    assert r.options == strict and voc_ap(preds, targets, num_classes=6).options == EvalOptions()
    loose = voc_ap(preds, targets, hit_iou=0.7, use_07_metric=False, num_classes=6)
    assert loose.options == strict and torch.equal(r.ap.nan_to_num(-1), loose.ap.nan_to_num(-1))
    assert r.map != voc_ap(preds, targets, num_classes=6).map  # the options did something
    assert average_precision(r.recall[0], r.precision[0], options=strict) == average_precision(r.recall[0], r.precision[0],
                                                                                               use_07_metric=False)
    names = list("abcdef")
    np.testing.assert_array_equal(per_class_table(preds, targets, names, strict)["ap_coco50"].to_numpy(),
                                  per_class_table(preds, targets, names, hit_iou=0.7)["ap_coco50"].to_numpy())
    ev = Evaluation(preds, targets, tuple(names))
    assert ev.voc(strict).map == ev.voc(hit_iou=0.7, use_07_metric=False).map == voc_ap(preds, targets, strict,
                                                                                         num_classes=6, inclusive=False).map
    for call, name in [(lambda: voc_ap(preds, targets, strict, hit_iou=0.5, num_classes=6), "voc_ap"),
                       (lambda: average_precision(r.recall[0], r.precision[0], True, options=strict), "average_precision"),
                       (lambda: coco_ap_per_class(preds, targets, strict, hit_iou=0.5, num_classes=6), "coco_ap_per_class"),
                       (lambda: per_class_table(preds, targets, names, strict, hit_iou=0.5), "per_class_table"),
                       (lambda: ev.voc(strict, use_07_metric=True), "voc_ap"),
                       (lambda: ev.table(strict, hit_iou=0.5), "per_class_table")]:
        with pytest.raises(TypeError, match=rf"^{name}: got both options=EvalOptions\(hit_iou=0.7, ap_rule='all_point'\) and "):
            call()
    with pytest.raises(TypeError, match="voc_ap: options must be an EvalOptions, got float"):
        voc_ap(preds, targets, 0.5, num_classes=6)  # the old positional hit IoU is refused, not misread
    with pytest.raises(ValueError, match=r"hit_iou: must be in \[0, 1\)"):
        voc_ap(preds, targets, hit_iou=1.5, num_classes=6)


# ---------------------------------------------------------------- the training metric
def test_voc07_training_metric_is_voc_ap_of_the_decoded_batch():
    """test_model's crafted outputs: a cat found exactly (AP 1) and a person false alarm in a class
    without objects (no AP); a dog nobody detects (AP 0): VOC07 mAP (1 + 0) / 2."""
    from ssd_lesson.model.infer import decode
    from tests.model.test_model import crafted_outputs

    anchors, class_logits, box_actns = crafted_outputs()
    gt_boxes = torch.tensor([[[0.0375, 0.0375, 0.2125, 0.2125], [0.5, 0.5, 0.9, 0.9], [0.0, 0.0, 0.0, 0.0]]])
    gt_labels = torch.tensor([[7, 11, -1]])
    metrics = map_metrics(anchors, voc07=True)
    assert [m.name for m in metrics] == ["mAP50", "mAP_coco", "mAP_voc07"]

    class Learn:
        xb, pred, yb = (torch.zeros(1, 3, 224, 224),), (class_logits, box_actns), (gt_boxes, gt_labels)
    for m in metrics:
        m.reset()
    for m in metrics:
        m.accumulate(Learn)
    dets = decode(class_logits, box_actns, anchors, score_threshold=0.05)
    preds = [dict(boxes=d.boxes.double() * 224, scores=d.scores, labels=d.labels) for d in dets]
    targets = [dict(boxes=b[lab >= 0].double() * 224, labels=lab[lab >= 0]) for b, lab in zip(gt_boxes, gt_labels)]
    want = voc_ap(preds, targets, num_classes=20, inclusive=False).map
    assert metrics[2].value == pytest.approx(want, abs=1e-12) and want == pytest.approx(0.5)
    assert metrics[0].value == pytest.approx(0.5, abs=1e-4)  # COCO-style agrees: precision 1 up to recall 1 or 0


def test_learner_on_voc_reports_voc07(tmp_path):
    from ssd_lesson.data.images import make_dataloaders
    from ssd_lesson.model.net import create_ssd_model
    from ssd_lesson.data.collage import collage_records
    from ssd_lesson.model.train import ssd_learner

    train_recs, valid_recs, _ = collage_records(20, 0, tmp_path)
    dls = make_dataloaders(train_recs, valid_recs, bs=4, device="cpu")
    model = create_ssd_model("tiny", pretrained=False, n_hidden=16)
    learn = ssd_learner(dls, model, voc_metric=True)
    assert [m.name for m in learn.metrics][-3:] == ["mAP50", "mAP_coco", "mAP_voc07"]
    assert "mAP_voc07" not in [m.name for m in ssd_learner(dls, model).metrics]
    values = learn.validate()
    assert len(values) == 6 and 0 <= values[-1] <= 1


# ---------------------------------------------------------------- the precision-recall figure
def test_pr_curve_figure_draws_both_interpolations():
    """The hand-worked case above: the 11 dots are 1, 1, 1, 1, 2/3, 2/3, 2/3, 0, 0, 0, 0 (their mean 6/11),
    the shaded envelope is 1 up to recall 1/3 and 2/3 up to 2/3 (area 5/9)."""
    from matplotlib.collections import LineCollection

    from ssd_lesson.drawing.pr_plot import pr_curve_figure

    preds, targets = one_class([(0, G1, .9), (0, G2, .8), (0, G1, .7), (1, G3, .6), (1, NOWHERE, .5)],
                               [(0, G1, False), (0, G2, True), (1, G3, False), (1, G4, False)])
    r = voc_ap(preds, targets, num_classes=1)
    fig = pr_curve_figure(r, "cow", ["cow"])
    ax = fig.axes[0]
    dots = [line for line in ax.lines if line.get_marker() == "o"][0]
    assert dots.get_ydata().tolist() == pytest.approx([1] * 4 + [2 / 3] * 3 + [0] * 4)
    assert np.mean(dots.get_ydata()) == pytest.approx(float(r.ap[0]))
    stems = [c for c in ax.collections if isinstance(c, LineCollection)][0]
    assert len(stems.get_segments()) == 11
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["all-point AP (area) 0.556", "precision, recall down the detections", "11-point AP (mean of the dots) 0.545"]
    assert ax.get_title() == "cow: 4 detections scored, IoU > 0.5" and "of 3 non-difficult boxes" in ax.get_xlabel()
    import io

    fig.savefig(io.BytesIO(), format="png")  # it renders
    with pytest.raises(ValueError, match="unknown class 'dog'"):
        pr_curve_figure(r, "dog", ["cow"])
    empty = voc_ap(preds, [dict(boxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.int64))] * 2, num_classes=1)
    with pytest.raises(ValueError, match="no non-difficult ground-truth box"):
        pr_curve_figure(empty, 0)
