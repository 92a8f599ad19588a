"""Draw the check plot of data/annotations: every photograph with its numbered boxes.

    python scripts/plot_photo_annotations.py [out/photo_annotations.png]
"""
from __future__ import annotations

import sys

from ssd_lesson.drawing.draw import plot_photo_annotations

if __name__ == "__main__":
    out = plot_photo_annotations(sys.argv[1] if len(sys.argv) > 1 else "out/photo_annotations.png")
    print(f"wrote {out}")
