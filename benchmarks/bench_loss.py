"""Time the SSD loss four ways, forward + backward, on identical inputs.

1. ``eager``       ``ssd_lesson.ssd_loss`` batched over images, eager PyTorch;
2. ``compiled``    the same function under ``torch.compile`` (compile time reported apart);
3. ``lesson``      the lesson's way: a Python loop over images, plain torch ops per image
                   (``tests/reference/lesson_loop.py``: broadcast jaccard, ``map_to_ground_truth``,
                   one-hot BCE, ``nonzero``);
4. ``torchvision`` torchvision's SSD path: per-image ``box_iou`` + ``SSDMatcher``, then
                   ``torchvision.models.detection.ssd.SSD.compute_loss`` itself (box coder,
                   smooth L1, hard-negative-mined cross-entropy). A different loss formula:
                   it is timed, not compared.

``--paper`` times instead the SSD paper's loss, ``ssd_loss(..., options=LossOptions.ssd_paper())``
(eager and compiled), against ``torchvision``'s ``SSD.compute_loss`` on the same batch with the
conventions mapped (background first, activations ``(dx, dy, dw, dh)``): the same loss formula,
so the values must agree; by default at SSD300's 8732 anchors, batch 32.

Every method of one grid point runs in the same process on the same seeded inputs, timed
two ways after a warm-up:

* **blocks** (the headline numbers): each method runs a block of consecutive calls, as a
  training loop calls its loss step after step, and the blocks of all methods alternate
  over a few rounds so that a change in the machine's load hits every method alike;
* **interleaved**: one call of each method per round, so every call starts with the
  caches full of another method's code and data. That costs any batched call a fixed
  0.5-0.8 ms here (``cold_calls.py`` measures it), so the fast methods pay most for it.

Reported per method: the median wall time per call, and the median process CPU time,
which leaves out the time other users' processes held the core. By default torch runs
one thread and glibc keeps freed memory for reuse (see ``--help``), and the settings are
written into the JSON file.

The four methods and their inputs are in ``tests/reference/loss_methods.py``, where the tests
prove them equal (``tests/commands/test_bench.py``): the code timed is the code proven.

Run ``python benchmarks/bench_loss.py --help`` or ``python -m ssd_lesson bench --help``.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import math
import os
import platform
import statistics
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the four methods live with the tests (tests/reference), in the repository
    sys.path.insert(0, str(ROOT))

from ssd_lesson import Anchors, LossOptions, make_anchors, ssd_loss  # noqa: E402
from tests.reference.loss_methods import (MATCH_MODES, MAX_GT, METHODS, N_CLASSES, Inputs, LossFn,  # noqa: E402
                                          anchor_spec, compiled_loss, eager_loss, lesson_loss, make_inputs,
                                          torchvision_loss)

RESULTS_DIR = ROOT / "benchmarks" / "results"  # <devices>.json: cpu.json, or cpu-cuda.json with a GPU


# ---------------------------------------------------------------- timing

def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def fwd_bwd(fn: LossFn, x: Inputs) -> tuple[float, float]:
    """Wall and process-CPU seconds of one forward + backward (previous gradients dropped first).

    On a shared machine the CPU time is the steadier number: it leaves out the time
    other people's processes held the core.
    """
    for t in x.leaves:
        t.grad = None
    device = str(x.class_logits.device)
    sync(device)
    wall, cpu = time.perf_counter(), time.process_time()
    fn(x).backward()
    sync(device)
    return time.perf_counter() - wall, time.process_time() - cpu


def time_methods(fns: dict[str, LossFn], x: Inputs, *, warmup: int, budget_s: float, min_repeats: int,
                 max_repeats: int, blocks: int = 0) -> dict[str, dict[str, Any]]:
    """Median wall and CPU seconds per call of each method, after ``warmup`` calls of each.

    Each method gets ``repeats`` timed calls, fitted to ``budget_s`` (estimated from the
    last warm-up calls) and clamped to ``[min_repeats, max_repeats]``, in rounds that visit
    every method in turn, so that a change in the machine's load hits every method alike:

    * ``blocks=0`` (interleaved): ``repeats`` rounds of one call of each method;
    * ``blocks=n``: ``n`` rounds of a block of ``repeats / n`` consecutive calls of each.
    """
    last = {}
    for name, fn in fns.items():
        for _ in range(warmup):
            last[name] = fwd_bwd(fn, x)[0]
    repeats = int(min(max_repeats, max(min_repeats, budget_s / max(sum(last.values()), 1e-9))))
    rounds, calls = (blocks, -(-repeats // blocks)) if blocks else (repeats, 1)
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            runs[name] += [fwd_bwd(fn, x) for _ in range(calls)]
    out = {}
    for name, r in runs.items():
        wall, cpu = [w for w, _ in r], [c for _, c in r]
        out[name] = {"median_s": statistics.median(wall), "min_s": min(wall), "cpu_median_s": statistics.median(cpu),
                     "repeats": len(r)}
    return out


def _fx_cache_hits() -> int:
    """How many compiled graphs inductor has taken from its on-disk cache so far in this process."""
    try:
        from torch._dynamo.utils import counters

        return int(counters["inductor"]["fxgraph_cache_hit"])
    except Exception:  # noqa: BLE001 - a private counter: no number rather than a crash
        return -1


def loss_value(fn: LossFn, x: Inputs) -> float:
    with torch.no_grad():
        return float(fn(x))


def peak_memory_bytes(fn: LossFn, x: Inputs) -> Optional[int]:
    """Peak bytes allocated during one forward + backward, above what was live before.

    CUDA: the caching allocator's peak counter. CPU: the allocation and free events
    recorded by ``torch.profiler`` (``profile_memory=True``), summed in time order.
    """
    for t in x.leaves:
        t.grad = None
    device = str(x.class_logits.device)
    if device.startswith("cuda"):
        sync(device)
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn(x).backward()
        sync(device)
        return torch.cuda.max_memory_allocated() - base
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn(x).backward()
    try:
        events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    except AttributeError:  # the profiler's internals moved: no number rather than a wrong one
        return None
    live = peak = 0
    for e in sorted(events, key=lambda e: e.start_ns()):
        live += e.nbytes()
        peak = max(peak, live)
    return peak


# ---------------------------------------------------------------- one grid point

@dataclass
class Config:
    """What to run; the defaults are the full grid (every batch size, layout, device and method)."""

    batches: tuple[int, ...] = (1, 8, 32, 128)
    n_anchors: tuple[int, ...] = (189, 8732)
    devices: tuple[str, ...] = ("cpu",)
    methods: tuple[str, ...] = METHODS
    match_modes: tuple[str, ...] = MATCH_MODES
    dtype: torch.dtype = torch.float32
    compile_backend: str = "inductor"
    compile_mode: Optional[str] = None
    warmup: int = 2
    budget_s: float = 8.0  # per grid point, shared by the two timings
    min_repeats: int = 4
    max_repeats: int = 40
    seed: int = 0
    step_batch: Optional[int] = 32  # full training step at this batch size; None skips it
    step_repeats: int = 3
    threads: Optional[int] = 1  # see main()'s help text: OpenMP's spinning workers on a shared machine
    keep_freed_memory: bool = True  # see keep_freed_memory()
    agree_rtol: float = 1e-4
    extra: dict[str, Any] = field(default_factory=dict)


def run_point(cfg: Config, device: str, n_anchors: int, batch: int, log: Callable[[str], None]) -> list[dict[str, Any]]:
    """Time every method at one (device, anchors, batch); one row per match mode."""
    anchors = make_anchors(anchor_spec(n_anchors), device=device, dtype=cfg.dtype)
    x = make_inputs(batch, anchors, seed=cfg.seed + batch, device=device, dtype=cfg.dtype)
    fns: dict[str, LossFn] = {}
    compile_info: dict[str, dict[str, Any]] = {}
    torch._dynamo.reset()  # a fresh cache per grid point: each compile below is this shape's own
    for mode in cfg.match_modes:
        if "eager" in cfg.methods:
            fns[f"eager/{mode}"] = eager_loss(anchors, mode)
        if "compiled" in cfg.methods:
            info = compile_info[mode] = {}
            try:
                fn = compiled_loss(anchors, mode, cfg.compile_backend, cfg.compile_mode)
                hits = _fx_cache_hits()
                info["first_call_s"] = fwd_bwd(fn, x)[0]  # compiles forward and backward
                info["second_call_s"] = fwd_bwd(fn, x)[0]
                info["compile_s"] = max(0.0, info["first_call_s"] - info["second_call_s"])
                # A warm inductor cache (an earlier run on this machine) makes a compile far cheaper.
                info["inductor_cache_hits"] = _fx_cache_hits() - hits
                fns[f"compiled/{mode}"] = fn
            except Exception as e:  # report why instead of a number
                info["error"] = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
                log(f"  compile failed ({device}, {n_anchors} anchors, batch {batch}, {mode}): {info['error']}")
        if "lesson" in cfg.methods:
            fns[f"lesson/{mode}"] = lesson_loss(anchors, mode)
    if "torchvision" in cfg.methods:
        fns["torchvision"] = torchvision_loss()

    values = {name: loss_value(fn, x) for name, fn in fns.items()}
    timing = dict(warmup=cfg.warmup, budget_s=cfg.budget_s / 2, min_repeats=cfg.min_repeats, max_repeats=cfg.max_repeats)
    times = time_methods(fns, x, blocks=4, **timing)
    interleaved = time_methods(fns, x, **timing)
    rows = []
    for mode in cfg.match_modes:
        row: dict[str, Any] = {"device": device, "n_anchors": n_anchors, "batch": batch, "match_on": mode,
                               "n_gt_real": int((x.gt_labels >= 0).sum()), "gt_rows": x.gt_labels.shape[1]}
        for m in METHODS:
            name = "torchvision" if m == "torchvision" else f"{m}/{mode}"
            if name in times:
                row[f"{m}_ms"] = 1e3 * times[name]["median_s"]
                row[f"{m}_min_ms"] = 1e3 * times[name]["min_s"]
                row[f"{m}_cpu_ms"] = 1e3 * times[name]["cpu_median_s"]
                row[f"{m}_repeats"] = times[name]["repeats"]
                row[f"{m}_interleaved_ms"] = 1e3 * interleaved[name]["median_s"]
                row[f"{m}_interleaved_cpu_ms"] = 1e3 * interleaved[name]["cpu_median_s"]
                row[f"{m}_loss"] = values[name]
        if mode in compile_info:
            row["compile"] = compile_info[mode]
        for num in ("lesson", "torchvision"):
            for den in ("eager", "compiled"):
                if f"{num}_ms" in row and f"{den}_ms" in row:
                    row[f"{num}_over_{den}"] = row[f"{num}_ms"] / row[f"{den}_ms"]
                    row[f"{num}_over_{den}_cpu"] = row[f"{num}_cpu_ms"] / row[f"{den}_cpu_ms"]
                    row[f"{num}_over_{den}_interleaved"] = row[f"{num}_interleaved_ms"] / row[f"{den}_interleaved_ms"]
        # (1), (2) and (3) compute the same loss: a fast wrong answer must not win.
        same = [row[f"{m}_loss"] for m in ("eager", "compiled", "lesson") if f"{m}_loss" in row]
        row["agree"] = all(math.isclose(v, same[0], rel_tol=cfg.agree_rtol) for v in same)
        if not row["agree"]:
            log(f"  WARNING: methods disagree on the loss: {same}")
        rows.append(row)
    return rows


# ---------------------------------------------------------------- the full training step

class _MinimalSSD(nn.Module):
    """Fallback model: torchvision resnet34 body (random weights) and a small conv head.

    Input ``(B, 3, 224, 224)``; the body gives ``(B, 512, 7, 7)``; stride-2 convs make the
    4x4, 2x2 and 1x1 grids; each grid's output conv gives ``k * (C+1+4)`` channels per cell.
    Returns ``(B, 189, C+1)`` class logits and ``(B, 189, 4)`` box activations, anchor order.
    """

    def __init__(self, k: int = 9, n_classes: int = N_CLASSES):
        super().__init__()
        import torchvision

        self.k, self.n_out = k, n_classes + 1 + 4
        self.body = nn.Sequential(*list(torchvision.models.resnet34(weights=None).children())[:-2])
        self.downs = nn.ModuleList([nn.Sequential(nn.Conv2d(ni, 256, 3, stride=2, padding=1), nn.ReLU(), nn.BatchNorm2d(256))
                                    for ni in (512, 256, 256)])
        self.outs = nn.ModuleList([nn.Conv2d(256, k * self.n_out, 3, padding=1) for _ in range(3)])

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        x, flat = self.body(images), []
        for down, out in zip(self.downs, self.outs):
            x = down(x)
            y = out(x)  # (B, k * n_out, g, g) -> (B, g*g*k, n_out): cells row-major, then k
            flat.append(y.permute(0, 2, 3, 1).reshape(y.shape[0], -1, self.n_out))
        y = torch.cat(flat, dim=1)
        return y[..., :-4], y[..., -4:]


def build_model(log: Callable[[str], None]) -> tuple[nn.Module, str]:
    """``ssd_lesson.model.net.create_ssd_model("resnet34", pretrained=False)`` if it works, else :class:`_MinimalSSD`."""
    try:
        from ssd_lesson.model.net import create_ssd_model

        model = create_ssd_model(body="resnet34", pretrained=False)
        with torch.no_grad():
            c, b = model.eval()(torch.zeros(2, 3, 224, 224))
        if tuple(c.shape) != (2, 189, N_CLASSES + 1) or tuple(b.shape) != (2, 189, 4):
            raise ValueError(f"unexpected output shapes {tuple(c.shape)}, {tuple(b.shape)}")
        return model.train(), "ssd_lesson.model.net.create_ssd_model('resnet34', pretrained=False)"
    except Exception as e:  # noqa: BLE001 - any failure means: use the minimal model
        log(f"  (ssd_lesson.model.net unavailable: {type(e).__name__}: {e}; using the benchmark's minimal model)")
        return _MinimalSSD().train(), "benchmarks.bench_loss._MinimalSSD (torchvision resnet34 body, weights=None)"


def run_training_step(cfg: Config, device: str, log: Callable[[str], None]) -> dict[str, Any]:
    """Time model forward + loss + backward at ``cfg.step_batch`` (224 px, 189 anchors), and the loss alone.

    The loss alone runs on detached copies of the model's outputs, round-robin with
    the step, so that both see the same machine load.
    """
    batch = cfg.step_batch
    torch.manual_seed(cfg.seed)
    model, model_name = build_model(log)
    model = model.to(device)
    anchors = make_anchors(device=device, dtype=cfg.dtype)
    x = make_inputs(batch, anchors, seed=cfg.seed + 1000, device=device, dtype=cfg.dtype)
    images = torch.randn(batch, 3, 224, 224, device=device)
    mode = cfg.match_modes[0]
    loss_fns: dict[str, LossFn] = {"eager": eager_loss(anchors, mode)}
    if "compiled" in cfg.methods:
        try:
            fn = compiled_loss(anchors, mode, cfg.compile_backend, cfg.compile_mode)
            fwd_bwd(fn, x)
            loss_fns["compiled"] = fn
        except Exception as e:  # noqa: BLE001
            log(f"  compiled loss unavailable for the step: {type(e).__name__}: {e}")
    if "lesson" in cfg.methods:
        loss_fns["lesson"] = lesson_loss(anchors, mode)

    def step() -> tuple[float, float]:
        model.zero_grad(set_to_none=True)
        sync(device)
        wall, cpu = time.perf_counter(), time.process_time()
        cl, bb = model(images)
        ssd_loss(cl, bb, x.gt_boxes, x.gt_labels, anchors, match_on=mode, validate=False).total.backward()
        sync(device)
        return time.perf_counter() - wall, time.process_time() - cpu

    step()  # warm-up
    steps: list[tuple[float, float]] = []
    loss_runs: dict[str, list[tuple[float, float]]] = {k: [] for k in loss_fns}
    for _ in range(cfg.step_repeats):
        steps.append(step())
        for name, fn in loss_fns.items():
            loss_runs[name].append(fwd_bwd(fn, x))
    out: dict[str, Any] = {"device": device, "batch": batch, "image_size": 224, "n_anchors": len(anchors),
                           "match_on": mode, "model": model_name, "repeats": cfg.step_repeats}
    for clock, i in (("", 0), ("_cpu", 1)):
        step_s = statistics.median(t[i] for t in steps)
        loss_s = {k: statistics.median(t[i] for t in v) for k, v in loss_runs.items()}
        out[f"step{clock}_ms"] = 1e3 * step_s
        out[f"loss{clock}_ms"] = {k: 1e3 * v for k, v in loss_s.items()}
        # The step ran with the eager loss; with another, it costs the same model work plus that loss.
        out[f"loss_share{clock}"] = {k: v / (step_s - loss_s["eager"] + v) for k, v in loss_s.items()}
    return out


# ---------------------------------------------------------------- the SSD paper's loss against torchvision's

PAPER_METHODS = ("paper eager", "paper compiled", "torchvision")


def paper_losses(anchors: Anchors, x: Inputs, cfg: Config) -> dict[str, LossFn]:
    """The paper's loss, eager and compiled (whole result, as method (2)), and torchvision's on its own copies of the
    activations in its layout: background first, ``(dx, dy, dw, dh)``. Their gradients are dropped before each call,
    as ``fwd_bwd`` drops the library's."""
    paper = LossOptions.ssd_paper()

    def eager(x: Inputs) -> Tensor:
        return ssd_loss(*x.leaves, x.gt_boxes, x.gt_labels, anchors, options=paper, validate=False).total

    compiled_fn = torch.compile(lambda cl, bb, gb, gl: ssd_loss(cl, bb, gb, gl, anchors, options=paper, validate=False),
                                backend=cfg.compile_backend, mode=cfg.compile_mode, dynamic=False, fullgraph=True)
    cl, bb = (t.detach() for t in x.leaves)
    tv_x = Inputs(torch.cat([cl[..., -1:], cl[..., :-1]], dim=-1).requires_grad_(), bb[..., [1, 0, 3, 2]].requires_grad_(),
                  x.gt_boxes, x.gt_labels, x.tv_targets, x.tv_anchors)
    tv = torchvision_loss()

    def torchvision_mapped(_: Inputs) -> Tensor:
        for t in tv_x.leaves:
            t.grad = None
        return tv(tv_x)

    return {"paper eager": eager, "paper compiled": lambda x: compiled_fn(*x.leaves, x.gt_boxes, x.gt_labels).total,
            "torchvision": torchvision_mapped}


def run_paper_point(cfg: Config, n_anchors: int, batch: int, log: Callable[[str], None]) -> dict[str, Any]:
    """Time the paper's loss against torchvision's at one (anchors, batch) on the CPU; one row."""
    anchors = make_anchors(anchor_spec(n_anchors), dtype=cfg.dtype)
    x = make_inputs(batch, anchors, seed=cfg.seed + batch, dtype=cfg.dtype)
    torch._dynamo.reset()
    fns = paper_losses(anchors, x, cfg)
    first = fwd_bwd(fns["paper compiled"], x)[0]  # compiles forward and backward
    compile_s = max(0.0, first - fwd_bwd(fns["paper compiled"], x)[0])
    values = {name: loss_value(fn, x) for name, fn in fns.items()}
    timing = dict(warmup=cfg.warmup, budget_s=cfg.budget_s / 2, min_repeats=cfg.min_repeats, max_repeats=cfg.max_repeats)
    times, interleaved = time_methods(fns, x, blocks=4, **timing), time_methods(fns, x, **timing)
    row: dict[str, Any] = {"device": "cpu", "n_anchors": n_anchors, "batch": batch, "compile_s": compile_s,
                           "n_gt_real": int((x.gt_labels >= 0).sum())}
    for name in fns:
        key = name.replace(" ", "_")
        row[f"{key}_ms"] = 1e3 * times[name]["median_s"]
        row[f"{key}_cpu_ms"] = 1e3 * times[name]["cpu_median_s"]
        row[f"{key}_interleaved_ms"] = 1e3 * interleaved[name]["median_s"]
        row[f"{key}_loss"] = values[name]
    for den in ("paper_eager", "paper_compiled"):
        row[f"torchvision_over_{den}"] = row["torchvision_ms"] / row[f"{den}_ms"]
        row[f"torchvision_over_{den}_interleaved"] = row["torchvision_interleaved_ms"] / row[f"{den}_interleaved_ms"]
        row[f"torchvision_over_{den}_cpu"] = row["torchvision_cpu_ms"] / row[f"{den}_cpu_ms"]
    row["agree"] = all(math.isclose(values[n], values["torchvision"], rel_tol=cfg.agree_rtol) for n in fns)
    if not row["agree"]:
        log(f"  WARNING: the paper's loss and torchvision's disagree: {values}")
    return row


def paper_table(rows: list[dict[str, Any]]) -> str:
    """The paper's loss beside torchvision's: median wall ms (blocks), and torchvision's time over each, by the
    wall clock (blocks, interleaved) and by the process's CPU time (which leaves out other users' load)."""
    ratios = [(f"{clock}: tv/{den}", f"torchvision_over_paper_{den}{suffix}")
              for clock, suffix in (("wall", ""), ("interleaved", "_interleaved"), ("cpu", "_cpu"))
              for den in ("eager", "compiled")]
    head = (f"{'A':>5} {'B':>4} {'torchvision':>12} {'paper eager':>12} {'paper compiled':>15} {'compile_s':>9} | "
            + " ".join(f"{name:>{len(name)}}" for name, _ in ratios) + " | agree")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['n_anchors']:>5} {r['batch']:>4} {fmt(r['torchvision_ms']):>12} {fmt(r['paper_eager_ms']):>12} "
                     f"{fmt(r['paper_compiled_ms']):>15} {fmt(r['compile_s'], '.1f'):>9} | "
                     + " ".join(f"{fmt(r[key], '.2f'):>{len(name)}}" for name, key in ratios)
                     + f" | {'yes' if r['agree'] else 'NO'}")
    return "\n".join(lines)


def run_paper(cfg: Config, out_path: Optional[Path], log: Callable[[str], None] = print) -> dict[str, Any]:
    """``--paper``: every (anchors, batch) of ``cfg`` on the CPU; the rows, written to ``out_path`` if given."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    keep = keep_freed_memory() if cfg.keep_freed_memory else False
    result: dict[str, Any] = {
        "what": ("forward + backward of LossOptions.ssd_paper() (eager, compiled) and torchvision's SSD.compute_loss "
                 "with SSD.forward's matching loop, median wall ms per call in blocks (*_interleaved_*: one call of each "
                 "in turn); torchvision_over_*: torchvision's time over the library's"),
        "environment": {"torch": torch.__version__, "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
                        "dtype": str(cfg.dtype).replace("torch.", ""), "malloc_keeps_freed_memory": keep,
                        "load_average_at_start": _load_average()},
        "rows": []}
    for A in cfg.n_anchors:
        for B in cfg.batches:
            result["rows"].append(run_paper_point(cfg, A, B, log))
    result["environment"]["load_average_at_end"] = _load_average()
    result["all_agree"] = all(r["agree"] for r in result["rows"])
    if out_path is not None:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(result, indent=1, default=str) + "\n")
    return result


# ---------------------------------------------------------------- report

def fmt(v: Optional[float], spec: str = ".2f") -> str:
    return "-" if v is None else format(v, spec)


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as a fixed-width text table: median wall ms per call (blocks), then ratios, blocks and interleaved."""
    ratios = (("lesson", "eager"), ("lesson", "compiled"), ("torchvision", "eager"), ("torchvision", "compiled"))
    names = {"lesson": "3", "torchvision": "4", "eager": "1", "compiled": "2"}
    head = (f"{'device':<6} {'A':>5} {'B':>4} {'match_on':<11} {'(1)eager':>9} {'(2)compiled':>11} {'compile_s':>9} "
            f"{'(3)lesson':>10} {'(4)tv':>9} | " + " ".join(f"{names[n] + '/' + names[d]:>5}" for n, d in ratios)
            + " | " + " ".join(f"{names[n] + '/' + names[d]:>5}" for n, d in ratios) + " | agree")
    bars = [i for i, ch in enumerate(head) if ch == "|"]
    group = (" " * bars[0] + "| " + "ratios, blocks".ljust(bars[1] - bars[0] - 2) + "| "
             + "ratios, interleaved".ljust(bars[2] - bars[1] - 2) + "|")
    lines = [group, head, "-" * len(head)]
    for r in rows:
        comp = r.get("compile", {})
        wall = " ".join(f"{fmt(r.get(f'{n}_over_{d}'), '.1f'):>5}" for n, d in ratios)
        cpu = " ".join(f"{fmt(r.get(f'{n}_over_{d}_interleaved'), '.1f'):>5}" for n, d in ratios)
        lines.append(
            f"{r['device']:<6} {r['n_anchors']:>5} {r['batch']:>4} {r['match_on']:<11} {fmt(r.get('eager_ms')):>9} "
            f"{fmt(r.get('compiled_ms')) if 'error' not in comp else 'failed':>11} {fmt(comp.get('compile_s'), '.1f'):>9} "
            f"{fmt(r.get('lesson_ms')):>10} {fmt(r.get('torchvision_ms')):>9} | {wall} | {cpu} | "
            f"{'yes' if r['agree'] else 'NO'}")
    return "\n".join(lines)


def markdown(result: dict[str, Any]) -> str:
    """A results dict (or JSON file's content) as the Markdown table of ``benchmarks/README.md``."""
    head = ("| device | anchors | batch | match_on | (1) eager ms | (2) compiled ms | (3) lesson ms | (4) torchvision ms "
            "| (3)/(1) | (3)/(2) | (4)/(1) | (4)/(2) | (3)/(2) interleaved | (4)/(2) interleaved |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in result["rows"]:
        cells = [r["device"], r["n_anchors"], r["batch"], r["match_on"]]
        cells += [fmt(r.get(f"{m}_ms"), ".2f") for m in METHODS]
        cells += [fmt(r.get(k), ".1f") for k in ("lesson_over_eager", "lesson_over_compiled", "torchvision_over_eager",
                                                  "torchvision_over_compiled", "lesson_over_compiled_interleaved",
                                                  "torchvision_over_compiled_interleaved")]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def scaling(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """How each method's median time grows: per step up in batch size, and from 189 to 8732 anchors.

    ``time_ratio / work_ratio`` at or below 1 is linear or better (fixed costs amortised).
    The anchor step multiplies the ``A x G`` work by 8732 / 189 = 46.2.
    """
    out = []
    key = {(r["device"], r["n_anchors"], r["batch"], r["match_on"]): r for r in rows}
    batches = sorted({r["batch"] for r in rows})
    anchors = sorted({r["n_anchors"] for r in rows})
    for (dev, A, B, mode), r in key.items():
        steps = []
        if B in batches[:-1]:
            steps.append(("batch", B, batches[batches.index(B) + 1], key.get((dev, A, batches[batches.index(B) + 1], mode))))
        if A in anchors[:-1]:
            steps.append(("n_anchors", A, anchors[anchors.index(A) + 1], key.get((dev, anchors[anchors.index(A) + 1], B, mode))))
        for what, lo, hi, bigger in steps:
            for m in METHODS:
                if bigger and f"{m}_ms" in r and f"{m}_ms" in bigger:
                    out.append({"device": dev, "method": m, "match_on": mode, "n_anchors": A, "batch": B, "grows": what,
                                "from": lo, "to": hi, "time_ratio": bigger[f"{m}_ms"] / r[f"{m}_ms"],
                                "work_ratio": hi / lo})
    return out


def peak_memory_report(cfg: Config, device: str, log: Callable[[str], None]) -> list[dict[str, Any]]:
    """Peak memory of method (1) at the largest grid point, against the ``(B, A, G)`` IoU tensor."""
    A, B = max(cfg.n_anchors), max(cfg.batches)
    anchors = make_anchors(anchor_spec(A), device=device, dtype=cfg.dtype)
    x = make_inputs(B, anchors, seed=cfg.seed + B, device=device, dtype=cfg.dtype)
    item = torch.finfo(cfg.dtype).bits // 8
    iou_bytes = B * A * x.gt_labels.shape[1] * item
    out = []
    for mode in cfg.match_modes:
        peak = peak_memory_bytes(eager_loss(anchors, mode), x)
        out.append({"device": device, "n_anchors": A, "batch": B, "match_on": mode, "peak_bytes": peak,
                    "iou_tensor_bytes": iou_bytes, "logits_bytes": x.class_logits.numel() * item,
                    "peak_over_iou": None if peak is None else peak / iou_bytes})
        log(f"  peak memory of (1) eager, {device}, {A} anchors, batch {B}, {mode}: "
            f"{fmt(None if peak is None else peak / 2**20, '.1f')} MiB = {fmt(out[-1]['peak_over_iou'], '.1f')} x "
            f"the (B, A, G) IoU tensor ({iou_bytes / 2**20:.1f} MiB)")
    return out


def _load_average() -> Optional[list[float]]:
    """The machine's 1, 5 and 15 minute load averages (other users' work shows here)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for reuse instead of handing it back to the OS.

    By default glibc maps each large block afresh and returns it on free, so every call's
    large temporaries arrive as new pages: here, about 1000 page faults per call of the
    compiled loss at batch 128 (189 anchors), a third of its time, and 200,000 per call of
    the eager loss at 8732 anchors, half of its time; none for the per-image loop, whose
    tensors are small. PyTorch's CPU tuning guide recommends jemalloc or tcmalloc for the
    same reason. Returns False where this is not glibc.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    # Blocks up to 1 GiB from the heap (the (B, A, G) IoU at 8732 anchors, batch 128, is 85 MiB);
    # older glibc caps the threshold at 32 MiB.
    kept = bool(libc.mallopt(M_MMAP_THRESHOLD, 1 << 30)) or bool(libc.mallopt(M_MMAP_THRESHOLD, 1 << 25))
    return kept and bool(libc.mallopt(M_TRIM_THRESHOLD, 1 << 30))


def run(cfg: Config, out_path: Optional[Path] = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the grid and return (and optionally write) the results as a JSON-able dict."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    malloc_kept = keep_freed_memory() if cfg.keep_freed_memory else False
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 16)
    started = time.perf_counter()
    result: dict[str, Any] = {
        "what": ("forward + backward of the SSD loss, median wall time per call in ms, timed in blocks of consecutive "
                 "calls (*_interleaved_*: one call of each method in turn); ratios are (3)/(1), (3)/(2), (4)/(1), (4)/(2)"),
        "environment": {"torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
                        "processor": platform.processor(), "cpu_count": os.cpu_count(),
                        "torch_threads": torch.get_num_threads(), "dtype": str(cfg.dtype).replace("torch.", ""),
                        "malloc_keeps_freed_memory": malloc_kept,
                        "load_average_at_start": _load_average(),
                        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None},
        "config": {"batches": cfg.batches, "n_anchors": cfg.n_anchors, "devices": cfg.devices, "methods": cfg.methods,
                   "match_modes": cfg.match_modes, "compile_backend": cfg.compile_backend, "compile_mode": cfg.compile_mode,
                   "n_classes": N_CLASSES, "gt_rows_per_image": MAX_GT, "warmup": cfg.warmup, "budget_s": cfg.budget_s,
                   "min_repeats": cfg.min_repeats, "max_repeats": cfg.max_repeats, "seed": cfg.seed, **cfg.extra},
        "rows": [], "peak_memory": [], "training_step": [],
    }
    try:
        import torchvision
        result["environment"]["torchvision"] = torchvision.__version__
    except ImportError:
        pass
    for device in cfg.devices:
        for A in cfg.n_anchors:
            for B in cfg.batches:
                t0 = time.perf_counter()
                rows = run_point(cfg, device, A, B, log)
                result["rows"] += rows
                log("\n".join(table(rows).splitlines()[3:]) + f"   [{time.perf_counter() - t0:.0f}s]")
        if "eager" in cfg.methods:
            result["peak_memory"] += peak_memory_report(cfg, device, log)
        if cfg.step_batch:
            log(f"  training step on {device} at batch {cfg.step_batch} ...")
            step = run_training_step(cfg, device, log)
            result["training_step"].append(step)
            log(f"  step {step['step_ms']:.0f} ms (forward + eager loss + backward); the loss's share of a step: "
                + ", ".join(f"{k} {100 * v:.2g}%" for k, v in step["loss_share"].items()))
    result["environment"]["load_average_at_end"] = _load_average()
    result["scaling"] = scaling(result["rows"])
    result["all_agree"] = all(r["agree"] for r in result["rows"])
    result["wall_s"] = time.perf_counter() - started
    if out_path is not None:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(result, indent=1, default=str) + "\n")
    return result


# ---------------------------------------------------------------- command line

def parse_args(argv: Optional[Sequence[str]]) -> tuple[Config, Optional[Path], Optional[Path], bool]:
    p = argparse.ArgumentParser(prog="python -m ssd_lesson bench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="tiny grid (batches 1 and 4, 189 anchors, CPU, backend 'eager', 1 repeat, no training step): a smoke test")
    p.add_argument("--batches", type=int, nargs="+", help="batch sizes (default 1 8 32 128)")
    p.add_argument("--anchors", type=int, nargs="+", choices=(189, 8732), help="anchor layouts (default 189 8732)")
    p.add_argument("--devices", nargs="+", help="devices (default: cpu, and cuda when available)")
    p.add_argument("--methods", nargs="+", choices=METHODS, help="methods to run (default all)")
    p.add_argument("--match-on", nargs="+", choices=MATCH_MODES, help="match modes for (1)-(3) (default both)")
    p.add_argument("--compile-backend", default=None, help="torch.compile backend (default inductor)")
    p.add_argument("--compile-mode", default=None, help="torch.compile mode, e.g. max-autotune-no-cudagraphs")
    p.add_argument("--budget", type=float, default=None, help="seconds of timed calls per grid point, half for each timing (default 8)")
    p.add_argument("--repeats", type=int, nargs=2, metavar=("MIN", "MAX"), help="bounds on each method's timed calls, per timing (default 4 40)")
    p.add_argument("--step-batch", type=int, default=None, help="batch of the full training step (default 32; 0 skips it)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch.set_num_threads (default 1: on a machine shared with other busy processes, OpenMP's "
                        "spinning worker threads made 2-thread timings up to 80x slower and meaningless; 0 = torch's choice)")
    p.add_argument("--paper", action="store_true",
                   help="time the SSD paper's loss (LossOptions.ssd_paper(), eager and compiled) against torchvision's "
                        "SSD.compute_loss instead, on the CPU (default: 8732 anchors, batch 32)")
    p.add_argument("--markdown", type=Path, metavar="JSON",
                   help="print the Markdown table of an earlier run's JSON file and exit (for benchmarks/README.md)")
    p.add_argument("--plain-malloc", action="store_true",
                   help="leave glibc's malloc as it is (default: keep freed memory for reuse, see keep_freed_memory)")
    p.add_argument("--out", type=Path, default=None,
                   help=f"JSON file (default {RESULTS_DIR.relative_to(ROOT)}/<devices>.json, e.g. cpu.json; "
                        "--quick writes nothing unless given)")
    a = p.parse_args(argv)
    for name, vals, low in (("--batches", a.batches, 1), ("--repeats", a.repeats, 1), ("--step-batch", [a.step_batch], 0),
                            ("--threads", [a.threads], 0)):
        vals = [v for v in vals or () if v is not None]
        if vals and min(vals) < low:
            p.error(f"argument {name}: must be at least {low}, got {min(vals)}")
    if a.repeats and a.repeats[0] > a.repeats[1]:
        p.error(f"argument --repeats: MIN {a.repeats[0]} is above MAX {a.repeats[1]}")
    if a.budget is not None and not (math.isfinite(a.budget) and a.budget >= 0):
        p.error(f"argument --budget: must be a finite number of seconds >= 0, got {a.budget}")
    cfg = Config()
    if a.quick:
        cfg = Config(batches=(1, 4), n_anchors=(189,), compile_backend="eager", warmup=1, budget_s=0.0,
                     min_repeats=1, max_repeats=1, step_batch=None)
    elif torch.cuda.is_available():
        cfg.devices = ("cpu", "cuda")
    for attr, val in (("batches", a.batches), ("n_anchors", a.anchors), ("devices", a.devices), ("methods", a.methods),
                      ("match_modes", a.match_on), ("compile_backend", a.compile_backend),
                      ("compile_mode", a.compile_mode), ("budget_s", a.budget), ("threads", a.threads)):
        if val is not None:
            setattr(cfg, attr, tuple(val) if isinstance(val, list) else val)
    if a.repeats:
        cfg.min_repeats, cfg.max_repeats = a.repeats
    if a.threads == 0:
        cfg.threads = None
    cfg.keep_freed_memory = not a.plain_malloc
    if a.step_batch is not None:
        cfg.step_batch = a.step_batch or None
    if "cuda" in " ".join(cfg.devices) and not torch.cuda.is_available():
        p.error("CUDA was asked for but is not available")
    if a.paper:
        cfg.batches, cfg.n_anchors = tuple(a.batches or (32,)), tuple(a.anchors or (8732,))
        return cfg, a.out if a.out is not None else (None if a.quick else RESULTS_DIR / "cpu_paper.json"), a.markdown, True
    out = a.out if a.out is not None else (None if a.quick else RESULTS_DIR / ("-".join(cfg.devices) + ".json"))
    return cfg, out, a.markdown, False


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``python benchmarks/bench_loss.py`` and ``python -m ssd_lesson bench``; returns the exit code."""
    cfg, out, markdown_of, paper = parse_args(argv)
    if markdown_of is not None:
        print(markdown(json.loads(markdown_of.read_text())))
        return 0
    if paper:
        print(f"torch {torch.__version__}, {cfg.threads or torch.get_num_threads()} thread(s), "
              f"{str(cfg.dtype).replace('torch.', '')}; the SSD paper's loss against torchvision's, forward + backward")
        result = run_paper(cfg, out)
        print(paper_table(result["rows"]))
        if out is not None:
            print(f"\nwrote {out}")
        return 0 if result["all_agree"] else 1
    print(f"torch {torch.__version__}, {cfg.threads or torch.get_num_threads()} thread(s), "
          f"{str(cfg.dtype).replace('torch.', '')}, malloc {'keeps freed memory' if cfg.keep_freed_memory else 'as is'}; "
          f"times: median wall ms of forward + backward; ratios of medians")
    print("\n".join(table([]).splitlines()[:2]))
    try:
        result = run(cfg, out)
    except Exception:
        traceback.print_exc()
        return 1
    print()
    print(table(result["rows"]))
    if out is not None:
        print(f"\nwrote {out}")
    if not result["all_agree"]:
        print("ERROR: (1), (2) and (3) disagree on the loss value somewhere (see 'agree')", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
