"""Time ``ssd_lesson.model.metrics.voc_ap`` against torchmetrics' ``MeanAveragePrecision`` on a VOC2007-test-sized set.

Synthetic and seeded: 4,952 images of 500 x 375 pixels, 1 to 5 objects each (about 14,000 in
all, a sixth of them difficult), 20 classes, and 200 detections per image: jittered copies of the
objects (true, duplicate or wrong-class hits) and boxes anywhere, with random scores.

Both get the same per-image dicts. torchmetrics runs as the project uses it (pycocotools backend,
``box_format="xyxy"``) with ``iou_thresholds=[0.5]``, ``difficult`` as ``iscrowd`` and
``max_detection_thresholds=[1, 10, 200]`` so that it, too, scores all 200 detections of an image
(the default, 100, would drop half); its time is ``update`` + ``compute``. ``voc_ap`` is timed with
its input checks, for VOC07's 11 points and for the all-point area, with one torch thread and with
torch's default (pycocotools is single-threaded numpy). A benchmark, not a test:

    python benchmarks/bench_voc_ap.py                  # 2-6 minutes here, nearly all of it torchmetrics
    python benchmarks/bench_voc_ap.py --images 500     # a quick look
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)  # fastai's, at import

from ssd_lesson.model.metrics import _new_map_metric, _tm_inputs, voc_ap  # noqa: E402


def synthetic_voc(n_images: int = 4952, dets_per_image: int = 200, seed: int = 0):
    """``(preds, targets)``: per-image dicts, boxes ``(y0, x0, y1, x1)`` pixels, half-open."""
    g = np.random.default_rng(seed)
    H, W = 375, 500
    preds, targets = [], []
    for _ in range(n_images):
        m = int(g.integers(1, 6))  # 1..5: 3 on average, about 14,900 objects in 4,952 images
        h, w = g.uniform(20, H * 0.8, m), g.uniform(20, W * 0.8, m)
        y0, x0 = g.uniform(0, H - h), g.uniform(0, W - w)
        gt = np.stack([y0, x0, y0 + h, x0 + w], 1).round()
        labels = g.integers(0, 20, m)
        difficult = g.random(m) < 1 / 6
        n_hit = min(dets_per_image, int(g.integers(2, 6)) * m)  # 2-5 detections near each object
        src = g.integers(0, m, n_hit)
        near = gt[src] + g.normal(0, 0.1, (n_hit, 4)) * np.stack([h[src], w[src]] * 2, 1)
        near_labels = np.where(g.random(n_hit) < 0.8, labels[src], g.integers(0, 20, n_hit))
        k = dets_per_image - n_hit
        yy, xx = g.uniform(0, H, k), g.uniform(0, W, k)
        anywhere = np.stack([yy, xx, yy + g.uniform(10, 200, k), xx + g.uniform(10, 250, k)], 1)
        boxes = np.concatenate([near, anywhere])
        boxes = np.concatenate([np.minimum(boxes[:, :2], boxes[:, 2:]), np.maximum(boxes[:, :2], boxes[:, 2:])], 1)
        boxes = np.clip(boxes, 0, [H, W, H, W])
        scores = np.concatenate([g.beta(4, 2, n_hit), g.beta(1.5, 5, k)])  # hits score higher, on the whole
        preds.append(dict(boxes=torch.tensor(boxes, dtype=torch.float32), scores=torch.tensor(scores, dtype=torch.float32),
                          labels=torch.tensor(np.concatenate([near_labels, g.integers(0, 20, k)]), dtype=torch.int64)))
        targets.append(dict(boxes=torch.tensor(gt, dtype=torch.float32), labels=torch.tensor(labels, dtype=torch.int64),
                            difficult=torch.tensor(difficult)))
    return preds, targets


def time_it(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=4952)
    p.add_argument("--dets", type=int, default=200, help="detections per image")
    p.add_argument("--repeats", type=int, default=3, help="runs of voc_ap (median); torchmetrics runs --tm-repeats times")
    p.add_argument("--tm-repeats", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    preds, targets = synthetic_voc(args.images, args.dets, args.seed)
    n_obj = sum(len(t["labels"]) for t in targets)
    n_diff = sum(int(t["difficult"].sum()) for t in targets)
    print(f"{args.images} images, {n_obj} objects ({n_diff} difficult), {args.dets} detections per image "
          f"({args.images * args.dets} in all); made in {time.perf_counter() - t0:.1f} s; torch threads {torch.get_num_threads()}")

    default_threads, rows = torch.get_num_threads(), []
    for threads in sorted({1, default_threads}):
        torch.set_num_threads(threads)
        t07, r07 = time_it(lambda: voc_ap(preds, targets, inclusive=False), args.repeats)
        tall, rall = time_it(lambda: voc_ap(preds, targets, inclusive=False, use_07_metric=False), args.repeats)
        rows.append((threads, t07, r07, tall, rall))
    torch.set_num_threads(default_threads)

    def torchmetrics_map():
        metric = _new_map_metric(sync=False, iou_thresholds=[0.5], max_detection_thresholds=[1, 10, args.dets])
        metric.update(*_tm_inputs(preds, targets))
        return metric.compute()

    ttm, rtm = time_it(torchmetrics_map, args.tm_repeats)
    print(f"torchmetrics (pycocotools), {default_threads} torch threads: {ttm:8.2f} s   mAP@0.5 {float(rtm['map_50']):.4f} "
          "(COCO's 101 points)")
    for threads, t07, r07, tall, rall in rows:
        print(f"voc_ap VOC07 11-point, {threads} torch thread{'s' * (threads > 1)}: {t07:8.3f} s   mAP {r07.map:.4f}   "
              f"torchmetrics / voc_ap {ttm / t07:6.1f}x")
        print(f"voc_ap all-point,      {threads} torch thread{'s' * (threads > 1)}: {tall:8.3f} s   mAP {rall.map:.4f}   "
              f"torchmetrics / voc_ap {ttm / tall:6.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
