"""The model's configuration: one checked value, plain values both ways, and the keyword spelling resolved to it."""
from __future__ import annotations

import pytest

from ssd_lesson import AnchorSpec
from ssd_lesson.data.voc import VOC_CLASSES
from ssd_lesson.model.config import ModelConfig, resolve_model_config


def test_defaults_are_the_lesson_s_model():
    config = ModelConfig()
    assert (config.body, config.size, config.n_hidden, config.drop, config.class_bias) == ("resnet34", 224, 256, 0.1, -4.0)
    assert config.spec == AnchorSpec() and config.class_names == VOC_CLASSES and config.n_classes == 20


def test_plain_values_round_trip():
    config = ModelConfig(body="tiny", size=160, n_hidden=64, drop=0.0, class_bias=-3, spec=AnchorSpec(grids=(5, 3, 1)),
                         class_names=["cat", "dog"])
    plain = config.to_dict()
    assert plain["class_names"] == ["cat", "dog"] and plain["spec"]["grids"] == (5, 3, 1) and plain["class_bias"] == -3.0
    assert ModelConfig.from_dict(plain) == config and config.class_names == ("cat", "dog")
    with pytest.raises(ValueError, match=r"unknown: \['head_kwargs'\]; missing: \['class_bias', 'drop', 'n_hidden'\]"):
        ModelConfig.from_dict({**{k: v for k, v in plain.items() if k not in ("n_hidden", "drop", "class_bias")},
                               "head_kwargs": {}})


@pytest.mark.parametrize("field, value, says", [
    ("body", "vgg", "unknown body 'vgg'; choose one of"),
    ("size", 0, "ModelConfig.size must be an integer >= 1, got 0"),
    ("n_hidden", 12.5, "ModelConfig.n_hidden must be an integer >= 1, got 12.5"),
    ("n_hidden", True, "ModelConfig.n_hidden must be an integer >= 1, got True"),
    ("drop", 1.0, r"ModelConfig.drop must be a probability in \[0, 1\), got 1.0"),
    ("class_bias", float("nan"), "ModelConfig.class_bias must be a finite number, got nan"),
    ("spec", (4, 2, 1), "ModelConfig.spec must be an AnchorSpec, got tuple"),
    ("class_names", "cat", "ModelConfig.class_names must be a sequence of names, got 'cat'"),
    ("class_names", ("cat", "cat"), "must be distinct non-empty names"),
    ("class_names", (), "must be distinct non-empty names"),
])
def test_a_wrong_field_is_named(field, value, says):
    with pytest.raises(ValueError, match=says):
        ModelConfig(**{field: value})


def test_resolve_takes_a_config_or_its_fields_never_both():
    config = ModelConfig(body="tiny", n_hidden=128)
    assert resolve_model_config(config) is config
    assert resolve_model_config(None, body="tiny", n_hidden=128, drop=None) == config  # None: not given
    with pytest.raises(TypeError, match="give a ModelConfig or its fields as keywords, not both "
                                        r"\(got config and n_classes, n_hidden\)"):
        resolve_model_config(config, n_hidden=64, n_classes=20)
    with pytest.raises(TypeError, match="config must be a ModelConfig, got dict"):
        resolve_model_config({"body": "tiny"})
    names = ("cat", "dog")
    assert resolve_model_config(None, n_classes=2, class_names=names).class_names == names
    assert resolve_model_config(None, n_classes=20).class_names == VOC_CLASSES
    with pytest.raises(ValueError, match="n_classes=2: pass class_names"):
        resolve_model_config(None, n_classes=2)
    with pytest.raises(ValueError, match="2 class_names given for n_classes=3"):
        resolve_model_config(None, n_classes=3, class_names=names)


def test_the_head_field_and_the_ssd300_preset():
    config = ModelConfig.ssd300(body="tiny", n_hidden=16)
    assert (config.head, config.size, config.spec, config.body, config.n_hidden) == ("ssd300", 300, AnchorSpec.ssd300(),
                                                                                     "tiny", 16)
    assert config.spec.n_anchors == 8732 and ModelConfig().head == "lesson"
    plain = config.to_dict()
    assert plain["head"] == "ssd300" and ModelConfig.from_dict(plain) == config
    # saved before there was a choice of head: the lesson's
    before = {k: v for k, v in ModelConfig(body="tiny").to_dict().items() if k != "head"}
    assert ModelConfig.from_dict(before) == ModelConfig(body="tiny") and ModelConfig.from_dict(before).head == "lesson"
    with pytest.raises(ValueError, match=r"ModelConfig.head must be one of \('lesson', 'ssd300'\), got 'ssd512'"):
        ModelConfig(head="ssd512")
    assert ModelConfig.ssd300(size=512).size == 512  # the fields given win
