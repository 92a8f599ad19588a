"""The slider the focal and detection widgets share, and the check of a value set from code."""
from __future__ import annotations

import math
import numbers
from typing import Any

import ipywidgets as W
import numpy as np
import torch

from .base import refuse

__all__ = ["value_slider", "finite_value"]


def value_slider(name: str, value: float, lo: float, hi: float, step: float) -> W.FloatSlider:
    """A slider named ``name`` from ``lo`` to ``hi`` in steps of ``step``, starting at ``value``;
    it reports while it is dragged (``continuous_update``), its value to two decimals."""
    return W.FloatSlider(value=value, min=lo, max=hi, step=step, description=name, readout_format=".2f",
                         continuous_update=True, style={"description_width": "90px"}, layout=W.Layout(width="340px"))


def finite_value(name: str, value: Any, lo: float, hi: float, where: str = "set") -> float:
    """``value`` as a float for the slider ``name`` (which clamps it to ``[lo, hi]``); NaN is a ``ValueError``,
    anything but a number (text, a bool, a list) a ``TypeError`` naming ``where`` and ``name``."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        refuse(where, name, f"a number (the slider takes {lo:g} to {hi:g})", value, TypeError)
    v = float(value)
    if math.isnan(v):
        raise ValueError(f"{name} = nan is not a number; the slider takes {lo:g} to {hi:g}")
    return v
