"""The tables equal the library's numbers, and ``dissect`` prints them and writes only its own figures."""
from __future__ import annotations

from pathlib import Path

import inspect

import numpy as np
import pytest
import torch

from ssd_lesson import FORCED_OVERLAP, LossOptions, make_anchors, ssd_loss
from ssd_lesson.drawing import tables
from ssd_lesson.commands.dissect import figure_names, run_dissect
from ssd_lesson.course.lesson import example_activations, load_example, synthetic_example


@pytest.fixture(scope="module")
def case():
    """A batch of two images: the synthetic example and the same example mirrored, with different activations."""
    ex = synthetic_example()
    anchors = make_anchors()
    cl0, ba0, _ = example_activations(ex, anchors, seed=0, checkpoint=False, verbose=False)
    cl1, ba1, _ = example_activations(ex, anchors, seed=1, checkpoint=False, verbose=False)
    _, gb, gl = ex.batch()
    flipped = gb.clone()
    flipped[..., 1], flipped[..., 3] = 1 - gb[..., 3], 1 - gb[..., 1]
    batch = (torch.cat([cl0, cl1]), torch.cat([ba0, ba1]), torch.cat([gb, flipped]), torch.cat([gl, gl]))
    return ex, anchors, batch, ssd_loss(*batch, anchors)


# ---------------------------------------------------------------- tables
@pytest.mark.parametrize("b", [0, 1])
def test_table1_is_the_iou(case, b):
    _, _, (_, _, _, gl), res = case
    t = tables.iou_table(res, b=b)
    assert list(t.columns) == ["0: cow", "1: person", "2: bicycle", "3: motorbike"]
    assert list(t.index) == list(range(30)) and t.index.name == "box"
    np.testing.assert_array_equal(t.to_numpy(), res.ious[b, :30].double().numpy())
    t = tables.iou_table(res, rows=[5, 100, 188], b=b)
    np.testing.assert_array_equal(t.to_numpy(), res.ious[b, [5, 100, 188]].double().numpy())


@pytest.mark.parametrize("b", [0, 1])
def test_table2_rows_equal_the_match(case, b):
    _, _, _, res = case
    t = tables.match_table(res, rows=None, b=b)  # all 189 rows, so every forced match is in view
    assert t["gt_idx"].tolist() == res.match.gt_idx[b].tolist()
    np.testing.assert_array_equal(t["gt_overlap"].to_numpy(), res.match.gt_overlap[b].double().numpy())
    forced = res.match.gt_overlap[b] == FORCED_OVERLAP
    assert t["forced"].tolist() == forced.tolist() and forced.sum() >= 1
    none = (res.ious[b].amax(dim=1) == 0) & ~forced
    assert t["no_overlap"].tolist() == none.tolist() and none.any()
    assert (t.loc[t["no_overlap"], "gt_idx"] == 0).all()  # the article's default index 0
    assert set(t.loc[t["forced"], "note"]) == {tables.FORCED_NOTE}
    assert len(tables.match_table(res, b=b)) == 30


def test_table2_styler_highlights_forced_rows(case):
    _, _, _, res = case
    forced = torch.nonzero(res.match.gt_overlap[0] == FORCED_OVERLAP).flatten().tolist()
    t = tables.match_table(res, rows=[0] + forced)
    html = tables.style_match_table(t).to_html()
    assert html.count("background-color: #ffe08a") >= 1 and "1.9900" in html
    assert "no_overlap" not in html  # the flag columns are hidden; the note says it in words


@pytest.mark.parametrize("b", [0, 1])
def test_table4_is_exactly_the_positives(case, b):
    _, _, batch, res = case
    t = tables.regression_table(res, b=b)
    pos = torch.nonzero(res.match.positive[b]).flatten().tolist()
    assert list(t.index) == pos and len(pos) >= 4  # every ground-truth box claims one
    np.testing.assert_allclose(t["gtbbox"].to_numpy(), res.target_boxes[b, pos].double().numpy())
    np.testing.assert_allclose(t["pbbox"].to_numpy(), res.pred_boxes[b, pos].detach().double().numpy())
    assert list(t["gtbbox"].columns) == ["y0", "x0", "y1", "x1"]
    totals = tables.regression_totals(res, b=b)
    # both ways equal the library's two reductions, and the per-box MAE column adds up to them
    summed = ssd_loss(*batch, make_anchors(), regression_reduction="sum").regression[b]
    assert totals.iloc[0] == pytest.approx(float(res.regression[b]), rel=1e-6)
    assert totals.iloc[1] == pytest.approx(float(summed), rel=1e-6)
    assert t[("", "MAE")].mean() == pytest.approx(totals.iloc[0], rel=1e-5)
    assert t[("", "MAE")].sum() == pytest.approx(totals.iloc[1], rel=1e-5)


def test_loss_table_and_fig5_classes(case):
    _, _, (_, _, _, gl), res = case
    s = tables.loss_table(res, b=1)
    assert s.iloc[0] == pytest.approx(float(res.classification[1]))
    assert s.iloc[3] == pytest.approx(float(res.classification[1] + res.regression[1]), rel=1e-6)
    assert float(tables.loss_table(res, 0).iloc[3] + s.iloc[3]) == pytest.approx(float(res.total), rel=1e-6)
    fig5 = tables.box_classes(res, b=1)
    assert torch.equal(fig5, gl[1][res.match.gt_idx[1]])
    fig6 = tables.box_classes(res, b=1, thresholded=True)
    assert torch.equal(fig6 == 20, ~res.match.positive[1]) and torch.equal(fig6[fig6 < 20], fig5[fig6 < 20])


def test_compare_matches(case):
    ex, anchors, batch, res = case
    other = ssd_loss(*batch, anchors, match_on="anchors")
    t = tables.compare_matches({"predictions": res, "anchors": other}, rows=10)
    assert t.shape == (10, 6)
    assert t[("anchors", "positive")].tolist() == other.match.positive[0, :10].tolist()


# ---------------------------------------------------------------- the command
def test_example_activations_fall_back_to_seeded_random(capsys):
    ex = synthetic_example()
    cl, ba, source = example_activations(ex, seed=3, checkpoint=False)
    assert cl.shape == (1, 189, 21) and ba.shape == (1, 189, 4)
    assert "seeded random" in source and source in capsys.readouterr().out
    cl2, ba2, _ = example_activations(ex, seed=3, checkpoint=False, verbose=False)
    assert torch.equal(cl, cl2) and torch.equal(ba, ba2)


def test_example_activations_use_a_checkpoint(tmp_path, monkeypatch, capsys):
    import ssd_lesson.model.checkpoint

    class Fake(torch.nn.Module):  # stands in for a trained SSD (loading a real one imports fastai: slow)
        body_name = "fake"

        def forward(self, images):
            assert images.shape == (1, 3, 224, 224)
            return torch.ones(1, 189, 21), torch.full((1, 189, 4), 0.5)

    path = tmp_path / "trained.pth"
    path.write_bytes(b"weights")
    seen = {}
    monkeypatch.setattr(ssd_lesson.model.checkpoint, "load_checkpoint", lambda p, spec: seen.setdefault("args", (p, spec)) and Fake())
    cl, ba, source = example_activations(synthetic_example(), checkpoint=path)
    assert seen["args"] == (path, make_anchors().spec)
    assert torch.equal(ba, torch.full((1, 189, 4), 0.5)) and str(path) in source and source in capsys.readouterr().out
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        example_activations(synthetic_example(), checkpoint=tmp_path / "missing.pth")


def test_load_example_has_the_four_objects():
    ex = load_example(offline=True)
    assert ex.image224.shape == (224, 224, 3) and ex.boxes.shape == (4, 4) and ex.source


def test_run_dissect_prints_the_article_and_writes_only_its_figures(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    names = figure_names(make_anchors())
    (out / names["fig1"]).write_bytes(b"stale")  # one of its own: overwritten
    got = run_dissect(out_dir=out, n_rows=5, seed=0, example=synthetic_example(), checkpoint=False, dpi=20)
    printed = capsys.readouterr().out
    assert "189 anchor boxes in all" in printed and "4x4, 2x2, 1x1" in printed
    assert "Activations:" in printed
    res = got["result"]
    for label, value in (("classification", res.classification[0]), ("mean (lesson code)", res.regression[0])):
        line = next(l for l in printed.splitlines() if l.startswith(label) or l.startswith("regression, " + label))
        assert f"{float(value):.4f}" in line
    assert f"Positives (overlap > 0.4): {int(res.match.positive.sum())} of 189" in printed
    assert "Table 1" in printed and "Table 2" in printed and "Table 4" in printed and "0: cow" in printed
    assert sorted(p.name for p in out.iterdir()) == sorted(list(names.values()) + ["notes.txt"])
    assert (out / "notes.txt").read_text() == "mine"
    magic = {".jpg": b"\xff\xd8\xff", ".png": b"\x89PNG"}  # photographs as JPEG, as the notebooks store them
    assert sorted(Path(n).suffix for n in names.values()) == [".jpg"] * 8 + [".png"]
    for name in names.values():
        assert (out / name).read_bytes().startswith(magic[Path(name).suffix]), name
    assert [f"  [{i}/9] {name}" for i, name in enumerate(names.values(), start=1)] == \
        [ln for ln in printed.splitlines() if ln.startswith("  [")]  # it says what it is writing
    from pandas.testing import assert_frame_equal  # pandas: imported when needed, not at collection

    assert_frame_equal(got["table2"], tables.match_table(res, 5))


def test_run_dissect_signature_fits_the_cli():
    params = inspect.signature(run_dissect).parameters
    assert [p for p in ("out_dir", "n_rows", "seed", "options") if p in params] == ["out_dir", "n_rows", "seed", "options"]
    assert params["n_rows"].default == 30 and params["options"].default == LossOptions()
