"""The model's configuration: everything that rebuilds the network of a checkpoint, in one value.

:class:`ModelConfig` is the body, the input size, the head's hidden channels, dropout and initial
class bias, the anchor spec, the class names and which head (the lesson's, or SSD300's:
:meth:`ModelConfig.ssd300`). :func:`~ssd_lesson.model.net.create_ssd_model`
builds a model from it, the model carries it (``model.config``) and a checkpoint stores it, so a
new setting of the network is one field here. (A second box coding, when one exists, joins as a
field too.) Boxes are ``(y0, x0, y1, x1)`` fractions of the image throughout.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

from ..core.anchors import AnchorSpec
from ..data.voc import VOC_CLASSES
from . import BODIES, HEADS

__all__ = ["SSD300_SIZE", "ModelConfig", "resolve_model_config", "spec_to_dict", "spec_from_dict"]

#: SSD300's input: 300 x 300 pixels, where strides 8, 16 and 32 give its 38, 19 and 10 grids.
SSD300_SIZE = 300


def spec_to_dict(spec: AnchorSpec) -> dict:
    """An :class:`AnchorSpec` as plain lists (for saving)."""
    return dataclasses.asdict(spec)


def spec_from_dict(d: Mapping[str, Any]) -> AnchorSpec:
    """Inverse of :func:`spec_to_dict`."""
    tup = lambda x: tuple(tup(v) for v in x) if isinstance(x, (list, tuple)) else x  # noqa: E731
    return AnchorSpec(**{k: (None if v is None else tup(v)) for k, v in d.items()})


@dataclass(frozen=True)
class ModelConfig:
    """What builds the lesson's SSD: ``create_ssd_model(config)``.

    body: one of :data:`~ssd_lesson.model.BODIES`; size: the input images' height and width in pixels
    (the model takes ``(B, 3, size, size)``); n_hidden: channels of the head's conv blocks; drop: their
    dropout; class_bias: the initial bias of every class logit (the lesson's -4: sigmoid ~ 0.02, "mostly
    nothing here"); spec: the anchor boxes (:class:`AnchorSpec`); class_names: the object classes in
    output order (default the 20 VOC classes; background is the extra, last logit); head: ``"lesson"``,
    the lesson's head on the body's last feature map, or ``"ssd300"``, SSD300's, on three of the body's
    feature maps and three extra layers (:mod:`ssd_lesson.model.ssd300`; with it, ``n_hidden`` is the
    channels of the extra layers). :meth:`ssd300` is SSD300 whole: 300 px, its 8732 anchors, its head.
    """

    body: str = "resnet34"
    size: int = 224
    n_hidden: int = 256
    drop: float = 0.1
    class_bias: float = -4.0
    spec: AnchorSpec = AnchorSpec()
    class_names: tuple[str, ...] = VOC_CLASSES
    head: str = "lesson"

    def __post_init__(self) -> None:
        if self.body not in BODIES:
            raise ValueError(f"unknown body {self.body!r}; choose one of {BODIES}")
        if self.head not in HEADS:
            raise ValueError(f"ModelConfig.head must be one of {HEADS}, got {self.head!r}")
        for name in ("size", "n_hidden"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"ModelConfig.{name} must be an integer >= 1, got {value!r}")
            object.__setattr__(self, name, int(value))
        if isinstance(self.drop, bool) or not isinstance(self.drop, numbers.Real) or not 0 <= self.drop < 1:
            raise ValueError(f"ModelConfig.drop must be a probability in [0, 1), got {self.drop!r}")
        if isinstance(self.class_bias, bool) or not isinstance(self.class_bias, numbers.Real) \
                or not math.isfinite(self.class_bias):
            raise ValueError(f"ModelConfig.class_bias must be a finite number, got {self.class_bias!r}")
        object.__setattr__(self, "drop", float(self.drop))
        object.__setattr__(self, "class_bias", float(self.class_bias))
        if not isinstance(self.spec, AnchorSpec):
            raise ValueError(f"ModelConfig.spec must be an AnchorSpec, got {type(self.spec).__name__}")
        if isinstance(self.class_names, str) or not isinstance(self.class_names, Sequence):
            raise ValueError(f"ModelConfig.class_names must be a sequence of names, got {self.class_names!r}")
        names = tuple(self.class_names)
        if not names or not all(isinstance(n, str) and n for n in names) or len(set(names)) != len(names):
            raise ValueError(f"ModelConfig.class_names must be distinct non-empty names, at least one, got {names}")
        object.__setattr__(self, "class_names", names)

    @classmethod
    def ssd300(cls, **fields: Any) -> "ModelConfig":
        """SSD300: 300 px images, the 8732 anchors of :meth:`AnchorSpec.ssd300` and the ``"ssd300"`` head;
        ``fields`` (body, n_hidden, class_names, ...) as for a :class:`ModelConfig`."""
        return cls(**{"size": SSD300_SIZE, "spec": AnchorSpec.ssd300(), "head": "ssd300", **fields})

    @property
    def n_classes(self) -> int:
        """The number of object classes C (the model gives C+1 logits per anchor box, background last)."""
        return len(self.class_names)

    def replace(self, **changes: Any) -> "ModelConfig":
        """A copy with ``changes`` (checked like a new one)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain values (for a checkpoint, read with ``weights_only=True``)."""
        return dict(body=self.body, size=self.size, n_hidden=self.n_hidden, drop=self.drop, class_bias=self.class_bias,
                    spec=spec_to_dict(self.spec), class_names=list(self.class_names), head=self.head)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ModelConfig":
        """Inverse of :meth:`to_dict`; a missing or unknown key is a ``ValueError`` naming it, except ``head``:
        configurations saved before there was a choice of head are the lesson's."""
        d = {"head": "lesson", **d}
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown, missing = sorted(set(d) - fields), sorted(fields - set(d))
        if unknown or missing:
            raise ValueError(f"a model configuration needs {sorted(fields)}; "
                             + "; ".join(f"{what}: {names}" for what, names in (("unknown", unknown), ("missing", missing))
                                         if names))
        return cls(**{**d, "spec": spec_from_dict(d["spec"])})


def resolve_model_config(config: Optional[ModelConfig] = None, *, n_classes: Optional[int] = None,
                         **fields: Any) -> ModelConfig:
    """``config`` itself, or a :class:`ModelConfig` of the given ``fields`` (the others its defaults); never both:
    a ``TypeError`` names the fields given beside a config. ``fields`` left None count as not given.

    ``n_classes``, the older spelling, must agree with ``class_names``; without them only the 20 VOC classes
    can be meant (a ``ValueError`` otherwise)."""
    given = {k: v for k, v in fields.items() if v is not None}
    if config is not None:
        if not isinstance(config, ModelConfig):
            raise TypeError(f"config must be a ModelConfig, got {type(config).__name__}")
        if given or n_classes is not None:
            raise TypeError(f"give a ModelConfig or its fields as keywords, not both (got config and "
                            f"{', '.join(sorted([*given, *(['n_classes'] if n_classes is not None else [])]))})")
        return config
    names = given.get("class_names")
    if n_classes is not None and names is None and n_classes != len(VOC_CLASSES):
        raise ValueError(f"n_classes={n_classes}: pass class_names (the default names are the {len(VOC_CLASSES)} "
                         "VOC classes)")
    if n_classes is not None and names is not None and len(names) != n_classes:
        raise ValueError(f"{len(names)} class_names given for n_classes={n_classes}")
    return ModelConfig(**given)
