"""Pascal VOC 2007 and 2012: which years and splits a folder holds (both layouts, and beside it), sets by
name, the 07+12 union, what is said when a year or split is missing, and --download through fastai's
untar_data (faked: this machine reaches no dataset host). On small trees written in both layouts."""
from __future__ import annotations

import shutil

import pytest

from ssd_lesson.data import voc as V, voc_sets as S, voc_years as Y

from tests.helpers import SPEC, SPEC_2012

SPECS = {"2007": SPEC, "2012": SPEC_2012}


def expected(year: str) -> dict:
    """``{(year, split): n}`` counted from the spec the tree was written from (VOC 2012 lists no test)."""
    spec = SPECS[year]
    n = {s: sum(v[0] == s for v in spec.values()) for s in ("train", "val", "test")}
    n["trainval"] = n["train"] + n["val"]
    return {(year, s): k for s, k in n.items() if k and not (year == "2012" and s == "test")}


def ids(year: str, *splits: str) -> set:
    return {i for i, v in SPECS[year].items() if v[0] in splits}


# ---------------------------------------------------------------- what a folder holds
@pytest.mark.parametrize("where, years", [
    ("both", "2007 2012"), ("both/VOCdevkit", "2007 2012"), ("both/VOCdevkit/VOC2007", "2007 2012"),
    ("both/VOCdevkit/VOC2012", "2007 2012"), ("only12", "2012"), ("only12/VOCdevkit/VOC2012", "2012"),
    ("fastai", "2007 2012"), ("fastai/pascal_2007", "2007 2012"), ("fastai/pascal_2012", "2007 2012"),
    ("nowhere", "")])
def test_inventory_of_each_tree(voc_trees, where, years):
    want = {k: n for y in years.split() for k, n in expected(y).items()}
    assert Y.voc_inventory(voc_trees / where) == want
    found = Y.find_years(voc_trees / where)
    layout = "fastai" if where.startswith("fastai") else "voc"
    for y in years.split():
        top = voc_trees / where.split("/")[0]
        root = top / f"pascal_{y}" if layout == "fastai" else top / "VOCdevkit" / f"VOC{y}"
        assert (found[y].year, found[y].layout, found[y].root) == (y, layout, root)


def test_a_year_folder_alone_holds_only_itself(voc_trees):
    assert Y.voc_inventory(voc_trees / "both/VOCdevkit/VOC2012", siblings=False) == expected("2012")
    assert V.voc_layout(voc_trees / "both/VOCdevkit/VOC2012") is None  # VOC 2012 is never read as 2007
    assert V.voc_layout(voc_trees / "both") == ("voc", voc_trees / "both/VOCdevkit/VOC2007")


@pytest.mark.parametrize("source", ["only12/VOCdevkit/VOC2012", "fastai/pascal_2012"])
def test_a_folder_named_otherwise_gets_its_year_from_its_image_ids(voc_trees, tmp_path, source):
    renamed = shutil.copytree(voc_trees / source, tmp_path / "my_voc")
    assert Y.voc_inventory(renamed) == expected("2012")
    assert V.voc_layout(renamed) is None
    plain = shutil.copytree(voc_trees / "both/VOCdevkit/VOC2007", tmp_path / "other")  # 000005: 2007, as it always was
    assert Y.voc_inventory(plain, siblings=False) == expected("2007")


def test_an_unreadable_split_is_listed_uncounted_and_its_reader_names_the_problem(voc_trees, tmp_path):
    tree = shutil.copytree(voc_trees / "fastai/pascal_2007", tmp_path / "pascal_2007")
    (tree / "train.json").write_text("{not json")
    assert Y.voc_inventory(tree, siblings=False) == {**expected("2007"), ("2007", "train"): None, ("2007", "trainval"): None}
    assert Y.find_years(tree)["2007"].describe() == f"VOC2007 (train ?, val 2, trainval ?, test 1 images) in {tree}"
    with pytest.raises(ValueError, match=r"train\.json: not a JSON file"):
        S.choose_sets(tree, "2007-train", "2007-test").load()


# ---------------------------------------------------------------- sets by name
@pytest.mark.parametrize("text, sets", [
    ("07+12", [("2007", "trainval"), ("2012", "trainval")]), ("2007-train", [("2007", "train")]),
    (" 12-val , 2007-TEST", [("2012", "val"), ("2007", "test")]), ("2007-train,2007-train", [("2007", "train")])])
def test_set_names(text, sets):
    assert S.parse_sets(text, "--train-sets") == tuple(S.VocSet(*s) for s in sets)
    assert [str(s) for s in S.parse_sets(text, "--train-sets")] == [f"{y}-{s}" for y, s in sets]


@pytest.mark.parametrize("train, valid, says", [
    ("2007-tran", None, "--train-sets: '2007-tran' is not a Pascal VOC set; write YEAR-SPLIT, YEAR 2007 or 2012"),
    ("2010-train", None, "--train-sets: '2010-train' is not a Pascal VOC set"),
    ("", None, "--train-sets: '' is not a Pascal VOC set"),
    ("2012-test", None, "--train-sets: 2012-test: VOC2012's test annotations are not public"),
    ("2012-trainval", "2012-test", "--valid-set: 2012-test: VOC2012's test annotations are not public (its evaluation "
                                   "server keeps them); validate on 2007-test, 2007-val or 2012-val"),
    ("2007-trainval", "07+12", "--valid-set takes one set, got '07+12' (2007-trainval, 2012-trainval)"),
    ("2007-trainval", None, "--valid-set 2007-val (the default) shares images with --train-sets 2007-trainval: "
                            "validating on training images measures memory, not detection; choose a valid set apart "
                            "from them, e.g. --valid-set 2007-test"),
    ("07+12", "2012-val", "--valid-set 2012-val shares images with --train-sets 2012-trainval"),
    ("2007-trainval,2007-test", "07-val", "shares images with --train-sets 2007-trainval: validating on training "
                                          "images measures memory, not detection; choose a valid set apart from them, "
                                          "e.g. --valid-set 2012-val"),
])
def test_wrong_set_names_are_refused_in_one_line(voc_trees, train, valid, says):
    with pytest.raises(ValueError) as e:
        S.choose_sets(voc_trees / "both", train, valid)
    assert str(e.value).startswith(says) or says in str(e.value), str(e.value)
    assert "\n" not in str(e.value)


def test_the_07_12_union_has_both_years_images_once(voc_trees):
    for tree in ("both", "fastai"):
        chosen = S.choose_sets(voc_trees / tree, "07+12", "2007-test")
        train, valid, notes = chosen.load()
        keys = [(r.image_path.parent.parent.name, r.image_id) for r in train]
        assert len(train) == len(ids("2007", "train", "val")) + len(ids("2012", "train", "val")) == 10
        assert len(set(keys)) == len(keys) and len({r.image_path for r in train}) == len(train)
        assert {r.image_id for r in train} == ids("2007", "train", "val") | ids("2012", "train", "val")
        assert {r.image_id for r in valid} == ids("2007", "test") and notes == []
        top = voc_trees / tree
        roots = [top / "pascal_2007", top / "pascal_2012"] if tree == "fastai" else [
            top / "VOCdevkit/VOC2007", top / "VOCdevkit/VOC2012"]
        assert chosen.folder == f"{roots[0]}:{roots[1]}"
        assert chosen.notes == [f"Pascal VOC: train 2007-trainval (5 images) + 2012-trainval (5), valid 2007-test (1); "
                                f"VOC2007 from {roots[0]}, VOC2012 from {roots[1]}"]


def test_a_set_named_inside_another_is_read_once_with_a_note(voc_trees):
    train, valid, notes = S.choose_sets(voc_trees / "both", "2007-train,2007-trainval", "2007-test").load()
    assert sorted(r.image_id for r in train) == sorted(ids("2007", "train", "val"))
    assert notes == ["note: 3 images of 2007-trainval are also in 2007-train: each is trained on once"]


def test_a_valid_image_listed_in_a_train_split_file_is_refused(voc_trees, tmp_path):
    tree = shutil.copytree(voc_trees / "both/VOCdevkit/VOC2007", tmp_path / "VOC2007")
    test_file = tree / "ImageSets/Main/test.txt"
    test_file.write_text(test_file.read_text() + "000009\n")  # a train image listed in test as well
    chosen = S.choose_sets(tree, "2007-trainval", "2007-test")
    with pytest.raises(ValueError, match=r"^--valid-set 2007-test: 1 of its images \(first 000009\) are also in "
                                         r"--train-sets 2007-trainval; validating on training images"):
        chosen.load()


def test_both_years_present_uses_2012_when_asked_and_says_so(voc_trees):
    vocdevkit = voc_trees / "both/VOCdevkit"
    chosen = S.choose_sets(voc_trees / "both", "2012-train", "2012-val")
    assert list(chosen.years) == ["2012"] and chosen.folder == str(vocdevkit / "VOC2012")
    train, valid, _ = chosen.load()
    assert {r.image_id for r in train} == ids("2012", "train") and {r.image_id for r in valid} == ids("2012", "val")
    assert all(r.image_path.parent == vocdevkit / "VOC2012/JPEGImages" for r in train + valid)
    assert chosen.notes[0] == f"Pascal VOC: train 2012-train (3 images), valid 2012-val (2); VOC2012 from {vocdevkit / 'VOC2012'}"
    assert chosen.notes[1] == (f"note: VOC2007 (train 3, val 2, trainval 5, test 1 images) in {vocdevkit / 'VOC2007'} "
                               "is here too, unused (--train-sets 07+12 trains on both years)")
    default = S.choose_sets(voc_trees / "both")  # the lesson's 2007 split, and a word that 2012 is there
    assert [str(s) for s in default.train] == ["2007-train"] and str(default.valid) == "2007-val"
    assert default.notes[1].startswith(f"note: VOC2012 (train 3, val 2, trainval 5 images) in {vocdevkit / 'VOC2012'} is here too")


def test_a_2012_only_tree_says_2012_is_there(voc_trees):
    only = voc_trees / "only12"
    with pytest.raises(FileNotFoundError) as e:
        S.choose_sets(only)
    lines = str(e.value).splitlines()
    assert lines[0] == (f"Pascal VOC 2007 not found in {only} (the path you gave); found VOC2012 (train 3, val 2, "
                        f"trainval 5 images) in {only / 'VOCdevkit/VOC2012'}")
    assert lines[1:3] == ["Looked in:", f"  - {only} (the path you gave)"] and "--download" in lines[4]
    assert lines[-1] == "Or train on what is here: --train-sets 2012-train --valid-set 2012-val"
    with pytest.raises(FileNotFoundError) as e:  # the library's own search says it too
        V.find_voc(only, warn="raise")
    assert str(e.value).splitlines()[0] == (f"Pascal VOC 2007 not found in {only} (the path you gave); found VOC2012 "
                                            f"(train 3, val 2, trainval 5 images) in {only / 'VOCdevkit/VOC2012'}, but not VOC2007")
    with pytest.warns(V.VocNotFoundWarning, match=r"^Pascal VOC 2007 was not found: found VOC2012 \(train 3"):
        assert V.find_voc(only) is None


def test_a_missing_year_or_split_names_what_is_there(voc_trees, voc_root):
    with pytest.raises(FileNotFoundError) as e:
        S.choose_sets(voc_root, "07+12", "2007-test")
    lines = str(e.value).splitlines()
    assert lines[0] == (f"Pascal VOC 2012 not found in {voc_root} (the path you gave); found VOC2007 (train 3, val 2, "
                        f"trainval 5, test 1 images) in {voc_root}")
    assert lines[1:] == ["To use VOC2012, either:", "  - pass --download (fastai's untar_data(URLs.PASCAL_2012)), or",
                         f"  - unpack fastai's pascal_2012.tgz or the official VOCtrainval_11-May-2012.tar (VOCdevkit/VOC2012) "
                         f"in {voc_root} or beside its VOC2007",
                         "Or train on what is here: --train-sets 2007-train --valid-set 2007-val"]
    no_test = voc_trees / "no_test"
    with pytest.raises(ValueError) as e:
        S.choose_sets(no_test, "2007-trainval", "2007-test")
    assert str(e.value) == (f"--valid-set 2007-test: VOC2007 (train 3, val 2, trainval 5 images) in "
                            f"{no_test / 'VOCdevkit/VOC2007'} has no test split (unpack VOCtest_06-Nov-2007.tar there)")


# ---------------------------------------------------------------- --download, through fastai's untar_data
@pytest.fixture
def fake_untar(monkeypatch):
    """fastai's untar_data replaced: ``calls`` records (url, data); ``gives`` is what it returns, or raises."""
    import fastai.data.external as fe

    fake = type("Fake", (), {"calls": [], "gives": None})()

    def untar_data(url, archive=None, data=None, **kw):
        fake.calls.append((url, data))
        if isinstance(fake.gives, Exception):
            raise fake.gives
        return fake.gives

    monkeypatch.setattr(fe, "untar_data", untar_data)
    return fake


@pytest.mark.fastai  # imports fastai's URLs
def test_download_fetches_only_the_missing_year_into_the_folder_looked_in(voc_trees, tmp_path, fake_untar):
    from fastai.data.external import URLs

    here = shutil.copytree(voc_trees / "both/VOCdevkit/VOC2007", tmp_path / "VOCdevkit/VOC2007")
    fake_untar.gives = voc_trees / "fastai/pascal_2012"  # what untar_data(URLs.PASCAL_2012) unpacks
    chosen = S.choose_sets(here, "07+12", "2007-test", download=True)
    assert fake_untar.calls == [(URLs.PASCAL_2012, tmp_path / "VOCdevkit")]  # beside VOC2007; 2007 was there
    assert chosen.years["2012"].root == voc_trees / "fastai/pascal_2012" and chosen.years["2007"].root == here
    assert chosen.notes[0] == f"downloaded VOC2012: VOC2012 (train 3, val 2, trainval 5 images) in {voc_trees / 'fastai/pascal_2012'}"
    assert len(chosen.load()[0]) == 10
    fake_untar.calls.clear()
    assert S.choose_sets(here, "2007-trainval", "2007-test", download=True).years["2007"].root == here
    assert fake_untar.calls == []  # nothing missing, nothing fetched


@pytest.mark.fastai  # imports fastai's URLs
def test_download_that_fails_or_brings_the_wrong_thing_is_one_line(tmp_path, fake_untar, voc_trees):
    fake_untar.gives = ConnectionError("HTTPSConnectionPool(host='s3.amazonaws.com'): Max retries exceeded\nmore")
    with pytest.raises(S.DownloadFailed) as e:
        S.choose_sets(tmp_path / "data", download=True)
    assert str(e.value) == ("--download: fetching Pascal VOC 2007 (https://s3.amazonaws.com/fast-ai-imagelocal/"
                            "pascal_2007.tgz) failed: ConnectionError: HTTPSConnectionPool(host='s3.amazonaws.com'): "
                            "Max retries exceeded")
    assert fake_untar.calls == [("https://s3.amazonaws.com/fast-ai-imagelocal/pascal_2007.tgz", tmp_path / "data")]
    fake_untar.gives = voc_trees / "only12"
    with pytest.raises(S.DownloadFailed, match=r"^--download: fastai's untar_data\(\S+pascal_2007.tgz\) gave \S+only12, "
                                               r"which holds no VOC2007$"):
        S.choose_sets(tmp_path / "data", download=True)


@pytest.mark.fastai  # fastai's own untar_data, with nothing to fetch
def test_fastai_untar_data_into_a_folder_finds_it_unpacked_and_leaves_fastai_s_config(voc_trees, tmp_path, monkeypatch):
    from fastai.data.external import fastai_cfg, fastai_path

    monkeypatch.setenv("FASTAI_HOME", str(tmp_path / "fastai_home"))  # its archive folder goes here
    fastai_cfg.cache_clear()
    default = fastai_path("data")
    into = tmp_path / "data"
    shutil.copytree(voc_trees / "fastai/pascal_2012", into / "pascal_2012")  # as an earlier download left it
    got = S.download_year("2012", into)  # untar_data(URLs.PASCAL_2012, data=into): already there, no network
    assert (got.year, got.layout, got.root, got.splits) == ("2012", "fastai", into / "pascal_2012",
                                                            {"train": 3, "val": 2, "trainval": 5})
    assert fastai_path("data") == default  # the folder given for this download is not fastai's data folder after it
    fastai_cfg.cache_clear()
