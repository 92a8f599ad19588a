"""Mixed-precision training (``train --amp``): the model's convolutions in bfloat16 or float16, the loss in float32.

:func:`amp_mode` turns the command's choice into the mode used on a device: ``auto`` is bfloat16 on a CPU
and on a GPU that has it, float16 on an older GPU; float16 on a CPU is refused (CPU autocast is
bfloat16's). :class:`DeviceMixedPrecision` is fastai's ``MixedPrecision`` callback (autocast around the forward
pass and the loss, a gradient scaler for float16) with autocast on the device the batches are on
(fastai's always names CUDA, so on a CPU it would do nothing). The SSD loss turns autocast off and
reads the activations as float32 (:class:`~ssd_lesson.model.train.SSDLoss`): matching, IoU and the box
coding stay exact.
"""
from __future__ import annotations

import torch
from fastai.callback.fp16 import MixedPrecision
from fastcore.foundation import L

from . import AMP_CHOICES

__all__ = ["AMP_CHOICES", "DTYPES", "amp_mode", "DeviceMixedPrecision", "amp_callbacks"]

#: The autocast type of each mode.
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def amp_mode(choice: str, device_type: str) -> str:
    """``off``, ``bf16`` or ``fp16``: the mode ``choice`` (one of :data:`AMP_CHOICES`) means on ``device_type``
    (``"cpu"`` or ``"cuda"``). ``ValueError`` naming ``--amp`` for a choice the device cannot run."""
    if choice not in AMP_CHOICES:
        raise ValueError(f"--amp must be one of {', '.join(AMP_CHOICES)}, got {choice!r}")
    gpu_bf16 = device_type == "cuda" and torch.cuda.is_bf16_supported()
    if choice == "auto":
        return "bf16" if device_type != "cuda" or gpu_bf16 else "fp16"
    if choice == "fp16" and device_type != "cuda":
        raise ValueError(f"--amp fp16: float16 mixed precision needs a CUDA GPU, and this run trains on the "
                         f"{device_type.upper()}; use --amp bf16 (or auto) there, or --amp off")
    if choice == "bf16" and device_type == "cuda" and not gpu_bf16:
        raise ValueError("--amp bf16: this GPU has no bfloat16; use --amp fp16 (or auto), or --amp off")
    return choice


class DeviceMixedPrecision(MixedPrecision):
    """fastai's ``MixedPrecision`` with autocast on the batches' device (``"cpu"`` or ``"cuda"``).

    ``mode``: ``"bf16"`` (no gradient scaler: bfloat16 has float32's range) or ``"fp16"`` (CUDA only,
    with fastai's use of a scaler that skips the steps whose gradients overflow).
    """

    def __init__(self, mode: str):
        super().__init__(amp_mode=mode)

    def before_fit(self) -> None:
        device = getattr(self.dls, "device", None)
        device_type = torch.device(device).type if device is not None else "cpu"
        dtype = DTYPES[self.amp_mode.value]
        self.autocast = torch.autocast(device_type, dtype=dtype)
        self.learn.scaler = torch.amp.GradScaler(device_type, enabled=dtype == torch.float16, **self.kwargs)
        self.scales = L()


def amp_callbacks(mode: str) -> list[DeviceMixedPrecision]:
    """``[DeviceMixedPrecision(mode)]``, or none for ``"off"``."""
    return [] if mode == "off" else [DeviceMixedPrecision(mode)]
