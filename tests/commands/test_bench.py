"""Guard for the loss benchmark: it runs end to end, and its methods compute what they claim.

Nothing here is timed. A fast wrong answer must not win: (1) eager, (2) compiled and
(3) the lesson's per-image loop must agree on the loss, and (4) must be torchvision's
own SSD loss. The methods the benchmark times are ``tests/reference/loss_methods.py``'s,
checked here directly. The benchmark itself is run, never imported: through the package's
``bench`` command (in this process, as the other commands' tests run theirs: tests/in_process.py)
and ``python benchmarks/cold_calls.py`` (a process of its own), and checked by what they print
and write.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from torch import nn

from ssd_lesson import AnchorSpec, make_anchors
from tests.helpers import random_batch
from tests.in_process import run_main
from tests.reference import ref_ssd_loss
from tests.reference import loss_methods as methods
from tests.reference.lesson_loop import lesson_ssd_loss

ROOT = Path(__file__).resolve().parents[2]


def run_script(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python *args`` from the repository's root, as a user runs the benchmark; fails on a non-zero status."""
    r = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, timeout=timeout,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr
    return r


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
@pytest.mark.parametrize("match_on", methods.MATCH_MODES)
def test_methods_1_to_3_agree_in_float64(match_on, n_anchors):
    """The benchmark's own (1), (2) and (3) on one of its inputs: same loss and gradients."""
    anchors = make_anchors(methods.anchor_spec(n_anchors), dtype=torch.float64)
    x = methods.make_inputs(3, anchors, seed=7, dtype=torch.float64)
    fns = {"eager": methods.eager_loss(anchors, match_on),
           "compiled": methods.compiled_loss(anchors, match_on, backend="eager"),  # the graph, not inductor's speed
           "lesson": methods.lesson_loss(anchors, match_on)}
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
    x = methods.make_inputs(4, anchors, seed=8, dtype=torch.float64)
    ours = methods.torchvision_loss()(x)
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


@pytest.mark.slow  # the benchmark script, run whole
def test_benchmark_runs_end_to_end(tmp_path):
    """The tiny grid through ``python -m ssd_lesson bench``: a table, a JSON file, agreement."""
    out = tmp_path / "quick.json"
    # --threads 0 and --plain-malloc: leave this test process's threads and allocator alone.
    r = run_main("bench", "--quick", "--threads", "0", "--plain-malloc", "--out", out, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "| agree" in r.stdout and "yes" in r.stdout and " NO" not in r.stdout, r.stdout
    result = json.loads(out.read_text())
    rows = result["rows"]
    assert {(r["batch"], r["match_on"]) for r in rows} == {(b, m) for b in (1, 4) for m in methods.MATCH_MODES}
    for r in rows:
        for m in methods.METHODS:
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
    assert [p["match_on"] for p in peak] == list(methods.MATCH_MODES)
    assert all(p["peak_bytes"] is None or p["peak_bytes"] > 0 for p in peak)
    assert result["scaling"] and result["training_step"] == []  # --quick skips the training step


@pytest.mark.slow  # the cold-calls script in a subprocess
def test_cold_calls_runs(tmp_path):
    """``benchmarks/cold_calls.py`` on a tiny case: every (method, disturbance) timed, excess taken against 'nothing'."""
    out = tmp_path / "cold.json"
    r = run_script("benchmarks/cold_calls.py", "--batch", "2", "--calls", "2", "--sweep-mib", "1",
                   "--compile-backend", "eager", "--out", str(out))
    result = json.loads(out.read_text())
    kinds = ["nothing", "sweep", "python", "lesson"]
    assert (result["batch"], result["calls"], result["sweep_mib"]) == (2, 2, 1)
    assert list(result["median_ms"]) == ["eager", "compiled"]
    for m, per in result["median_ms"].items():
        assert list(per) == kinds and all(v > 0 for v in per.values())
        for d in kinds:
            assert result["excess_ms"][m][d] == pytest.approx(per[d] - per["nothing"])
        printed = next(line for line in r.stdout.splitlines() if line.strip().startswith(f"{m}: nothing"))
        assert f"nothing {per['nothing']:.3f} (+0.000)" in printed, r.stdout
    assert f"wrote {out}" in r.stdout


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")
def test_benchmark_cuda_rows(tmp_path):
    """With a GPU, the CUDA grid point runs every method, inductor included, and they agree."""
    out = tmp_path / "cuda.json"
    r = run_main("bench", "--devices", "cuda", "--batches", "4", "--anchors", "189", "--budget", "0", "--repeats", "1",
                 "1", "--step-batch", "0", "--threads", "0", "--plain-malloc", "--out", out, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    result = json.loads(out.read_text())
    assert [r["match_on"] for r in result["rows"]] == list(methods.MATCH_MODES)
    for r in result["rows"]:
        assert r["device"] == "cuda" and r["agree"] and "error" not in r["compile"], r
        assert all(r[f"{m}_ms"] > 0 for m in methods.METHODS)
    peak = [p for p in result["peak_memory"] if p["device"] == "cuda"]
    assert peak and all(p["peak_bytes"] > 0 for p in peak)
