"""``train --data voc`` with VOC 2007 and 2012: the sets by name, their refusals in one line before torch is
imported, what it says about a 2012-only folder, --download's failure without network, and one short run on
07+12 whose checkpoint records the sets (on the small trees of tests/conftest.py's voc_trees)."""
from __future__ import annotations

import shlex
import sys

import pytest

from ssd_lesson.commands.cli import run_command
from ssd_lesson.commands.train import train_main

from tests.in_process import run_main


def test_a_2012_only_folder_is_named_and_the_2012_spelling_offered(voc_trees, tmp_path):
    only = voc_trees / "only12"
    r = run_main("train", "--data", "voc", "--data-dir", only, "--out", tmp_path / "m.pth", cwd=tmp_path)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert lines[0] == (f"error: Pascal VOC 2007 not found in {only} (the path you gave); found VOC2012 (train 3, val 2, "
                        f"trainval 5 images) in {only / 'VOCdevkit/VOC2012'}")
    assert lines[-2:] == ["Or train on what is here: --train-sets 2012-train --valid-set 2012-val",
                          "Or train offline with --data collage."]
    assert not (tmp_path / "m.pth").exists()


@pytest.mark.parametrize("argv, says", [
    (["--train-sets", "2007-trainval,2012-tset"], "error: --train-sets: '2012-tset' is not a Pascal VOC set; write "
                                                  "YEAR-SPLIT"),
    (["--train-sets", "07+12", "--valid-set", "2012-test"], "error: --valid-set: 2012-test: VOC2012's test annotations "
                                                            "are not public"),
    (["--train-sets", "07+12"], "error: --valid-set 2007-val (the default) shares images with --train-sets "
                                "2007-trainval: validating on training images measures memory"),
    (["--train-sets", "2007-trainval", "--valid-set", "2007-test"], "error: --valid-set 2007-test: VOC2007 (train 3, "
                                                                    "val 2, trainval 5 images) in"),
])
def test_wrong_sets_are_one_line_before_torch_is_imported(voc_trees, monkeypatch, capsys, argv, says):
    monkeypatch.setitem(sys.modules, "torch", None)  # importing torch now fails: it must not be needed
    data = voc_trees / ("no_test" if "2007-test" in argv else "both")
    assert run_command(train_main, ["--data", "voc", "--data-dir", str(data), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(says) and err.count("\n") == 1, err


def test_voc_options_are_refused_with_collages(tmp_path):
    for argv in (["--train-sets", "07+12"], ["--valid-set", "2007-test"], ["--download"]):
        r = run_main("train", *argv, "--out", tmp_path / "m.pth", cwd=tmp_path)
        assert (r.returncode, r.stderr) == (2, "error: --train-sets, --valid-set and --download are for --data voc\n")


@pytest.mark.fastai  # imports fastai's untar_data
def test_download_without_network_is_one_line(tmp_path, monkeypatch):
    import fastai.data.external as fe

    def offline(url, *a, **k):
        raise OSError(f"[Errno -3] Temporary failure in name resolution: {url}\n  (and a long traceback)")

    monkeypatch.setattr(fe, "untar_data", offline)
    r = run_main("train", "--data", "voc", "--data-dir", tmp_path / "data", "--train-sets", "07+12", "--valid-set",
                 "2007-test", "--download", "--out", tmp_path / "m.pth", cwd=tmp_path)
    url = "https://s3.amazonaws.com/fast-ai-imagelocal/pascal_2007.tgz"
    assert (r.returncode, r.stderr) == (2, f"error: --download: fetching Pascal VOC 2007 ({url}) failed: OSError: [Errno -3] "
                                           f"Temporary failure in name resolution: {url}\n")


@pytest.mark.fastai  # imports fastai's untar_data
def test_an_existing_out_is_refused_before_anything_is_downloaded(tmp_path, monkeypatch):
    import fastai.data.external as fe

    fetched = []
    monkeypatch.setattr(fe, "untar_data", lambda url, *a, **k: fetched.append(url))
    (tmp_path / "m.pth").write_bytes(b"a model of the learner's")
    r = run_main("train", "--data", "voc", "--data-dir", tmp_path / "data", "--train-sets", "07+12", "--valid-set",
                 "2007-test", "--download", "--out", tmp_path / "m.pth", cwd=tmp_path)
    assert (r.returncode, r.stderr) == (1, f"error: {tmp_path / 'm.pth'} exists; pass --force to overwrite it, or "
                                           "choose another --out\n")
    assert fetched == [] and (tmp_path / "m.pth").read_bytes() == b"a model of the learner's"


@pytest.mark.slow
def test_training_on_07_12_records_the_sets(voc_trees, tmp_path):
    from ssd_lesson.commands.train import _parse
    from ssd_lesson.model.checkpoint import load_checkpoint

    out, both = tmp_path / "m.pth", voc_trees / "both"
    r = run_main("train", "--data", "voc", "--data-dir", both, "--train-sets", "07+12", "--valid-set", "2007-test",
                 "--epochs", "1", "--body", "tiny", "--n-hidden", "16", "--bs", "2", "--no-pretrained", "--out", out,
                 cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    vocdevkit = both / "VOCdevkit"
    assert r.stdout.splitlines()[0] == (f"Pascal VOC: train 2007-trainval (5 images) + 2012-trainval (5), valid 2007-test "
                                        f"(1); VOC2007 from {vocdevkit / 'VOC2007'}, VOC2012 from {vocdevkit / 'VOC2012'}")
    assert r.stdout.splitlines()[1].startswith("voc: 10 train / 1 valid images; body tiny")
    data = load_checkpoint(out).record.data
    assert (data.kind, data.train_sets, data.valid_set, data.n_train, data.n_valid) == (
        "voc", ("2007-trainval", "2012-trainval"), "2007-test", 10, 1)
    assert data.folder == f"{vocdevkit / 'VOC2007'}:{vocdevkit / 'VOC2012'}"
    command = load_checkpoint(out).record.command
    assert " --train-sets 2007-trainval,2012-trainval --valid-set 2007-test " in command  # the alias spelled out
    again = _parse(shlex.split(command)[4:])
    assert (again.train_sets, again.valid_set, again.data_dir) == ("2007-trainval,2012-trainval", "2007-test", str(both))
