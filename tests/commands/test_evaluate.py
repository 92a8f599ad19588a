"""``python -m ssd_lesson evaluate``: wrong options and missing data give one ``error:`` line and exit 2
(no traceback); a real run on a tiny collage set prints and writes the numbers voc_ap and torchmetrics
give on the same detections."""
from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from tests.in_process import run_main

ROOT = Path(__file__).resolve().parents[2]


def cli(*args, env=None, cwd=None):
    """``python -m ssd_lesson evaluate *args``, in this process (tests/in_process.py)."""
    return run_main("evaluate", *args, env=env, cwd=cwd or ROOT)


@pytest.fixture(scope="module")
def collage(tmp_path_factory):
    from ssd_lesson.data.collage import collage_records

    root = tmp_path_factory.mktemp("collage")
    _, valid, _ = collage_records(20, 0, root, photos="held_out")  # what evaluate scores the shipped checkpoint on
    return root, valid


@pytest.mark.parametrize("args, message", [
    (["--data", "nope"], "error: argument --data: invalid choice: 'nope'"),
    (["--n-images", "many"], "error: argument --n-images: expected an integer, got 'many'"),
    (["--bogus"], "error: unrecognized arguments: --bogus"),
    (["--n-images", "2"], "error: argument --n-images: must be at least 5, got 2"),
    (["--seed", "-1"], "error: argument --seed: must be at least 0, got -1"),
    (["--hit-iou", "1.5"], "error: argument --hit-iou: must be in [0, 1), got 1.5"),
    (["--iou-threshold", "0.5"], "error: unrecognized arguments: --iou-threshold 0.5"),  # matching's, not evaluation's
    (["--nms-iou", "2"], "error: argument --nms-iou: must be in [0, 1], got 2"),
    (["--max-per-image", "0"], "error: argument --max-per-image: must be at least 1, got 0"),
    (["--score-threshold", "nan"], "error: argument --score-threshold: must be a finite number, got 'nan'"),
    (["--batch-size", "0"], "error: argument --batch-size: must be at least 1, got 0"),
    (["--data", "voc", "--seed", "3"], "error: argument --n-images/--seed/--photos: only for --data collage"),
    (["--data", "voc", "--photos", "held_out"], "error: argument --n-images/--seed/--photos: only for --data collage"),
    (["--photos", "unseen"], "error: argument --photos: invalid choice: 'unseen'"),
    (["--checkpoint", "no/such.pth"], "error: no/such.pth: no such checkpoint"),
    (["--csv", "no/such/folder/t.csv"], "error: argument --csv: the folder no/such/folder does not exist"),
    (["--csv", "tests"], "error: argument --csv: tests is a folder; give a file name"),
])
def test_wrong_options_one_error_line_exit_2(args, message):
    r = cli(*args)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and r.stderr.startswith(message), r.stderr
    assert "Traceback" not in r.stderr + r.stdout and r.stdout == ""


@pytest.mark.fastai  # evaluate, in this process, loads fastai
def test_missing_voc_one_error_line_exit_2(tmp_path):
    r = cli("--data", "voc", "--data-dir", tmp_path / "nothing here",
            env={"SSD_LESSON_VOC": "", "FASTAI_HOME": str(tmp_path / "fastai")})
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: Pascal VOC 2007 not found in {tmp_path / 'nothing here'} (the path you gave)") and "--data collage" in lines[0]
    assert "Traceback" not in r.stderr and r.stdout == ""


def test_not_a_checkpoint_and_existing_csv(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    r = cli("--checkpoint", bad)
    assert r.returncode == 2 and r.stderr.startswith(f"error: {bad}: cannot load the checkpoint") and len(r.stderr.strip().splitlines()) == 1
    existing = tmp_path / "t.csv"
    existing.write_text("keep me\n")
    r = cli("--csv", existing)
    assert r.returncode == 1 and r.stderr.strip() == f"error: {existing} exists; pass --force to overwrite it, or choose another --csv"
    assert existing.read_text() == "keep me\n" and "Traceback" not in r.stderr


@pytest.mark.fastai  # evaluate, in this process, loads fastai
def test_real_run_prints_and_writes_voc_ap_and_torchmetrics_numbers(collage, tmp_path):
    from ssd_lesson.data.voc import VOC_CLASSES
    from ssd_lesson.model.checkpoint import find_checkpoint, load_checkpoint
    from ssd_lesson.model.evaluate import evaluate_detections
    from ssd_lesson.model.metrics import coco_ap_per_class

    root, valid = collage
    out = tmp_path / "table.csv"
    out.write_text("an old table\n")  # --force overwrites it
    r = cli("--data", "collage", "--data-dir", root, "--n-images", 20, "--seed", 0, "--device", "cpu", "--csv", out, "--force")
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and "100.00% [4/4" in r.stderr  # the progress bar, over the 4 images
    assert r.stdout.splitlines()[0] == (f"checkpoint {find_checkpoint()}; collage set {Path(root) / 'collage-n20-seed0-held_out-photos'} "
                                        "(20 images, seed 0, held_out photos; photographs kept out of its training), "
                                        f"split val: {len(valid)} images")  # the shipped one, on photos it never saw
    model = load_checkpoint(find_checkpoint())
    ev = evaluate_detections(model, valid, progress=False)  # with the decode options its record holds
    assert r.stdout.splitlines()[1] == "trained with the loss: " + model.record.loss_options.describe()
    n_det = sum(len(p["labels"]) for p in ev.preds)
    assert r.stdout.splitlines()[2].startswith(f"{n_det} detections (score > 0.05, NMS at IoU 0.5, at most 100 per image)")
    v07, vall = ev.voc(), ev.voc(use_07_metric=False)
    coco, coco_mean = coco_ap_per_class(ev.preds, ev.targets)
    assert sum(len(p["labels"]) for p in ev.preds) > 0 and 0 < v07.map < 1

    rows = list(csv.DictReader(out.open()))
    assert [row["class"] for row in rows] == list(VOC_CLASSES) + ["mean"]
    num = lambda s: math.nan if s == "" else float(s)  # noqa: E731
    for c, row in enumerate(rows[:-1]):
        assert int(row["gt_boxes"]) == int(v07.n_positives[c]) and int(row["difficult"]) == 0
        for key, want in (("ap_voc07", v07.ap[c]), ("ap_all_point", vall.ap[c]), ("ap_coco50", coco[c])):
            got, want = num(row[key]), float(want)
            assert (math.isnan(got) and math.isnan(want)) or got == pytest.approx(want, abs=1e-9), (row["class"], key)
    mean = rows[-1]
    assert float(mean["ap_voc07"]) == pytest.approx(v07.map, abs=1e-12)
    assert float(mean["ap_all_point"]) == pytest.approx(vall.map, abs=1e-12)
    assert float(mean["ap_coco50"]) == pytest.approx(coco_mean, abs=1e-9)
    assert int(mean["gt_boxes"]) == sum(len(rec.labels) for rec in valid)

    # the printed table: the same numbers to 4 decimals
    printed = {line.split()[0]: line.split() for line in r.stdout.splitlines()
               if line.split() and line.split()[0] in (*VOC_CLASSES, "mean")}
    assert len(printed) == 21
    for c, name in enumerate(VOC_CLASSES):
        cells = printed[name]
        assert int(cells[1]) == int(v07.n_positives[c])
        if int(v07.n_positives[c]) == 0:
            assert cells[3:] == ["-", "-", "-"]
        else:
            assert [float(x) for x in cells[3:]] == pytest.approx([float(v07.ap[c]), float(vall.ap[c]), float(coco[c])], abs=5e-5)
    assert [float(x) for x in printed["mean"][3:]] == pytest.approx([v07.map, vall.map, coco_mean], abs=5e-5)
    assert f"table written to {out}" in r.stdout


@pytest.mark.fastai  # evaluate, in this process, loads fastai
def test_voc_layout_with_a_difficult_object(collage, tmp_path):
    """The collage folder is in VOC's layout: as --data voc, with one object of a validation image marked
    difficult in its XML, the table counts it apart and scores as voc_ap does with that flag."""
    import shutil

    from ssd_lesson.data.voc import load_voc
    from ssd_lesson.model.checkpoint import find_checkpoint, load_checkpoint
    from ssd_lesson.model.evaluate import evaluate_detections

    root, _ = collage
    voc = tmp_path / "VOC2007"
    shutil.copytree(root / "collage-n20-seed0-held_out-photos", voc)
    first = (voc / "ImageSets" / "Main" / "val.txt").read_text().split()[0]
    xml = voc / "Annotations" / f"{first}.xml"
    xml.write_text(xml.read_text().replace("<difficult>0</difficult>", "<difficult>1</difficult>", 1))
    records = load_voc(voc, "val")
    assert sum(int(r.difficult.sum()) for r in records) == 1
    out = tmp_path / "voc.csv"
    r = cli("--data", "voc", "--data-dir", voc, "--split", "val", "--device", "cpu", "--csv", out)
    assert r.returncode == 0, r.stderr
    assert f"Pascal VOC 2007-val from {voc}: 4 images" in r.stdout
    ev = evaluate_detections(load_checkpoint(find_checkpoint()), records, progress=False)
    want = ev.table()
    rows = list(csv.DictReader(out.open()))
    c = int(records[0].labels[records[0].difficult][0])
    assert int(rows[c]["difficult"]) == 1 and int(rows[-1]["difficult"]) == 1
    for (_, w), row in zip(want.iterrows(), rows):
        assert int(row["gt_boxes"]) == w["gt_boxes"]
        for key in ("ap_voc07", "ap_all_point", "ap_coco50"):
            assert (row[key] == "" and math.isnan(w[key])) or float(row[key]) == pytest.approx(w[key], abs=1e-9)
    assert float(rows[-1]["ap_voc07"]) == pytest.approx(ev.voc().map, abs=1e-12)


@pytest.mark.fastai  # evaluate, in this process, loads fastai
def test_anchors_are_made_once_not_per_batch(collage, monkeypatch):
    """evaluate_detections makes the anchors once and hands them to predict, batch after batch."""
    from ssd_lesson.model import evaluate, infer
    from ssd_lesson.model.checkpoint import find_checkpoint, load_checkpoint

    made = []
    for module in (evaluate, infer):
        real = module.make_anchors
        monkeypatch.setattr(module, "make_anchors", lambda spec, real=real: made.append(spec) or real(spec))
    model = load_checkpoint(find_checkpoint())
    ev = evaluate.evaluate_detections(model, collage[1], batch_size=1, progress=False)  # 4 batches of one image
    assert len(ev.preds) == 4 and made == [model.spec]


def test_collage_data_follows_the_checkpoint_s_record(monkeypatch, tmp_path, capsys):
    """Size, seed and photographs of the default collage set are the checkpoint's; a --photos train one is
    scored on collages of the photographs kept out of its training, unless --photos trained asks otherwise."""
    import argparse

    from ssd_lesson.commands import evaluate as E
    from ssd_lesson.data import collage
    from ssd_lesson.model.checkpoint import CheckpointRecord, TrainingData

    asked = []
    monkeypatch.setattr(collage, "collage_records", lambda n, seed, root, **kw: asked.append((n, seed, kw)) or
                        ([], ["a record"], Path(root) / "set"))
    args = argparse.Namespace(data="collage", n_images=None, seed=None, split=None, data_dir=str(tmp_path), photos=None)
    held = CheckpointRecord(data=TrainingData("collage", "runs/x", 30, photos="train"), seed=2)
    records, what = E._records(args, held)
    assert records == ["a record"] and asked == [(30, 2, {"photos": "held_out"})]
    assert what == (f"collage set {tmp_path / 'set'} (30 images, seed 2, held_out photos; photographs kept out of its "
                    "training), split val")
    _, what = E._records(argparse.Namespace(**{**vars(args), "photos": "trained"}), held)
    assert asked[-1] == (30, 2, {"photos": "train"}) and what.endswith("(30 images, seed 2, train photos), split val")
    E._records(args, CheckpointRecord())  # nothing recorded: the default set, every photo
    assert asked[-1] == (1000, 0, {"photos": "all"})
    assert capsys.readouterr().err == ""
    _, what = E._records(argparse.Namespace(**{**vars(args), "photos": "held_out"}), CheckpointRecord())
    assert asked[-1] == (1000, 0, {"photos": "held_out"}) and "kept out" not in what
    assert "trained on those photographs too, so they are not held out of it" in capsys.readouterr().err


def test_the_command_line_s_decoding_and_hit_iou_reach_the_table(monkeypatch, capsys):
    """--score-threshold/--nms-iou/--max-per-image change the record's DecodeOptions field by field; --hit-iou
    is the EvalOptions the table is scored with: one detection at IoU 0.6 is a hit at 0.5, a miss at 0.7."""
    import torch

    from ssd_lesson import DecodeOptions, EvalOptions
    from ssd_lesson.commands import evaluate as E
    from ssd_lesson.data.voc import VOC_CLASSES
    from ssd_lesson.model import evaluate as model_evaluate
    from ssd_lesson.model.record import CheckpointRecord

    recorded = DecodeOptions(score_threshold=0.2, nms_iou=0.4, max_per_image=50)
    model = type("Model", (), {"class_names": VOC_CLASSES, "record": CheckpointRecord(decode_options=recorded)})()
    monkeypatch.setattr(E, "_load_model", lambda args: ("ckpt.pth", model))
    monkeypatch.setattr(E, "_records", lambda args, record: (["a record"], "one image"))
    used = []
    # ground truth 0..10 x 0..10; the detection 0..10 x 0..6 overlaps it by 60/100
    ev = model_evaluate.Evaluation([dict(boxes=torch.tensor([[0.0, 0, 10, 6]]), scores=torch.tensor([0.9]),
                                         labels=torch.tensor([0]))],
                                   [dict(boxes=torch.tensor([[0.0, 0, 10, 10]]), labels=torch.tensor([0]),
                                         difficult=torch.tensor([False]))], VOC_CLASSES)
    monkeypatch.setattr(model_evaluate, "evaluate_detections", lambda m, records, options, **kw: used.append(options) or ev)
    from ssd_lesson.commands.cli import run_command

    def mean_voc07(*argv):
        assert run_command(E.evaluate_main, list(argv)) == 0
        out = capsys.readouterr().out
        return out, float(next(line.split()[3] for line in out.splitlines() if line.startswith("mean")))

    out, ap = mean_voc07()
    assert used[-1] == recorded and ap == 1.0 and "hit IoU > 0.5 (VOC)" in out and EvalOptions().hit_iou == 0.5
    out, ap = mean_voc07("--hit-iou", "0.7", "--nms-iou", "0.3", "--max-per-image", "5")
    assert used[-1] == DecodeOptions(score_threshold=0.2, nms_iou=0.3, max_per_image=5) and ap == 0.0
    assert "hit IoU > 0.7 (VOC)" in out and "(score > 0.2, NMS at IoU 0.3, at most 5 per image)" in out


def test_a_train_photos_run_started_from_an_all_photos_checkpoint_keeps_nothing_out(monkeypatch, tmp_path, capsys):
    """``--photos train`` with ``--init`` from a checkpoint trained on every photograph: its start saw the held-out
    photographs, so evaluate never calls them "kept out" (and warns when asked for them, as for an all-photos
    checkpoint); notebook 10's helpers, asking the same record, agree."""
    import argparse

    from ssd_lesson.commands import evaluate as E
    from ssd_lesson.course import held_out as H
    from ssd_lesson.data import collage
    from ssd_lesson.model.record import CheckpointRecord, InitCheckpoint, TrainingData

    asked = []
    monkeypatch.setattr(collage, "collage_records", lambda n, seed, root, **kw: asked.append((n, seed, kw)) or
                        ([], ["a record"], Path(root) / "set"))
    everything = CheckpointRecord(command="python -m ssd_lesson train --photos all",
                                  data=TrainingData("collage", "runs/all", 30, 24, 6, photos="all"), seed=2)
    record = CheckpointRecord(command="python -m ssd_lesson train --photos train --init all.pth",
                              data=TrainingData("collage", "runs/train", 30, 24, 6, photos="train"), seed=2,
                              init=InitCheckpoint("all.pth", "0" * 64, everything))
    args = argparse.Namespace(data="collage", n_images=None, seed=None, split=None, data_dir=str(tmp_path), photos=None)
    _, what = E._records(args, record)  # the default: its own validation collages, not "held out" ones
    assert asked[-1] == (30, 2, {"photos": "train"}) and "kept out" not in what
    assert what == f"collage set {tmp_path / 'set'} (30 images, seed 2, train photos), split val"
    assert capsys.readouterr().err == ""
    _, what = E._records(argparse.Namespace(**{**vars(args), "photos": "held_out"}), record)
    assert asked[-1] == (30, 2, {"photos": "held_out"}) and "kept out" not in what
    assert "trained on those photographs too, so they are not held out of it" in capsys.readouterr().err

    class Loaded:  # what notebook 10's helpers read of a loaded model
        body_name = "tiny"

    model = Loaded()
    model.record = record
    assert H.photos_seen(model) == collage.photo_set("all") and H._kept_out(model) == []
    assert H.checkpoint_summary(model).splitlines()[-1] == (
        f"photos its training objects were cut from: {', '.join(collage.photo_set('all'))}; kept out of training: none")
    with pytest.raises(ValueError, match="no photograph was kept out of this model's training"):
        H.memory_table(model)
    # the same run started from a --photos train checkpoint keeps them out, for both
    model.record = record.replace(init=InitCheckpoint("train.pth", "0" * 64, everything.replace(
        data=TrainingData("collage", "runs/train", 30, 24, 6, photos="train"))))
    _, what = E._records(args, model.record)
    assert asked[-1] == (30, 2, {"photos": "held_out"}) and what.endswith("photographs kept out of its training), split val")
    assert H._kept_out(model) == list(collage.HELD_OUT_PHOTOS)


@pytest.mark.fastai  # evaluate, in this process, loads fastai
@pytest.mark.parametrize("tree, split, says", [
    ("both", "2012-val", "Pascal VOC 2012-val from {root}/VOCdevkit/VOC2012: 2 images"),
    ("fastai", "12-val", "Pascal VOC 2012-val from {root}/pascal_2012: 2 images"),
    ("both", "val", "Pascal VOC 2007-val from {root}/VOCdevkit/VOC2007: 2 images"),
])
def test_voc_sets_of_either_year_are_scored(voc_trees, split, tree, says):
    root = voc_trees / tree
    r = cli("--data", "voc", "--data-dir", root, "--split", split, "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert says.format(root=root) in r.stdout


@pytest.mark.parametrize("tree, split, says", [
    ("both", "2012-test", "error: --split: 2012-test: VOC2012's test annotations are not public"),
    ("both", "2012-tset", "error: --split: '2012-tset' is not a Pascal VOC set"),
    ("only12", "2007-test", "error: Pascal VOC 2007 not found in {root} (the path you gave); found VOC2012 (train 3, "
                            "val 2, trainval 5 images)"),
    ("no_test", "test", "error: --split 2007-test: VOC2007 (train 3, val 2, trainval 5 images) in"),
])
def test_a_voc_set_that_is_not_there_is_one_line(voc_trees, tree, split, says):
    root = voc_trees / tree
    r = cli("--data", "voc", "--data-dir", root, "--split", split, "--device", "cpu")
    assert r.returncode == 2 and r.stdout == "" and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith(says.format(root=root)), r.stderr


def test_a_collage_split_is_one_of_four():
    r = cli("--split", "2007-test")
    assert (r.returncode, r.stderr) == (2, "error: --split 2007-test: a collage set has the splits train, val, trainval "
                                           "and test\n")


@pytest.mark.fastai  # evaluate, in this process, loads fastai
def test_scoring_a_voc_set_the_checkpoint_trained_on_is_warned(voc_trees, tmp_path):
    """As --photos held_out warns for collages: a 07+12 model scored on 2012-val is scored on its own training images."""
    from ssd_lesson.model.checkpoint import find_checkpoint, load_checkpoint, save_checkpoint
    from ssd_lesson.model.record import TrainingData

    model = load_checkpoint(find_checkpoint())
    voc = TrainingData("voc", None, None, 10, 2, None, ("2007-trainval", "2012-trainval"), "2007-test")
    path = tmp_path / "voc.pth"
    save_checkpoint(model, path, record=model.record.replace(path=None, data=voc))
    root = voc_trees / "both"
    r = cli("--checkpoint", path, "--data", "voc", "--data-dir", root, "--split", "2012-val", "--device", "cpu")
    assert r.returncode == 0 and r.stderr.startswith("warning: --split 2012-val: this checkpoint trained on 2012-trainval, "
                                                     "which shares its images; its AP here is not a held-out score\n")
    r = cli("--checkpoint", path, "--data", "voc", "--data-dir", root, "--split", "2007-test", "--device", "cpu")
    assert r.returncode == 0 and "warning" not in r.stderr and "2007-test from" in r.stdout, r.stderr
