"""SSD300's head (ssd_lesson.model.ssd300): the body's maps at strides 8, 16, 32 and three extra layers, checked
against torchvision's SSD300 (its feature map sizes, anchors per cell, extra layers and head's output order),
the anchor order of make_anchors, a weight count worked out by hand, and checkpoints both ways."""
from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.detection import ssd300_vgg16
from torchvision.models.detection.ssd import SSDClassificationHead, SSDRegressionHead
from torchvision.models.feature_extraction import create_feature_extractor

from ssd_lesson import AnchorSpec, make_anchors
from ssd_lesson.model.checkpoint import load_checkpoint, save_checkpoint
from ssd_lesson.model.config import ModelConfig
from ssd_lesson.model.net import create_ssd_model, layer_shapes

C = 20  # VOC classes; the model gives C + 1 logits per anchor box
#: Channels of a ResNet's layer2, layer3 and layer4 (torchvision's definitions: BasicBlock 1x, Bottleneck 4x).
RESNET_CHANNELS = {"resnet18": (128, 256, 512), "resnet34": (128, 256, 512), "resnet50": (512, 1024, 2048)}


def ssd300(body="tiny", n_hidden=16, **kw):
    return create_ssd_model(ModelConfig.ssd300(body=body, n_hidden=n_hidden, **kw), pretrained=False)


@pytest.fixture(scope="module")
def torchvision_ssd300():
    """torchvision's SSD300 on the meta device (shapes only, no weights, no arithmetic) and its feature maps."""
    with torch.device("meta"):
        model = ssd300_vgg16(weights=None, weights_backbone=None, num_classes=C + 1)
        maps = list(model.backbone(torch.empty(1, 3, 300, 300)).values())
    return model, maps


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = ssd300().eval()
    with torch.no_grad():  # batch-norm statistics that are not the identity
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.1, 0.1), mod.running_var.uniform_(0.5, 1.5)
    return m


# ---------------------------------------------------------------- against torchvision's SSD300
def test_grids_and_anchors_per_cell_are_torchvision_ssd300s(model, torchvision_ssd300):
    tv, tv_maps = torchvision_ssd300
    tv_sizes = [m.shape[-1] for m in tv_maps]
    tv_k = tv.anchor_generator.num_anchors_per_location()
    assert tv_sizes == [38, 19, 10, 5, 3, 1] and tv_k == [4, 6, 6, 6, 4, 4]
    shapes = layer_shapes(model, torch.zeros(2, 3, 300, 300))
    assert [s[-1] for s in shapes["grids"]] == tv_sizes == list(model.spec.grids)
    assert [model.spec.k(i) for i in range(6)] == tv_k
    n_tv = sum(g * g * k for g, k in zip(tv_sizes, tv_k))
    with torch.device("meta"):
        tv_out = tv.head(tv_maps)
    assert tv_out["cls_logits"].shape == (1, n_tv, C + 1) and tv_out["bbox_regression"].shape == (1, n_tv, 4)
    assert shapes["class_logits"] == (2, n_tv, C + 1) == (2, 8732, 21) and shapes["box_actns"] == (2, 8732, 4)
    assert n_tv == len(make_anchors(AnchorSpec.ssd300()))


def test_extra_layers_shrink_the_maps_as_torchvision_s(model, torchvision_ssd300):
    """torchvision's conv9_2 (10 to 5), conv10_2 (5 to 3) and conv11_2 (3 to 1): a 1x1 conv, then a 3x3 conv of the
    same stride and padding as ours."""
    tv, _ = torchvision_ssd300
    theirs = [[c for c in block if isinstance(c, nn.Conv2d)] for block in tv.backbone.extra[2:]]
    ours = [[c for c in block if isinstance(c, nn.Conv2d)] for block in model.head.extras]
    assert model.head.extra_sizes == (5, 3, 1) and len(ours) == len(theirs) == 3
    for mine, tvs in zip(ours, theirs):
        assert [(c.kernel_size, c.stride, c.padding) for c in mine] == [(c.kernel_size, c.stride, c.padding) for c in tvs]


def test_outputs_are_laid_out_as_torchvision_s_head_lays_them_out(model):
    """torchvision's SSDClassificationHead / SSDRegressionHead with our output convs' weights, on our feature maps,
    give our outputs: the same per-cell anchor layout and the same concatenation order."""
    x = torch.randn(2, 3, 300, 300, generator=torch.Generator().manual_seed(1))
    maps = []
    hooks = [out.register_forward_hook(lambda mod, inp, outp: maps.append(inp[0])) for out in model.head.outs]
    try:
        with torch.no_grad():
            class_logits, box_actns = model(x)
    finally:
        for h in hooks:
            h.remove()
    channels, ks = [m.shape[1] for m in maps], [model.spec.k(i) for i in range(6)]
    cls_head, box_head = SSDClassificationHead(channels, ks, C + 1), SSDRegressionHead(channels, ks)
    with torch.no_grad():
        for out, c_conv, b_conv in zip(model.head.outs, cls_head.module_list, box_head.module_list):
            c_conv.load_state_dict(out.classes.state_dict()), b_conv.load_state_dict(out.boxes.state_dict())
        torch.testing.assert_close(cls_head(maps), class_logits, rtol=0, atol=0)
        torch.testing.assert_close(box_head(maps), box_actns, rtol=0, atol=0)


# ---------------------------------------------------------------- the body's maps
@pytest.mark.parametrize("body", sorted(RESNET_CHANNELS))
def test_resnet_maps_are_layer2_layer3_layer4_at_300_pixels(body):
    """The maps the head reads are torchvision's layer2, layer3 and layer4 outputs (its feature extractor on the
    same weights), 38, 19 and 10 cells wide; the extra layers add 5, 3 and 1."""
    torch.manual_seed(0)
    m = ssd300(body=body).eval()
    x = torch.randn(1, 3, 300, 300, generator=torch.Generator().manual_seed(2))
    net = getattr(torchvision.models, body)(weights=None)
    net.load_state_dict({**net.state_dict(), **_body_state(m)})  # the fc layer keeps its own
    reference = create_feature_extractor(net.eval(), ["layer2", "layer3", "layer4"])
    with torch.no_grad():
        want = list(reference(x).values())
        got = m.features(x)
    assert [tuple(t.shape) for t in got] == [(1, c, s, s) for c, s in zip(RESNET_CHANNELS[body], (38, 19, 10))]
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)
    assert layer_shapes(m, x)["grids"][3:] == [(1, 16, 5, 5), (1, 16, 3, 3), (1, 16, 1, 1)]


def _body_state(model):
    """The body's weights under torchvision's names (fastai's body is the ResNet's children in order)."""
    names = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]
    return {f"{names[int(i)]}.{rest}": v for i, rest, v in ((*k.split(".", 1), v) for k, v in model.body.state_dict().items())}


def test_tiny_body_reaches_the_ssd300_grids():
    """The tiny body's layers have strides 2, 2, 2, 1, 2, 1, 2, 1; a 3x3 conv of stride 2 and padding 1 takes
    n cells to ceil(n/2): 300, 150, 75, 38, 38, 19, 19, 10, 10. The head reads the last layer of 38 (the 4th),
    of 19 (the 6th) and of 10 (the 8th), 64, 128 and 256 channels."""
    m = ssd300().eval()
    assert m.head.taps == (3, 5, 7)
    shapes = layer_shapes(m, torch.zeros(1, 3, 300, 300))
    assert shapes["features"] == [(1, 64, 38, 38), (1, 128, 19, 19), (1, 256, 10, 10)]
    assert shapes["grids"] == [*shapes["features"], (1, 16, 5, 5), (1, 16, 3, 3), (1, 16, 1, 1)]


def _conv(n_in, n_out, k):
    return n_in * n_out * k * k + n_out


@pytest.mark.parametrize("body, body_weights", [("tiny", 1_168_144), ("resnet34", 21_284_672)])
def test_weight_count_is_the_body_s_plus_the_head_s(body, body_weights, torchvision_ssd300):
    """The head: per map a 3x3 class conv (k (C+1) outputs) and box conv (4k); per extra layer a 1x1 conv to
    n_hidden/2, a 3x3 conv to n_hidden, and two batch norms (2 weights per channel)."""
    n = 256
    m = ssd300(body=body, n_hidden=n)
    chans = {"tiny": (64, 128, 256), "resnet34": RESNET_CHANNELS["resnet34"]}[body] + (n, n, n)
    outs = sum(_conv(c, k * (C + 1), 3) + _conv(c, k * 4, 3) for c, k in zip(chans, (4, 6, 6, 6, 4, 4)))
    extras = sum(_conv(c, n // 2, 1) + 2 * (n // 2) + _conv(n // 2, n, 3) + 2 * n for c in (chans[2], n, n))
    assert sum(p.numel() for p in m.body.parameters()) == body_weights  # ResNet34 without its fc: 21,797,672 - 513,000
    assert sum(p.numel() for p in m.head.parameters()) == outs + extras
    total = sum(p.numel() for p in m.parameters())
    assert total == {"tiny": 3_537_790, "resnet34": 24_263_086}[body]
    assert total < sum(p.numel() for p in torchvision_ssd300[0].parameters())  # VGG16's SSD300: 26.3M


# ---------------------------------------------------------------- anchor order
@pytest.mark.parametrize("grid_i, r, c, s", [(0, 0, 0, 0), (0, 37, 5, 3), (1, 4, 18, 5), (2, 9, 0, 2), (3, 2, 3, 1),
                                             (4, 1, 1, 3), (5, 0, 0, 2)])
def test_a_cells_activation_lands_on_that_cells_anchor(grid_i, r, c, s):
    """Only cell (r, c) of grid grid_i's map is on, and its output conv's centre tap connects it to one class
    channel and one box channel of scale s: exactly anchor (grid, r, c, s) of make_anchors lights up."""
    spec = AnchorSpec.ssd300()
    m = ssd300().eval()
    anchors = make_anchors(spec)
    with torch.no_grad():
        for out in m.head.outs:
            for conv in (out.classes, out.boxes):
                conv.weight.zero_(), conv.bias.zero_()
        out = m.head.outs[grid_i]
        out.classes.weight[s * (C + 1) + 7, 0, 1, 1] = 1.0
        out.boxes.weight[s * 4 + 2, 0, 1, 1] = 1.0

    def one_cell(mod, inputs):
        x = torch.zeros_like(inputs[0])
        x[:, 0, r, c] = 1.0
        return (x,)

    handle = out.register_forward_pre_hook(one_cell)
    try:
        with torch.no_grad():
            class_logits, box_actns = m(torch.zeros(1, 3, 300, 300))
    finally:
        handle.remove()
    for t, col in ((class_logits, 7), (box_actns, 2)):
        (hit,) = torch.nonzero(t[0]).tolist()
        assert hit[1] == col
        info = anchors.info(hit[0])
        assert (info.grid, info.row, info.col, info.scale) == (spec.grids[grid_i], r, c, s)


def test_a_grids_bias_lights_up_that_grids_anchors_of_one_scale():
    """Every output conv zero but one grid's box bias of one scale: the anchors that light up are
    make_anchors' for that grid and scale, all its cells, in its order."""
    spec = AnchorSpec.ssd300()
    m = ssd300().eval()
    anchors = make_anchors(spec)
    for grid_i, s in ((0, 1), (2, 5), (5, 3)):
        with torch.no_grad():
            for out in m.head.outs:
                for conv in (out.classes, out.boxes):
                    conv.weight.zero_(), conv.bias.zero_()
            m.head.outs[grid_i].boxes.bias[s * 4 + 1] = 1.0
            _, box_actns = m(torch.randn(1, 3, 300, 300))
        lit = torch.nonzero(box_actns[0, :, 1]).flatten()
        assert torch.equal(lit, anchors.select(spec.grids[grid_i], s)) and torch.count_nonzero(box_actns) == len(lit)


# ---------------------------------------------------------------- specs the head cannot reach
@pytest.mark.parametrize("config, says", [
    (ModelConfig.ssd300(body="tiny", size=224), r"grids \[38, 19, 10\] cannot be reached by the SSD300 head: the tiny "
     r"body at 224 pixels gives feature maps \[28, 14, 7\] at strides 8 and up, and the extra layers go on from 7"),
    (ModelConfig.ssd300(body="tiny", spec=AnchorSpec(grids=(38, 10, 4, 1))), r"grids \[4, 1\] cannot be reached"),  # 10 to 4: no
    (ModelConfig.ssd300(body="tiny", spec=AnchorSpec(grids=(75, 19))), r"grids \[75\] cannot be reached"),
    (ModelConfig(body="tiny", size=300, spec=AnchorSpec.ssd300()), r"grids \[38, 19\] cannot be reached: "
     r"the body's 10x10 feature map gives grids \[10, 5, 3, 2, 1\]"),  # the lesson's head: one map, stride-2 convs
])
def test_a_spec_a_head_cannot_reach_is_refused_naming_the_grids(config, says):
    with pytest.raises(ValueError, match=says):
        create_ssd_model(config, pretrained=False)


def test_other_specs_the_head_reaches():
    """Fewer maps, or other extra steps (10 to 8 unpadded, 8 to 4 with stride 2): as long as each is one 3x3 conv."""
    for grids in ((19, 10, 5), (38, 8, 4, 2, 1), (10,)):
        spec = AnchorSpec(grids=grids)
        m = ssd300(spec=spec).eval()
        with torch.no_grad():
            c, b = m(torch.zeros(1, 3, 300, 300))
        assert c.shape == (1, spec.n_anchors, C + 1) and b.shape == (1, spec.n_anchors, 4)
        assert [s[-1] for s in layer_shapes(m, torch.zeros(1, 3, 300, 300))["grids"]] == list(grids)


# ---------------------------------------------------------------- checkpoints
def test_checkpoint_round_trip_gives_identical_outputs(model, tmp_path):
    x = torch.randn(2, 3, 300, 300, generator=torch.Generator().manual_seed(3))
    path = save_checkpoint(model, tmp_path / "ssd300.pth")
    saved = torch.load(path, weights_only=True)["model"]
    assert saved["head"] == "ssd300" and saved["size"] == 300
    loaded = load_checkpoint(path)
    assert loaded.config == model.config and loaded.head.taps == model.head.taps
    assert type(loaded.head).__name__ == "SSD300Head" and loaded.spec == AnchorSpec.ssd300()
    with torch.no_grad():
        for a, b in zip(model(x), loaded(x)):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


#: Outputs of the shipped checkpoints on one seeded batch, from the code before SSD300's head existed:
#: (sum of class_logits, sum of box_actns, class_logits[1, 100, :3], box_actns[0, 5]).
SHIPPED_OUTPUTS = {
    "ssd_collage.pth": (-153548.56945, 107.24234, [-22.661360, -22.174099, -22.783772],
                        [-0.132831, -0.126891, -0.926739, -0.615365]),
    "base/ssd_collage_anchors.pth": (-93435.75529, -116.69854, [-14.874611, -14.568857, -14.745305],
                                     [-0.975669, -1.808343, 0.808301, -1.361008]),
    "paper/ssd_collage_paper.pth": (1117097.2347, 38788.19317, [-8.132441, -8.249800, -7.290819],
                                    [-1.788503, 1.177029, 1.825413, -0.272836]),
}


@pytest.mark.parametrize("name", sorted(SHIPPED_OUTPUTS))
def test_shipped_checkpoints_load_as_the_lesson_s_head_with_the_same_outputs(name):
    """Two in the older layout, one in the current layout saved before ModelConfig had a head: all the lesson's."""
    from ssd_lesson.model.checkpoint import CHECKPOINT_DIR

    m = load_checkpoint(CHECKPOINT_DIR / name)
    assert m.config.head == "lesson" and type(m.head).__name__ == "SSDHead"
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        c, b = m(x)
    c_sum, b_sum, c_row, b_row = SHIPPED_OUTPUTS[name]
    assert c.double().sum().item() == pytest.approx(c_sum, rel=1e-6)
    assert b.double().sum().item() == pytest.approx(b_sum, rel=1e-5, abs=1e-3)
    torch.testing.assert_close(c[1, 100, :3], torch.tensor(c_row), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(b[0, 5], torch.tensor(b_row), rtol=1e-5, atol=1e-5)
