"""Guard for the loss benchmark (issue 7): it runs end to end, and its methods compute what they claim.

Nothing here is timed. A fast wrong answer must not win: (1) eager, (2) compiled and
(3) the lesson's per-image loop must agree on the loss, and (4) must be torchvision's
own SSD loss.
"""
from __future__ import annotations

import json
from collections import OrderedDict

import pytest
import torch
from torch import nn

from benchmarks import bench_loss as bench
from tests.reference.lesson_loop import lesson_ssd_loss
from ssd_lesson import AnchorSpec, make_anchors
from ssd_lesson.commands.bench import main as bench_main

from tests.reference import ref_ssd_loss
from tests.helpers import random_batch

CASES = [dict(match_on="predictions"), dict(match_on="anchors"), dict(match_on="predictions", reduction="sum"),
         dict(match_on="anchors", threshold=0.5)]


@pytest.mark.parametrize("kw", CASES, ids=lambda kw: "-".join(str(v) for v in kw.values()))
@pytest.mark.parametrize("B,max_g,seed", [(1, 1, 60), (4, 6, 61), (6, 20, 62)])
def test_lessons_loop_equals_reference(kw, B, max_g, seed):
    """Method (3), the lesson's code path, is the plain reference's loss and gradient (float64)."""
    gen = torch.Generator().manual_seed(seed)
    cl, bb, gb, gl = random_batch(B, max_g, gen)  # includes images with no ground truth at all
    anchors = make_anchors(dtype=torch.float64)
    cl1, bb1 = cl.clone().requires_grad_(), bb.clone().requires_grad_()
    ours = lesson_ssd_loss(cl1, bb1, gb, gl, anchors.centers_hw, anchors.grid_sizes, **kw)
    ours.backward()
    cl2, bb2 = cl.clone().requires_grad_(), bb.clone().requires_grad_()
    ref, _ = ref_ssd_loss(cl2, bb2, gb, gl, anchors.centers_hw, anchors.grid_sizes, **kw)
    ref.backward()
    assert abs(ours.item() - ref.item()) <= 1e-9 * max(1.0, abs(ref.item()))
    torch.testing.assert_close(cl1.grad, cl2.grad, rtol=0, atol=1e-9)
    torch.testing.assert_close(bb1.grad, bb2.grad, rtol=0, atol=1e-9)


@pytest.mark.parametrize("n_anchors", [189, 8732])
@pytest.mark.parametrize("match_on", bench.MATCH_MODES)
def test_methods_1_to_3_agree_in_float64(match_on, n_anchors):
    """The benchmark's own (1), (2) and (3) on one of its inputs: same loss and gradients."""
    anchors = make_anchors(bench.anchor_spec(n_anchors), dtype=torch.float64)
    x = bench.make_inputs(3, anchors, seed=7, dtype=torch.float64)
    fns = {"eager": bench.eager_loss(anchors, match_on),
           "compiled": bench.compiled_loss(anchors, match_on, backend="eager"),  # the graph, not inductor's speed
           "lesson": bench.lesson_loss(anchors, match_on)}
    values, grads = {}, {}
    for name, fn in fns.items():
        for t in x.leaves:
            t.grad = None
        loss = fn(x)
        loss.backward()
        values[name], grads[name] = loss.item(), [t.grad.clone() for t in x.leaves]
    for name in ("compiled", "lesson"):
        assert values[name] == pytest.approx(values["eager"], rel=1e-9), name
        for g, g_ref in zip(grads[name], grads["eager"]):
            torch.testing.assert_close(g, g_ref, rtol=0, atol=1e-9)


class _Given(nn.Module):
    """Returns what it was given, whatever the input: stands in for a network part of torchvision's SSD."""

    def __init__(self, value):
        super().__init__()
        self.value = value

    def forward(self, *args):
        return self.value


def test_method_4_is_torchvisions_ssd_loss():
    """(4) re-does only SSD.forward's matching loop; the whole SSD, run in training mode, agrees."""
    from torchvision.models.detection.ssd import SSD

    anchors = make_anchors(AnchorSpec(), dtype=torch.float64)
    x = bench.make_inputs(4, anchors, seed=8, dtype=torch.float64)
    ours = bench.torchvision_loss()(x)
    ours_grads = torch.autograd.grad(ours, x.leaves)

    head_outputs = {"cls_logits": x.class_logits, "bbox_regression": x.box_actns}
    model = SSD(backbone=_Given(OrderedDict(f=torch.zeros(4, 1, 1, 1))), anchor_generator=_Given(x.tv_anchors),
                size=(224, 224), num_classes=x.class_logits.shape[-1], head=_Given(head_outputs)).train()
    images = [torch.zeros(3, 224, 224, dtype=torch.float64) for _ in range(4)]  # 224 in, 224 out: boxes unscaled
    losses = model(images, [dict(t) for t in x.tv_targets])
    theirs = losses["bbox_regression"] + losses["classification"]
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-12)
    for g, g_ref in zip(ours_grads, torch.autograd.grad(theirs, x.leaves)):
        torch.testing.assert_close(g, g_ref, rtol=0, atol=1e-12)


def test_benchmark_runs_end_to_end(tmp_path):
    """The tiny grid through ``python -m ssd_lesson bench``'s entry point: a table, a JSON file, agreement."""
    out = tmp_path / "quick.json"
    # --threads 0 and --plain-malloc: leave this test process's threads and allocator alone.
    assert bench_main(["--quick", "--threads", "0", "--plain-malloc", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    rows = result["rows"]
    assert {(r["batch"], r["match_on"]) for r in rows} == {(b, m) for b in (1, 4) for m in bench.MATCH_MODES}
    for r in rows:
        for m in bench.METHODS:
            assert r[f"{m}_ms"] > 0 and r[f"{m}_cpu_ms"] >= 0
            assert r[f"{m}_interleaved_ms"] > 0  # the second timing, one call of each method in turn
        assert r["agree"], r
        assert r["compiled_loss"] == pytest.approx(r["eager_loss"], rel=1e-5)
        assert r["lesson_loss"] == pytest.approx(r["eager_loss"], rel=1e-5)
        assert r["lesson_over_eager"] == pytest.approx(r["lesson_ms"] / r["eager_ms"])
        assert r["lesson_over_compiled_interleaved"] == pytest.approx(r["lesson_interleaved_ms"] / r["compiled_interleaved_ms"])
        assert "error" not in r["compile"]
    assert result["all_agree"]
    peak = result["peak_memory"]
    assert [p["match_on"] for p in peak] == list(bench.MATCH_MODES)
    assert all(p["peak_bytes"] is None or p["peak_bytes"] > 0 for p in peak)
    assert result["scaling"] and result["training_step"] == []  # --quick skips the training step


def test_cold_calls_runs(capsys):
    """``benchmarks/cold_calls.py`` on a tiny case: every (method, disturbance) timed, excess taken against 'nothing'."""
    from benchmarks import cold_calls

    r = cold_calls.run(batch=2, calls=2, sweep_mib=1, backend="eager", threads=None, keep_freed_memory=False)
    kinds = ["nothing", "sweep", "python", "lesson"]
    assert list(r["median_ms"]) == ["eager", "compiled"]
    for m, per in r["median_ms"].items():
        assert list(per) == kinds and all(v > 0 for v in per.values())
        for d in kinds:
            assert r["excess_ms"][m][d] == pytest.approx(per[d] - per["nothing"])
    assert cold_calls.main(["--batch", "1", "--calls", "1", "--sweep-mib", "1", "--methods", "eager",
                            "--threads", "0", "--plain-malloc"]) == 0
    assert "eager: nothing" in capsys.readouterr().out


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")
def test_benchmark_cuda_rows():
    """With a GPU, the CUDA grid point runs every method, inductor included, and they agree."""
    cfg = bench.Config(batches=(4,), n_anchors=(189,), devices=("cuda",), warmup=1, budget_s=0.0, min_repeats=1,
                       max_repeats=1, step_batch=None, threads=None, keep_freed_memory=False)
    rows = bench.run_point(cfg, "cuda", 189, 4, log=print)
    assert [r["match_on"] for r in rows] == list(bench.MATCH_MODES)
    for r in rows:
        assert r["device"] == "cuda" and r["agree"] and "error" not in r["compile"], r
        assert all(r[f"{m}_ms"] > 0 for m in bench.METHODS)
    peak = bench.peak_memory_report(cfg, "cuda", log=print)
    assert all(p["peak_bytes"] > 0 for p in peak)
