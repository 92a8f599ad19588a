"""Execute the numbered notebook series in order, for instructors and CI.

Executed copies go to an output folder, so a learner's own edits to the
notebooks are never overwritten; ``--inplace`` (for maintainers) refreshes the
committed notebooks themselves.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"


def series(folder: Optional[Path] = None) -> list[Path]:
    """The numbered notebooks ``01_*.ipynb``, ``02_*.ipynb``, ... in order (default: :data:`NOTEBOOK_DIR`)."""
    folder = NOTEBOOK_DIR if folder is None else folder
    found = sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))
    if not found:
        raise FileNotFoundError(f"no numbered notebooks (01_*.ipynb, ...) in {folder}")
    return found


def execute_series(out_dir: Optional[Path], html_dir: Optional[Path] = None, inplace: bool = False,
                   only: Optional[str] = None, timeout: int = 600, folder: Optional[Path] = None) -> dict[str, float]:
    """Run each notebook top to bottom in its own kernel; return seconds per notebook."""
    import nbformat
    from fastprogress.fastprogress import progress_bar
    from nbclient import NotebookClient

    paths = [p for p in series(folder) if only is None or only in p.name]
    if not paths:
        raise FileNotFoundError(f"no notebook in {folder or NOTEBOOK_DIR} matches {only!r}")
    if not inplace:
        out_dir = Path(out_dir or "ssd_lesson_out/notebooks")
        out_dir.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}
    for path in progress_bar(paths):
        nb = nbformat.read(path, as_version=4)
        start = time.perf_counter()
        # Notebooks run from their own folder, as in JupyterLab.
        NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
        times[path.name] = time.perf_counter() - start
        nbformat.write(nb, path if inplace else out_dir / path.name)
        if html_dir is not None:
            from nbconvert import HTMLExporter

            Path(html_dir).mkdir(parents=True, exist_ok=True)
            body, _ = HTMLExporter().from_notebook_node(nb)
            (Path(html_dir) / path.with_suffix(".html").name).write_text(body, encoding="utf-8")
    return times


def notebooks_main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m ssd_lesson notebooks", description=__doc__)
    p.add_argument("--execute", action="store_true", help="execute the series in order")
    p.add_argument("--out", type=Path, default=Path("ssd_lesson_out/notebooks"), help="where executed copies go")
    p.add_argument("--inplace", action="store_true", help="overwrite the notebooks in notebooks/ (maintainers)")
    p.add_argument("--html", type=Path, default=None, help="also export each executed notebook as HTML here")
    p.add_argument("--only", default=None, help="run only notebooks whose name contains this")
    args = p.parse_args(argv)
    try:
        paths = series()
    except FileNotFoundError:
        print(f"ssd_lesson notebooks: no notebook series in {NOTEBOOK_DIR}; the notebooks live in the repository "
              "checkout (notebooks/), not in the installed package: clone the repository and run this there",
              file=sys.stderr)
        return 2
    if not args.execute:
        for path in paths:
            print(path.name)
        print("\nadd --execute to run them (copies go to --out; --inplace for maintainers)")
        return 0
    times = execute_series(args.out, args.html, args.inplace, args.only)
    for name, sec in times.items():
        print(f"{name:<40} {sec:6.1f} s")
    print(f"{'total':<40} {sum(times.values()):6.1f} s")
    return 0
