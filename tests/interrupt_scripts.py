"""Small programs the interrupt tests run as real subprocesses (``python -m tests.interrupt_scripts WHAT ...``)."""
from __future__ import annotations

import sys
import time
from pathlib import Path


def slow_checkpoint_write(path: str, ready: str) -> None:
    """Save a checkpoint of a small model at ``path`` with a torch.save that stops halfway through writing
    (touching ``ready`` then) until a signal comes."""
    import torch

    from ssd_lesson.model import checkpoint
    from ssd_lesson.model.config import ModelConfig

    real_save = torch.save

    def slow_save(obj, f, *a, **k):
        real_save(obj, f, *a, **k)
        data = Path(f).read_bytes()
        Path(f).write_bytes(data[: len(data) // 2])  # half written, as at an interrupt mid-write
        Path(ready).touch()
        time.sleep(3)  # the signal comes now
        Path(f).write_bytes(data)

    class Small(torch.nn.Module):
        config = ModelConfig(body="tiny", class_names=("cat", "dog"))

        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(4, 2)

    checkpoint.torch.save = slow_save
    checkpoint.save_checkpoint(Small(), path)
    print("saved", flush=True)


def notebooks(series: str, *argv: str) -> int:
    """``python -m ssd_lesson notebooks ARGV`` on the series in folder ``series``."""
    from ssd_lesson.commands import notebooks as N
    from ssd_lesson.__main__ import main

    N.NOTEBOOK_DIR = Path(series)
    return main(["notebooks", *argv])


def collage(n_images: str, seed: str, out: str) -> None:
    """Ask for the collage set at ``out`` (as ``train`` does), then read every image and annotation of it."""
    from ssd_lesson.data.collage import make_collage_once
    from ssd_lesson.data.transforms import load_image
    from ssd_lesson.data.voc import load_voc

    make_collage_once(int(n_images), int(seed), out)
    records = load_voc(out, "trainval")
    for r in records:
        load_image(r.image_path)
    print(f"read {len(records)} images", flush=True)


if __name__ == "__main__":
    what, *args = sys.argv[1:]
    sys.exit({"slow_checkpoint_write": slow_checkpoint_write, "notebooks": notebooks, "collage": collage}[what](*args))
