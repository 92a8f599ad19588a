"""The SSD model, checkpoints, decoding/prediction and mAP: fast, random or crafted tensors only."""
from __future__ import annotations

import urllib.error
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from ssd_lesson import AnchorSpec, make_anchors
from ssd_lesson.drawing.draw import show_detections
from ssd_lesson.model.infer import Detections, decode, predict
from ssd_lesson.model.metrics import detection_map, map_metrics
from ssd_lesson import DecodeOptions, LossOptions
from ssd_lesson.model.checkpoint import CheckpointRecord, InitCheckpoint, TrainingData, load_checkpoint, save_checkpoint
from ssd_lesson.model.config import ModelConfig
from ssd_lesson.model.net import create_ssd_model


def tiny(spec=AnchorSpec(), **kw):
    with pytest.warns(UserWarning, match="no ImageNet weights"):
        return create_ssd_model("tiny", pretrained=True, spec=spec, n_hidden=32, **kw)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return tiny().eval()


# ---------------------------------------------------------------- shapes and anchor order
def test_output_shapes_default_spec(model):
    class_logits, box_actns = model(torch.randn(2, 3, 224, 224))
    assert class_logits.shape == (2, 189, 21) and box_actns.shape == (2, 189, 4)


def test_class_bias_starts_negative():
    m = create_ssd_model("tiny", pretrained=False, n_hidden=16, class_bias=-3.0)
    for out in m.head.outs:
        assert torch.all(out.classes.bias == -3.0)


@pytest.mark.parametrize("spec", [AnchorSpec(grids=(4, 2)), AnchorSpec(grids=(7, 4, 2, 1), zooms=(1.0,)),
                                  AnchorSpec(grids=(1, 4), ratios=((1.0, 1.0),))])
def test_head_adapts_to_spec(spec):
    m = create_ssd_model("tiny", pretrained=False, spec=spec, n_hidden=16).eval()
    c, b = m(torch.randn(1, 3, 224, 224))
    assert c.shape == (1, spec.n_anchors, 21) and b.shape == (1, spec.n_anchors, 4)


def test_unreachable_grid_is_a_clear_error():
    with pytest.raises(ValueError, match=r"grids \[3\] cannot be reached.*\[7, 4, 2, 1\]"):
        create_ssd_model("tiny", pretrained=False, spec=AnchorSpec(grids=(4, 3)))


def _one_hot_map_hook(r, c):
    def hook(module, inputs, output):
        x = torch.zeros_like(output)
        x[:, 0, r, c] = 1.0
        return x
    return hook


@pytest.mark.parametrize("grid_i, r, c", [(0, 0, 0), (0, 1, 3), (0, 3, 2), (1, 1, 0), (2, 0, 0)])
def test_a_cells_activation_lands_on_that_cells_anchors(grid_i, r, c):
    """Only feature (row r, col c) of grid grid_i's map is 1; the output conv connects it (centre tap)
    to one class channel and one box channel of scale s: exactly anchor (grid, r, c, s) must light up."""
    spec = AnchorSpec()
    m = create_ssd_model("tiny", pretrained=False, spec=spec, n_hidden=16).eval()
    anchors = make_anchors(spec)
    g, k, C = spec.grids[grid_i], spec.k(grid_i), 20
    with torch.no_grad():
        for out in m.head.outs:
            for conv in (out.classes, out.boxes):
                conv.weight.zero_(), conv.bias.zero_()
    level = m.head.sizes.index(g)
    producer = m.head.first if level == 0 else m.head.downs[level - 1]
    handle = producer.register_forward_hook(_one_hot_map_hook(r, c))
    try:
        for s, cls, j in [(0, 0, 0), (4, 7, 2), (k - 1, 19, 3)]:
            with torch.no_grad():
                out = m.head.outs[grid_i]
                out.classes.weight.zero_(), out.boxes.weight.zero_()
                out.classes.weight[s * (C + 1) + cls, 0, 1, 1] = 1.0
                out.boxes.weight[s * 4 + j, 0, 1, 1] = 1.0
                class_logits, box_actns = m(torch.zeros(1, 3, 224, 224))
            for t, col in ((class_logits, cls), (box_actns, j)):
                nz = torch.nonzero(t[0])
                assert nz.tolist() == [[nz[0, 0].item(), col]]
                info = anchors.info(int(nz[0, 0]))
                assert (info.grid, info.row, info.col, info.scale) == (g, r, c, s)
    finally:
        handle.remove()


# ---------------------------------------------------------------- bodies and bad input
def test_offline_pretrained_weights_fall_back_with_a_warning(monkeypatch):
    def offline(*a, **k):
        raise urllib.error.URLError("[Errno -2] Name or service not known")
    monkeypatch.setattr("torchvision.models._api.load_state_dict_from_url", offline)
    with pytest.warns(UserWarning, match=r"could not load ImageNet weights for resnet18 \(URLError.*random weights"):
        m = create_ssd_model("resnet18", pretrained=True, n_hidden=16)
    c, b = m.eval()(torch.randn(1, 3, 224, 224))
    assert c.shape == (1, 189, 21) and m.body_name == "resnet18"


def test_unknown_body():
    with pytest.raises(ValueError, match="unknown body 'vgg'"):
        create_ssd_model("vgg", pretrained=False)


def test_a_model_config_builds_the_model_the_keywords_build():
    config = ModelConfig(body="tiny", n_hidden=16, spec=AnchorSpec(grids=(4, 2)), class_names=("cat", "dog"))
    torch.manual_seed(0)
    by_config = create_ssd_model(config, pretrained=False)
    torch.manual_seed(0)
    by_keywords = create_ssd_model("tiny", pretrained=False, n_hidden=16, spec=AnchorSpec(grids=(4, 2)),
                                   class_names=("cat", "dog"))
    assert by_config.config == by_keywords.config == config and by_config.spec == config.spec
    assert by_config.class_names == ("cat", "dog") and by_config.body_name == "tiny" and by_config.size == 224
    assert all(torch.equal(a, b) for a, b in zip(by_config.state_dict().values(), by_keywords.state_dict().values()))
    assert by_config.head.outs[0].classes.out_channels == 9 * 3  # k = 9 anchor boxes, 2 classes + background
    with pytest.raises(TypeError, match=r"not both \(got config and n_hidden\)"):
        create_ssd_model(config, pretrained=False, n_hidden=32)
    with pytest.raises(TypeError, match="the body given twice"):
        create_ssd_model("tiny", pretrained=False, body="resnet18")


@pytest.mark.parametrize("shape, match", [((1, 3, 200, 224), "expects 224x224 images, got 200x224"),
                                          ((1, 1, 224, 224), r"shape \(B, 3, 224, 224\)"),
                                          ((3, 224, 224), r"shape \(B, 3, 224, 224\)")])
def test_model_rejects_bad_images(model, shape, match):
    with pytest.raises(ValueError, match=match):
        model(torch.zeros(shape))


def test_predict_rejects_wrong_channel_count(model):
    with pytest.raises(ValueError, match="3 colour channels"):
        predict(model, torch.zeros(1, 4, 224, 224))


# ---------------------------------------------------------------- checkpoints
def test_checkpoint_round_trip_gives_identical_outputs(model, tmp_path):
    with torch.no_grad():  # make the batch-norm statistics non-trivial
        for mod in model.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.1, 0.1), mod.running_var.uniform_(0.5, 1.5)
    x = torch.randn(2, 3, 224, 224)
    record = CheckpointRecord(command="python -m ssd_lesson train --epochs 3", loss_options=LossOptions.article(),
                              decode_options=DecodeOptions(score_threshold=0.1),
                              data=TrainingData("collage", "runs/collage-n20-seed4", 20, 16, 4, photos="train"), seed=4,
                              epoch=3, metrics={"mAP50": 0.25},
                              init=InitCheckpoint("base.pth", "ab" * 32, CheckpointRecord(
                                  command="python -m ssd_lesson train --epochs 9", loss_options=LossOptions.lesson_code(),
                                  data=TrainingData("voc", "VOC2007", n_train=2501, n_valid=2510), seed=1, epoch=9,
                                  init=InitCheckpoint("first.pth", "cd" * 32))),
                              note="a remark")
    path = save_checkpoint(model, tmp_path / "m.pth", record=record)
    loaded = load_checkpoint(path)
    assert loaded.spec == model.spec and loaded.class_names == model.class_names and loaded.body_name == "tiny"
    assert loaded.record == record.replace(path=path)  # every field back, typed; and where it was read from
    assert model.record is None and load_checkpoint(save_checkpoint(loaded, tmp_path / "again.pth")).record.epoch == 3
    with torch.no_grad():
        for a, b in zip(model(x), loaded(x)):
            assert torch.equal(a, b)
        half = load_checkpoint(save_checkpoint(model, tmp_path / "h.pth", half=True))
        for a, b in zip(model(x), half(x)):
            torch.testing.assert_close(a, b, rtol=0.02, atol=0.02)
    assert (tmp_path / "h.pth").stat().st_size < 0.6 * path.stat().st_size


def test_checkpoint_refuses_other_spec_or_classes(model, tmp_path):
    path = save_checkpoint(model, tmp_path / "m.pth")
    with pytest.raises(ValueError, match=r"anchor spec AnchorSpec\(grids=\(4, 2, 1\).*not the requested AnchorSpec\(grids=\(4, 2\)"):
        load_checkpoint(path, spec=AnchorSpec(grids=(4, 2)))
    with pytest.raises(ValueError, match=r"m\.pth: the checkpoint has 20 classes, the data 2 \(cat, dog\); it was trained for other classes"):
        load_checkpoint(path, class_names=("cat", "dog"))
    assert load_checkpoint(path, spec=AnchorSpec(), class_names=model.class_names) is not None
    torch.save({"weights": 1}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="not an ssd_lesson checkpoint"):
        load_checkpoint(tmp_path / "other.pth")
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.pth")


# ---------------------------------------------------------------- decoding and prediction
def crafted_outputs():
    """Anchor 0 (4x4 grid, cell (0,0), zoom .7 square, side .175) says cat 0.99; anchor 3 (same cell, zoom 1
    square, side .25) says cat 0.95, shrunk to side .2 (IoU .766 with anchor 0); anchor 188 (the 1x1 grid,
    zoom 1.3 ratio (.5, 1)) says person 0.9. Everything else -10 (score ~0)."""
    anchors = make_anchors(AnchorSpec())
    class_logits = torch.full((1, 189, 21), -10.0)
    box_actns = torch.zeros(1, 189, 4)
    class_logits[0, 0, 7] = 4.6  # sigmoid ~ 0.990
    class_logits[0, 3, 7] = 3.0  # ~0.953, same class, overlapping: suppressed by NMS
    box_actns[0, 3, 2:] = torch.atanh(torch.tensor(-0.4))  # height and width x (1 - 0.4/2): .25 -> .2
    class_logits[0, 188, 14] = 2.2  # ~0.90
    return anchors, class_logits, box_actns


def test_decode_crafted_activation_after_nms():
    anchors, class_logits, box_actns = crafted_outputs()
    (det,) = decode(class_logits, box_actns, anchors, score_threshold=0.5, nms_iou=0.5)
    assert det.labels.tolist() == [7, 14]
    torch.testing.assert_close(det.scores, torch.sigmoid(torch.tensor([4.6, 2.2])))
    # anchor 0: centre (1/8, 1/8), side 0.7/4, unchanged by zero activations
    torch.testing.assert_close(det.boxes[0], torch.tensor([0.125 - 0.0875, 0.125 - 0.0875, 0.125 + 0.0875, 0.125 + 0.0875]))
    # anchor 188: centre (.5, .5), height 1.3 * .5, width 1.3 clipped to the image
    torch.testing.assert_close(det.boxes[1], torch.tensor([0.5 - 0.325, 0.0, 0.5 + 0.325, 1.0]))
    # without NMS overlap suppression the second cat survives; the cap keeps only the best
    (loose,) = decode(class_logits, box_actns, anchors, score_threshold=0.5, nms_iou=0.99)
    assert loose.labels.tolist() == [7, 7, 14]
    (capped,) = decode(class_logits, box_actns, anchors, score_threshold=0.5, max_per_image=1)
    assert capped.labels.tolist() == [7]


class FixedOutputs(nn.Module):
    """Stands in for an SSDModel: checks its input and returns fixed activations."""

    def __init__(self, class_logits, box_actns):
        super().__init__()
        self.spec, self.size, self.w = AnchorSpec(), 224, nn.Parameter(torch.zeros(()))
        self.out = (class_logits, box_actns)
        self.seen = None

    def forward(self, x):
        self.seen = x.shape
        return tuple(t.expand(x.shape[0], -1, -1) for t in self.out)


def test_predict_resizes_and_returns_pixel_boxes():
    anchors, class_logits, box_actns = crafted_outputs()
    fake = FixedOutputs(class_logits, box_actns)
    dets = predict(fake, torch.zeros(2, 3, 448, 336), score_threshold=0.5)
    assert fake.seen == (2, 3, 224, 224) and len(dets) == 2
    h, w = 448, 336
    torch.testing.assert_close(dets[1].boxes[0], torch.tensor([0.0375 * h, 0.0375 * w, 0.2125 * h, 0.2125 * w]))
    torch.testing.assert_close(dets[1].boxes[1], torch.tensor([0.175 * h, 0.0, 0.825 * h, w]))
    # one uint8 (H, W, 3) numpy image, as ssd_lesson.data.transforms.load_image gives
    image = torch.zeros(100, 50, 3, dtype=torch.uint8).numpy()
    image.flags.writeable = False  # as np.asarray(PIL image) gives: no warning, no error
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (det,) = predict(fake, [image], score_threshold=0.5)
    torch.testing.assert_close(det.boxes[1], torch.tensor([17.5, 0.0, 82.5, 50.0]))


def test_predict_on_a_real_model(model):
    dets = predict(model, torch.randn(3, 224, 224).clamp(-2, 2), score_threshold=0.0, max_per_image=7)
    assert len(dets) == 1 and len(dets[0].boxes) == 7 and not model.training
    assert torch.all(dets[0].labels < 20) and torch.all(dets[0].scores[:-1] >= dets[0].scores[1:])
    assert dets[0].boxes.min() >= 0 and dets[0].boxes.max() <= 224


# ---------------------------------------------------------------- mAP
def _gt(*rows):
    return torch.tensor([r[:4] for r in rows]).float(), torch.tensor([r[4] for r in rows])


def test_map_hand_made_case():
    """Class 0 in two images: one exact hit (score .9), one miss plus a false alarm (.8).
    Precision is 1 up to recall 0.5, then nothing: AP = 51/101 on COCO's 101 recall points.
    Class 1: one exact hit, AP 1. Mean over the two classes."""
    gt1, gt2 = _gt((0.1, 0.1, 0.5, 0.5, 0), (0.5, 0.5, 0.9, 0.9, 1)), _gt((0.2, 0.2, 0.6, 0.6, 0))
    d1 = Detections(torch.tensor([[0.1, 0.1, 0.5, 0.5], [0.5, 0.5, 0.9, 0.9]]), torch.tensor([0, 1]), torch.tensor([0.9, 0.7]))
    d2 = Detections(torch.tensor([[0.7, 0.0, 0.9, 0.2]]), torch.tensor([0]), torch.tensor([0.8]))
    r = detection_map([d1, d2], [gt1[0], gt2[0]], [gt1[1], gt2[1]])
    assert r["map_50"] == pytest.approx((51 / 101 + 1) / 2, abs=1e-4)
    assert r["map"] == pytest.approx((51 / 101 + 1) / 2, abs=1e-4)  # exact boxes: a hit at every IoU threshold
    # a box 0.07 narrower than a 0.4 square: IoU 0.825, a hit at IoU thresholds 0.5..0.8 (7 of 10), not above
    d1b = Detections(torch.tensor([[0.1, 0.1, 0.5, 0.43]]), torch.tensor([0]), torch.tensor([0.9]))
    r = detection_map([d1b], [gt1[0][:1]], [gt1[1][:1]])
    assert r["map_50"] == pytest.approx(1.0) and r["map"] == pytest.approx(0.7, abs=1e-4)


def test_map_empty_split_is_reported():
    with pytest.raises(ValueError, match="no images to evaluate; is the valid split empty"):
        detection_map([], [], [])
    m50, mcoco = map_metrics(make_anchors(AnchorSpec()))
    m50.reset()
    assert m50.value is None and mcoco.value is None and (m50.name, mcoco.name) == ("mAP50", "mAP_coco")


def test_map_metric_from_crafted_batch():
    anchors, class_logits, box_actns = crafted_outputs()
    gt_boxes = torch.tensor([[[0.0375, 0.0375, 0.2125, 0.2125], [0.0, 0.0, 0.0, 0.0]]])
    gt_labels = torch.tensor([[7, -1]])  # the cat is right; the person is a false alarm in a class with no objects
    m50, mcoco = map_metrics(anchors)

    class Learn:
        pred, yb = (class_logits, box_actns), (gt_boxes, gt_labels)
    m50.reset(), mcoco.reset()
    m50.accumulate(Learn), mcoco.accumulate(Learn)
    assert m50.value == pytest.approx(1.0) and mcoco.value == pytest.approx(1.0)


def test_show_detections_draws(model):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    det = Detections(torch.tensor([[10.0, 20.0, 100.0, 120.0]]), torch.tensor([7]), torch.tensor([0.93]))
    show_detections(ax, torch.randn(3, 224, 224), *det, model.class_names, title="t")
    assert [t.get_text() for t in ax.texts] == ["cat 0.93"] and len(ax.patches) == 1
    plt.close(fig)


# ---------------------------------------------------------------- bad input to predict, decode and checkpoints
def test_prepare_images_reads_values_by_dtype():
    from ssd_lesson.model.infer import prepare_images

    gen = torch.Generator().manual_seed(14)
    u8 = torch.randint(0, 256, (3, 30, 20), generator=gen, dtype=torch.uint8)
    want, hw = prepare_images(u8, 224)
    assert hw == [(30, 20)]
    torch.testing.assert_close(prepare_images(u8.to(torch.int32).mul(257).to(torch.uint16), 224)[0], want)  # /65535
    torch.testing.assert_close(prepare_images(u8.permute(1, 2, 0).numpy() / 255.0, 224)[0], want)  # numpy floats: 0..1
    torch.testing.assert_close(prepare_images(u8.float() / 255, 224, normalized=False)[0], want)
    torch.testing.assert_close(prepare_images(want, 224)[0], want)  # tensors: ImageNet-normalised, as the DataLoaders give


def test_predict_accepts_pil_images_as_the_uint8_arrays_they_are():
    from PIL import Image

    from ssd_lesson.model.infer import prepare_images

    gen = torch.Generator().manual_seed(15)
    hwc = torch.randint(0, 256, (30, 20, 3), generator=gen, dtype=torch.uint8).numpy()
    want, _ = prepare_images(hwc, 224)
    for im, like in ((Image.fromarray(hwc), hwc), (Image.fromarray(hwc).convert("L"), None),
                     (Image.fromarray(hwc).convert("RGBA"), hwc)):
        like = np.repeat(np.asarray(im)[..., None], 3, -1) if like is None else like  # greyscale: three equal channels
        got, hw = prepare_images(im, 224)
        assert hw == [(30, 20)]
        torch.testing.assert_close(got, prepare_images(like, 224)[0], rtol=0, atol=0)
    torch.testing.assert_close(prepare_images([Image.fromarray(hwc), hwc], 224)[0], torch.cat([want, want]))
    anchors, class_logits, box_actns = crafted_outputs()
    fake = FixedOutputs(class_logits, box_actns)
    (from_pil,), (from_array,) = predict(fake, Image.fromarray(hwc)), predict(fake, hwc)
    assert fake.seen == (1, 3, 224, 224)
    torch.testing.assert_close(from_pil.boxes, from_array.boxes)  # pixels of the 30 x 20 image either way


@pytest.mark.parametrize("image,says", [
    (torch.zeros(3, 30, 20, dtype=torch.int64), "dtype torch.int64 is not an image dtype"),
    (torch.zeros(3, 30, 20, dtype=torch.bool), "dtype torch.bool is not an image dtype"),
    (torch.full((30, 20, 3), 200.0).numpy(), r"torch.float32 values 200\.\.200 are not RGB fractions 0\.\.1"),
    (torch.full((3, 30, 20), 200.0), r"values 200\.\.200 are not ImageNet-normalised"),
    (torch.zeros(3, 0, 0, dtype=torch.uint8), "an image of 0x0 pixels"),
    (torch.full((3, 30, 20), float("nan")), "contains NaN or inf"),
])
def test_predict_refuses_images_it_would_misread(image, says):
    anchors, class_logits, box_actns = crafted_outputs()
    with pytest.raises(ValueError, match=says):
        predict(FixedOutputs(class_logits, box_actns), image)


def test_predict_and_decode_options_and_shapes():
    anchors, class_logits, box_actns = crafted_outputs()
    fake = FixedOutputs(class_logits, box_actns)
    assert predict(fake, []) == [] and fake.seen is None  # nothing to run
    for kw, says in ((dict(max_per_image=-1), "max_per_image: must be an integer >= 1, got -1"),
                     (dict(score_threshold=1.5), r"score_threshold: must be in \[0, 1\)"),
                     (dict(score_threshold=float("nan")), "score_threshold"), (dict(nms_iou=float("nan")), "nms_iou")):
        with pytest.raises(ValueError, match=says):
            predict(fake, torch.zeros(3, 10, 10, dtype=torch.uint8), **kw)
    with pytest.raises(ValueError, match=r"box_actns: its \(B, A\) = \(2, 189\) differs from class_logits' \(1, 189\)"):
        decode(class_logits, box_actns.expand(2, -1, -1), anchors)
    with pytest.raises(ValueError, match="class_logits: has 189 boxes but anchors has 8732"):
        decode(class_logits, box_actns, make_anchors(AnchorSpec.ssd300()))
    assert decode(class_logits, box_actns, anchors, score_threshold=0.5)[0].labels.tolist() == [7, 14]  # cat, person


@pytest.mark.parametrize("content,says", [
    (b"", "not a checkpoint"), (bytes(range(256)) * 4, "not a checkpoint"), ("truncated", "not a checkpoint"),
    ("pickled object", "refused: it holds Python objects"), ("missing key", "lacks the key 'model'"),
    ("older layout, missing key", "lacks the key 'head_kwargs'"),
])
def test_load_checkpoint_refuses_what_is_not_a_checkpoint(model, tmp_path, content, says):
    path = tmp_path / "bad.pth"
    good = save_checkpoint(model, tmp_path / "good.pth")
    if content == "truncated":
        path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif content == "pickled object":
        torch.save({"format": "ssd_lesson.checkpoint/1", "payload": _NotPlain()}, path)
    elif content == "missing key":
        ckpt = torch.load(good, weights_only=True)
        del ckpt["model"]
        torch.save(ckpt, path)
    elif content == "older layout, missing key":  # the shipped checkpoints' layout
        from ssd_lesson.model.checkpoint import find_checkpoint

        ckpt = torch.load(find_checkpoint(), weights_only=True)
        assert ckpt["format"] == "ssd_lesson.checkpoint/1"
        del ckpt["head_kwargs"]
        torch.save(ckpt, path)
    else:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=says) as e:
        load_checkpoint(path)
    assert str(path) in str(e.value)


class _NotPlain:
    """Anything beyond tensors and plain values: weights_only loading must refuse it."""


def test_shipped_checkpoint_loads_with_weights_only_and_list_specs_match():
    from ssd_lesson.model.checkpoint import find_checkpoint

    path = find_checkpoint()
    assert path is not None
    ckpt = torch.load(path, weights_only=True)  # plain values and tensors only
    listed = AnchorSpec(grids=list(ckpt["spec"]["grids"]), zooms=list(ckpt["spec"]["zooms"]),
                        ratios=[list(r) for r in ckpt["spec"]["ratios"]])
    m = load_checkpoint(path, spec=listed)
    assert m.spec == AnchorSpec() and len(m.class_names) == 20
