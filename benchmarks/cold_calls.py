"""What a cold cache costs the loss: each call timed after a chosen piece of other work.

The interleaved timing of ``bench_loss.py`` runs the lesson's loop between two calls of
the compiled loss, and the compiled call then takes about 0.7 ms longer at batch 32.
This script asks what that extra time is. Each timed call follows an untimed
call of the same method and then one of:

* ``nothing``: back-to-back calls, everything warm;
* ``sweep``:   one pass writing a large tensor (default 64 MiB, twice the L3 here), which
  pushes the loss's data and code out of the caches but runs no Python;
* ``python``:  a pure-Python loop over a small dict, which touches almost no memory but
  evicts the interpreter's and torch's Python-side state from L1/L2 and the branch predictors;
* ``lesson``:  one forward + backward of the lesson's per-image loop, as in the interleaved timing.

    python benchmarks/cold_calls.py                    # batch 32, 189 anchors, about 30 s
    python benchmarks/cold_calls.py --batch 128 --out benchmarks/results/cold_calls_128.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import bench_loss as bl  # noqa: E402
from ssd_lesson import make_anchors  # noqa: E402


def disturbances(x: bl.Inputs, anchors, sweep_mib: int) -> dict[str, Callable[[], None]]:
    """The work run before each timed call, by name."""
    big = torch.zeros(sweep_mib * 2**20 // 4)
    lesson = bl.lesson_loss(anchors, "predictions")

    def python_loop() -> None:
        d: dict[int, str] = {}
        for i in range(20_000):
            d[i % 97] = str(i)

    return {"nothing": lambda: None, "sweep": lambda: big.add_(1), "python": python_loop,
            "lesson": lambda: bl.fwd_bwd(lesson, x)}


def run(batch: int = 32, n_anchors: int = 189, calls: int = 40, sweep_mib: int = 64,
        methods: Sequence[str] = ("eager", "compiled"), backend: str = "inductor", threads: Optional[int] = 1,
        keep_freed_memory: bool = True) -> dict:
    """Median wall ms of forward + backward per (method, disturbance), and the excess over ``nothing``.

    ``threads`` and ``keep_freed_memory`` as in ``bench_loss.py`` (None / False: leave the process as it is).
    """
    if threads:
        torch.set_num_threads(threads)
    if keep_freed_memory:
        bl.keep_freed_memory()
    anchors = make_anchors(bl.anchor_spec(n_anchors))
    x = bl.make_inputs(batch, anchors, seed=batch)
    fns = {"eager": bl.eager_loss(anchors, "predictions"),
           "compiled": bl.compiled_loss(anchors, "predictions", backend=backend)}
    fns = {m: fns[m] for m in methods}
    before = disturbances(x, anchors, sweep_mib)
    for fn in fns.values():  # compile and warm up
        for _ in range(3):
            bl.fwd_bwd(fn, x)
    times: dict[str, dict[str, list[float]]] = {m: {d: [] for d in before} for m in fns}
    for _ in range(calls):  # rounds over every pair, so that load changes hit them alike
        for name, work in before.items():
            for m, fn in fns.items():
                bl.fwd_bwd(fn, x)  # warm: with ``nothing``, the timed call follows its own kind
                work()
                times[m][name].append(bl.fwd_bwd(fn, x)[0])
    ms = {m: {d: 1e3 * statistics.median(t) for d, t in per.items()} for m, per in times.items()}
    return {"batch": batch, "n_anchors": n_anchors, "calls": calls, "sweep_mib": sweep_mib, "median_ms": ms,
            "excess_ms": {m: {d: v - per["nothing"] for d, v in per.items()} for m, per in ms.items()}}


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--anchors", type=int, default=189, choices=(189, 8732))
    p.add_argument("--calls", type=int, default=40, help="timed calls per (method, disturbance)")
    p.add_argument("--sweep-mib", type=int, default=64)
    p.add_argument("--methods", nargs="+", default=("eager", "compiled"), choices=("eager", "compiled"))
    p.add_argument("--compile-backend", default="inductor")
    p.add_argument("--threads", type=int, default=1, help="torch threads, as in bench_loss.py (0: torch's choice)")
    p.add_argument("--plain-malloc", action="store_true", help="leave glibc's malloc as it is, as in bench_loss.py")
    p.add_argument("--out", type=Path, help="also write the result as JSON")
    a = p.parse_args(argv)
    r = run(a.batch, a.anchors, a.calls, a.sweep_mib, a.methods, a.compile_backend, a.threads or None, not a.plain_malloc)
    print(f"batch {r['batch']}, {r['n_anchors']} anchors: median ms of forward + backward after each disturbance "
          f"(+ excess over 'nothing')")
    for m, per in r["median_ms"].items():
        print(f"{m:>9}: " + "  ".join(f"{d} {v:.3f} (+{r['excess_ms'][m][d]:.3f})" for d, v in per.items()))
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(r, indent=1) + "\n")
        print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
