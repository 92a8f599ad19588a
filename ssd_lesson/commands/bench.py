"""``python -m ssd_lesson bench``: the loss benchmark of ``benchmarks/bench_loss.py``.

The benchmark lives with the repository, not the installed package: its method (3) is
the lesson's per-image loop of ``tests/reference/lesson_loop.py``. This module finds the
checkout next to the package and runs the benchmark's :func:`main` there.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Optional, Sequence

BENCH_FILE = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_loss.py"


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``benchmarks/bench_loss.py`` with ``argv`` (``--help`` lists the options); returns the exit code."""
    if not BENCH_FILE.is_file():
        print(f"ssd_lesson bench: {BENCH_FILE} not found; the benchmark needs the repository checkout "
              "(benchmarks/), not just the installed package", file=sys.stderr)
        return 2
    spec = importlib.util.spec_from_file_location("ssd_lesson_bench_loss", BENCH_FILE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return int(module.main(argv) or 0)


if __name__ == "__main__":
    sys.exit(main())
