"""Notebooks 6, 7, 8 and 11 show what the library computes.

The committed, executed notebooks are read with nbformat (nothing is executed here), and
every number their checked cells print is compared with the library on the same example
and activations, so a notebook cannot drift from the code. The library helpers these
notebooks added (``tables.one_hot_table``, ``tables.box_class_losses``,
``plots.regression_figure``, ``plots.match_modes_figure``, ``plots.focal_curves_figure``,
``plots.box_loss_figure``) are tested at the end.
"""
from __future__ import annotations

import re
import warnings
from pathlib import Path
from types import SimpleNamespace

import nbformat
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ssd_lesson import FORCED_OVERLAP, classification_loss, loss_gradients, make_anchors, regression_loss, ssd_loss
from ssd_lesson.drawing import plots, tables
from ssd_lesson.drawing.placement import legibility
from ssd_lesson.data.voc import BACKGROUND, VOC_CLASSES
from ssd_lesson.course.lesson import example_activations, load_example

from tests.helpers import boxes_in, checks_output, opens_with_the_kit, stdout, synthetic_case, tagged

# Not the unit tier: the notebooks' numbers are recomputed with the lesson's model (fastai's body).
pytestmark = pytest.mark.fastai

NB_DIR = Path(__file__).resolve().parents[2] / "notebooks"
NOTEBOOKS = {6: "06_classification_loss.ipynb", 7: "07_regression_loss.ipynb", 8: "08_ssd_loss.ipynb",
             11: "11_matching_variants.ipynb"}
PATHS = re.compile(r"(/[\w.\-+]+)+/(ssd_lesson|data|notebooks)/")  # as tests/notebooks/nbval_sanitize.cfg
FLOAT = re.compile(r"-?\d+\.\d+")


def read(n: int) -> nbformat.NotebookNode:
    return nbformat.read(NB_DIR / NOTEBOOKS[n], as_version=4)




def lines(nb: nbformat.NotebookNode, tag: str) -> list[str]:
    return stdout(tagged(nb, tag)).splitlines()


def floats(line: str) -> list[float]:
    return [float(v) for v in FLOAT.findall(line)]


def ints_in_brackets(line: str) -> list[int]:
    """``[15, 26, 31]`` at the end of a line."""
    inside = line[line.rindex("[") + 1: line.rindex("]")]
    return [int(v) for v in inside.split(",")] if inside.strip() else []


def shown(value: float) -> float:
    """A number as a notebook prints it (4 decimals)."""
    return float(f"{value:.4f}")


def approx4(value) -> object:
    """The printed number must be exactly the library's, rounded as printed."""
    return pytest.approx(shown(float(value)), abs=1e-9)


def near4(value) -> object:
    """For a number the notebook computes another way (e.g. the explicit one-hot BCE): one unit of the last digit."""
    return pytest.approx(shown(float(value)), abs=1.01e-4)


@pytest.fixture(scope="module")
def case():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Pascal VOC not found": the embedded example is the point
        ex = load_example()
    anchors = make_anchors()
    cl, ba, source = example_activations(ex, anchors, verbose=False)
    _, gb, gl = ex.batch()
    res = {mode: ssd_loss(cl, ba, gb, gl, anchors, match_on=mode) for mode in ("predictions", "anchors")}
    return SimpleNamespace(ex=ex, anchors=anchors, cl=cl, ba=ba, gb=gb, gl=gl, source=source, res=res,
                           pred=res["predictions"], pos=res["predictions"].match.positive[0].nonzero().flatten().tolist())


# ---------------------------------------------------------------- shape of every notebook
@pytest.mark.parametrize("n", NOTEBOOKS)
def test_notebook_is_executed_and_follows_the_series_layout(n):
    path = NB_DIR / NOTEBOOKS[n]
    assert path.stat().st_size < 3_000_000
    nb = read(n)
    assert nb.metadata.kernelspec.name == "python3"
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith(f"# {n:02d} · ")
    assert nb.cells[-1].cell_type == "markdown" and "## What's next" in nb.cells[-1].source
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert opens_with_the_kit(nb), code[0].source
    for c in code:
        assert c.execution_count is not None, f"cell not executed: {c.source[:60]!r}"
        assert not [o for o in c.outputs if o.output_type == "error"], c.source[:60]
        assert not [o for o in c.outputs if o.output_type == "stream" and o.name == "stderr"], c.source[:60]
    checked = [c for c in code if checks_output(c)]
    assert len(checked) >= 3
    for c in checked:  # plain printed text only: no HTML reprs, nothing volatile
        assert all(o.output_type == "stream" for o in c.outputs) and stdout(c)
        assert not PATHS.search(stdout(c)) and not re.search(r"0x[0-9a-f]{6,}", stdout(c))
    figs = [c for c in code if any(t.startswith("fig-") for t in c.metadata.get("tags", []))]
    assert figs and all(any(k.startswith("image/") for o in c.outputs for k in o.get("data", {})) for c in figs)


@pytest.mark.parametrize("n", NOTEBOOKS)
def test_notebook_ran_on_the_example_and_activations_the_library_gives_now(n, case):
    example_line, activation_line = lines(read(n), "example")[:2]
    if example_line != case.ex.source:  # Pascal VOC is on one machine and not the other
        pytest.skip(f"notebook {n} was executed on another example ({example_line!r}); re-execute it here")
    assert PATHS.sub(r"PATH/\2/", activation_line) == PATHS.sub(r"PATH/\2/", case.source), (
        "the activations changed (a checkpoint was added or removed): re-execute the notebooks")


# ---------------------------------------------------------------- notebook 6: the classification loss
def test_nb06_targets_and_one_hot_rows(case):
    nb, res = read(6), case.pred
    target, positive = res.target_labels[0], res.match.positive[0]
    out = lines(nb, "targets")
    assert out[0].startswith(f"{len(case.pos)} of 189 boxes have an object class; the other {189 - len(case.pos)}")
    assert [int(l.split(":")[0].split()[1]) for l in out[1:]] == case.pos
    assert [l.split(": ")[1].split(" (")[0] for l in out[1:]] == [VOC_CLASSES[int(target[a])] for a in case.pos]

    out = lines(nb, "one-hot")
    boxes = [int(v) for v in out[0].split()[1:]]
    assert [bool(positive[a]) for a in boxes] == [True, True, False, False]
    expected = F.one_hot(target[boxes], 21)[:, :20]  # the lesson's targets, built independently
    assert out[1].split()[1:] == [VOC_CLASSES[int(target[a])] if positive[a] else "background" for a in boxes]
    rows = {l.split()[0]: [int(v) for v in l.split()[1:]] for l in out[2:]}
    assert list(rows) == list(VOC_CLASSES)
    assert np.array_equal(np.array(list(rows.values())).T, expected.numpy())


def test_nb06_bce_check_and_shares(case):
    nb, res = read(6), case.pred
    out = lines(nb, "bce-check")
    assert floats(out[0])[0] == near4(res.classification[0])  # the explicit computation
    assert [floats(l)[0] for l in out[1:3]] == [approx4(res.classification[0])] * 2
    assert out[3].endswith("True")
    per_box = classification_loss(case.cl[0].unsqueeze(1), res.target_labels[0].unsqueeze(1)).double()
    positive = res.match.positive[0]
    out = lines(nb, "shares")
    assert floats(out[0])[0] == approx4(res.classification[0])
    assert floats(out[1])[-1] == approx4(per_box[positive].sum())
    assert floats(out[2])[-1] == approx4(per_box[~positive].sum())


def test_nb06_softmax_and_focal_values(case):
    nb, res = read(6), case.pred
    ce = F.cross_entropy(case.cl[0], res.target_labels[0], reduction="none")
    out = lines(nb, "softmax")
    assert [floats(l)[0] for l in out] == [approx4(ce.sum()), approx4(ce.mean()), approx4(res.classification[0])]
    focal = [classification_loss(case.cl, res.target_labels, focal=True, gamma=g)[0] for g in (1.0, 2.0)]
    out = lines(nb, "focal")
    assert [floats(l)[-1] for l in out] == [approx4(v) for v in (res.classification[0], *focal, focal[1])]
    assert "gamma 1" in out[1] and "gamma 2" in out[2]


# ---------------------------------------------------------------- notebook 7: Table 4
def test_nb07_positives_and_table4_rows(case):
    nb, res = read(7), case.pred
    out = lines(nb, "positives")
    forced = (res.match.gt_overlap[0] == FORCED_OVERLAP).nonzero().flatten().tolist()
    assert out[0].startswith(f"positive boxes: {len(case.pos)} of 189") and ints_in_brackets(out[0]) == case.pos
    assert ints_in_brackets(out[1]) == forced
    assert ints_in_brackets(out[2]) == [a for a in case.pos if a not in forced]

    out = "".join(o.data["text/plain"] for o in tagged(nb, "table4").outputs
                  if o.output_type == "execute_result").splitlines()  # the table the cell shows, as plain text
    assert out[0].split() == ["gtbbox", "pbbox"] and out[1].split() == ["y0", "x0", "y1", "x1"] * 2 + ["gt_idx", "MAE"]
    rows = [l.split() for l in out[3:]]
    assert [int(r[0]) for r in rows] == case.pos  # exactly the positives, in box order
    gt, pr = res.target_boxes[0, case.pos].double(), res.pred_boxes[0, case.pos].detach().double()
    for r, g, p, a in zip(rows, gt, pr, case.pos):
        assert [float(v) for v in r[1:5]] == [approx4(v) for v in g]
        assert [float(v) for v in r[5:9]] == [approx4(v) for v in p]
        assert int(r[9]) == int(res.match.gt_idx[0, a])
        assert float(r[10]) == approx4((p - g).abs().mean())


def test_nb07_mae_example_and_totals(case):
    nb, res = read(7), case.pred
    out = lines(nb, "mae-example")
    a = case.pos[0]
    diffs = (res.pred_boxes[0, a].detach().double() - res.target_boxes[0, a].double()).abs()
    assert out[0].startswith(f"box {a}:") and floats(out[0]) == [approx4(d) for d in diffs]
    assert floats(out[1])[-2:] == [approx4(diffs.mean())] * 2

    args = (res.pred_boxes.detach(), res.target_boxes, res.match.positive)
    mean, total = regression_loss(*args, reduction="mean")[0], regression_loss(*args, reduction="sum")[0]
    assert mean == pytest.approx(float(res.regression[0]))
    out = lines(nb, "totals")
    assert out[0].startswith("mean (lesson code)") and floats(out[0])[0] == approx4(mean)
    assert out[1].startswith("sum (article wording)") and floats(out[1])[0] == approx4(total)
    assert floats(out[2])[0] == pytest.approx(len(case.pos), abs=1e-4) and f"({len(case.pos)})" in out[2]
    assert [floats(l)[-1] for l in out[3:5]] == [approx4(mean), approx4(total)]


# ---------------------------------------------------------------- notebook 8: the SSD loss and its gradient
def test_nb08_losses(case):
    nb, res = read(8), case.pred
    expected = tables.loss_table(res)
    out = lines(nb, "losses")
    for line, (name, value) in zip(out[:5], expected.items()):
        assert line.startswith(name) and floats(line)[-1] == approx4(value)
    assert floats(out[6]) == [approx4(res.total), approx4(res.classification[0]), approx4(res.regression[0])]
    article = ssd_loss(case.cl, case.ba, case.gb, case.gl, case.anchors, regression_reduction="sum")
    assert floats(out[7])[-1] == approx4(article.total)
    assert res.total.item() == pytest.approx(float(res.classification[0] + res.regression[0]))


def test_nb08_backward_and_gradient_checks(case):
    nb = read(8)
    out = lines(nb, "backward")
    assert out[1].endswith("True") and ints_in_brackets(out[2]) == case.pos
    assert out[3].endswith("True") and out[4].endswith("True")
    # the same facts, from the library
    cl, ba = case.cl.clone().requires_grad_(), case.ba.clone().requires_grad_()
    res = ssd_loss(cl, ba, case.gb, case.gl, case.anchors)
    box_grad, logit_grad = loss_gradients(res, cl)
    res.total.backward()
    assert (cl.grad[0, :, BACKGROUND] == 0).all()
    assert (ba.grad[0].abs().sum(-1) > 0).nonzero().flatten().tolist() == case.pos
    n = len(case.pos)
    out = lines(nb, "gradient-check")
    assert f"1/(4 x {n}) = {1 / (4 * n):.4f}: True" in out[0]
    assert all(l.endswith("True") for l in out[1:3])
    assert torch.allclose(box_grad[res.match.positive[0]].abs(), torch.tensor(1 / (4 * n)))
    assert out[3].startswith(f"logits pushed up (negative gradient): {int((logit_grad < 0).sum())}, the {n} ")


# ---------------------------------------------------------------- notebook 11: matching variants
def test_nb11_table2_both_ways(case):
    nb = read(11)
    out = lines(nb, "table2-both")
    assert out[0].split() == ["predictions", "anchors"]
    rows = [l.split() for l in out[3:]]
    assert [int(r[0]) for r in rows] == list(range(30))
    for mode, cols in (("predictions", slice(1, 4)), ("anchors", slice(4, 7))):
        m = case.res[mode].match
        for r in rows:
            a = int(r[0])
            idx, ov, pos = r[cols]
            assert int(idx) == int(m.gt_idx[0, a]) and float(ov) == approx4(m.gt_overlap[0, a])
            assert pos == str(bool(m.positive[0, a]))


def test_nb11_differences_positives_and_losses(case):
    nb = read(11)
    mp, ma = case.res["predictions"].match, case.res["anchors"].match
    out = lines(nb, "differences")
    assert out[0].startswith(f"gt_idx differs on {int((mp.gt_idx != ma.gt_idx).sum())} of 189")
    assert out[1].startswith(f"positive differs on {int((mp.positive != ma.positive).sum())} of 189")
    forced = {k: (m.gt_overlap[0] == FORCED_OVERLAP).nonzero().flatten().tolist() for k, m in (("p", mp), ("a", ma))}
    assert out[2] == f"forced matches (1.99): predictions {forced['p']}, anchors {forced['a']}"

    out = lines(nb, "positives")
    for line, mode in zip(out, ("predictions", "anchors")):
        pos = case.res[mode].match.positive[0].nonzero().flatten().tolist()
        assert line.startswith(f"match_on={mode!r}: {len(pos)} positives") and ints_in_brackets(line) == pos
    both = (mp.positive[0] & ma.positive[0]).nonzero().flatten().tolist()
    assert ints_in_brackets(out[2]) == both

    out = lines(nb, "losses")
    assert out[0].split() == ["predictions", "anchors"]
    expected = {mode: tables.loss_table(r) for mode, r in case.res.items()}
    for line, name in zip(out[1:], expected["predictions"].index):
        assert line.startswith(name)
        assert floats(line)[-2:] == [approx4(expected["predictions"][name]), approx4(expected["anchors"][name])]


# ---------------------------------------------------------------- the library helpers these notebooks use
@pytest.fixture(scope="module")
def synth():
    return synthetic_case()


def drawn(ax, prefix):
    """:func:`boxes_in`, keyed by the box index after ``prefix``."""
    return {int(gid[len(prefix):]): box for gid, box in boxes_in(ax, prefix).items()}


def test_one_hot_table_is_the_lessons_targets(synth):
    res = synth.res
    t = tables.one_hot_table(res, [0, 5, 10])
    hot = F.one_hot(res.target_labels[0, [0, 5, 10]], 21)[:, :20].numpy()
    assert list(t.columns) == ["target", *VOC_CLASSES] and np.array_equal(t[list(VOC_CLASSES)].to_numpy(), hot)
    pos = res.match.positive[0].nonzero().flatten().tolist()
    t = tables.one_hot_table(res, pos + [int((~res.match.positive[0]).nonzero()[0])])
    assert t.iloc[-1]["target"] == "background" and t.iloc[-1][list(VOC_CLASSES)].sum() == 0
    assert (t.iloc[:-1][list(VOC_CLASSES)].sum(axis=1) == 1).all()


def test_box_class_losses_add_up_to_the_loss(synth):
    res, cl = synth.res, synth.cl
    t = tables.box_class_losses(cl, res, gammas=(1.0, 2.0))
    assert list(t.columns) == ["target", "positive", "BCE", "focal gamma=1", "focal gamma=2"] and len(t) == 189
    assert t["BCE"].sum() == pytest.approx(float(res.classification[0]), rel=1e-5)
    for g in (1.0, 2.0):
        total = classification_loss(cl, res.target_labels, focal=True, gamma=g)[0]
        assert t[f"focal gamma={g:g}"].sum() == pytest.approx(float(total), rel=1e-5)
    assert t["positive"].tolist() == res.match.positive[0].tolist()


def test_match_modes_figure_shows_each_modes_positives(synth):
    res, other, anchors = synth.res, synth.by_anchors, synth.anchors
    fig = plots.match_modes_figure(synth.ex, anchors, res, other, per_object=len(anchors))  # every positive
    rows = np.array(fig.axes).reshape(-1, 3)  # a row per object: left, middle, right
    objects = sorted({int(r.match.gt_idx[0, a]) for r in (res, other) for a in r.match.positive[0].nonzero().flatten()})
    assert len(rows) == len(objects)
    assert [ax.get_ylabel() for ax in rows[:, 0]] == [f"{g}: {VOC_CLASSES[int(synth.ex.labels[g])]}" for g in objects]
    for (left, mid, right), g in zip(rows, objects):
        mine = lambda r: [a for a in r.match.positive[0].nonzero().flatten().tolist() if int(r.match.gt_idx[0, a]) == g]
        assert sorted(drawn(left, "box:")) == mine(res)  # only the row's object's positives
        assert sorted(drawn(mid, "box:")) == sorted(drawn(right, "box:")) == mine(other)
        for ax in (left, mid, right):
            np.testing.assert_allclose(drawn(ax, "gt:")[g], synth.ex.boxes[g], atol=1e-6)  # its band, and no other
            assert list(drawn(ax, "gt:")) == [g]
            assert sorted(t.get_text() for t in ax.texts) == sorted(str(a) for a in drawn(ax, "box:"))  # each box named
        for a in mine(other):
            np.testing.assert_allclose(drawn(mid, "box:")[a], anchors.corners[a].numpy(), atol=1e-6)
            np.testing.assert_allclose(drawn(right, "box:")[a], other.pred_boxes[0, a].detach().numpy(), atol=1e-6)
        assert left.get_xlabel().startswith(f"{len(mine(res))} positive")
    pos_p, pos_a = int(res.match.positive[0].sum()), int(other.match.positive[0].sum())
    assert f"{pos_p} positives" in rows[0, 0].get_title() and f"{pos_a} positives" in rows[0, 1].get_title()
    few = np.array(plots.match_modes_figure(synth.ex, anchors, res, other, per_object=1).axes).reshape(-1, 3)
    for col, r in enumerate((res, other, other)):  # one per object: its best
        pos, gt_idx, overlap = r.match.positive[0], r.match.gt_idx[0], r.match.gt_overlap[0]
        best = {int(g): max((a for a in pos.nonzero().flatten().tolist() if gt_idx[a] == g), key=lambda a: float(overlap[a]))
                for g in gt_idx[pos].unique()}
        assert sorted(a for ax in few[:, col] for a in drawn(ax, "box:")) == sorted(best.values())
    colours = lambda ax: {int(p.get_gid()[4:]): p.get_edgecolor() for p in ax.patches if (p.get_gid() or "").startswith("box:")}
    fig = plots.match_modes_figure(synth.ex, anchors, res, other)
    for left, mid, right in np.array(fig.axes).reshape(-1, 3):
        assert colours(right) == colours(mid)  # a box keeps its colour across its row
        row = {**colours(left), **colours(mid)}
        assert len(set(row.values())) == len(row)  # and no two of the row's boxes share one
    assert not legibility(fig)["overlaps"]  # drawn (labels placed): none overlaps another,
    moved = [ln for ax in fig.axes for ln in ax.lines if ln.get_gid() == "leader" and ln.get_visible()]
    assert not moved  # and each touches its own box: no label was moved away on a leader line


def test_focal_curves_follow_the_formula():
    alpha = 0.25
    fig = plots.focal_curves_figure(gammas=(1.0, 2.0), alpha=alpha)
    for ax, target in zip(fig.axes, (1, 0)):
        bce, g1, g2 = ax.lines
        p = bce.get_xdata()
        pt = p if target == 1 else 1 - p
        np.testing.assert_allclose(bce.get_ydata(), -np.log(pt), rtol=1e-5)
        a = alpha if target == 1 else 1 - alpha
        np.testing.assert_allclose(g1.get_ydata(), a * (1 - pt) * -np.log(pt), rtol=1e-5)
        np.testing.assert_allclose(g2.get_ydata(), a * (1 - pt) ** 2 * -np.log(pt), rtol=1e-5)


def test_box_loss_figure_bars_are_the_losses(synth):
    res, anchors = synth.res, synth.anchors
    v = np.linspace(0, 1, 189)
    fig = plots.box_loss_figure(anchors, {"a": v, "b": 2 * v}, res.match.positive[0])
    for ax, scale, name in zip(fig.axes, (1, 2), "ab"):
        heights = [p.get_height() for p in ax.patches if p.get_gid() == f"loss:{name}"] or \
                  [p.get_height() for c in ax.containers for p in c]
        np.testing.assert_allclose(heights, scale * v)
        assert ax.get_title(loc="left") == f"{name}: sum {scale * v.sum():.4f}"
