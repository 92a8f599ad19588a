"""Execute the numbered notebook series in order, for instructors and CI; export it as HTML.

Executed copies go to an output folder (--out), so a learner's own edits to the
notebooks are never overwritten; --inplace (for maintainers) refreshes the
committed notebooks themselves. --html DIR writes pages that work offline:
each widget shows its own figure as a static image (the widget embeds it in its
display data; for notebooks saved without it, it comes from the saved widget
state), its formulas are typeset at export time (ssd_lesson.drawing.formulas), and
no script is loaded from a CDN: the pages need no network at all.
"""
from __future__ import annotations

import argparse
import copy
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

from ..io.files import atomic_write
from .cli import HelpFormatter
from .site import page_copy, page_name, write_index

if TYPE_CHECKING:
    import nbformat

NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "notebooks"
DEFAULT_OUT = Path("ssd_lesson_out/notebooks")
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
#: What ``--help`` says: the module docstring's content, in plain text.
DESCRIPTION = ("Execute the numbered notebook series in order, for instructors and CI; export it as HTML. "
               "Executed copies go to an output folder (--out), so a learner's own edits to the notebooks are never "
               "overwritten; --inplace (for maintainers) refreshes the committed notebooks themselves. --html DIR "
               "writes pages that work offline: each widget shows its own figure as a static image, its formulas "
               "are typeset at export time, and no script is loaded from a CDN.")


def series(folder: Optional[Path] = None) -> list[Path]:
    """The numbered notebooks ``01_*.ipynb``, ``02_*.ipynb``, ... in order (default: :data:`NOTEBOOK_DIR`)."""
    folder = NOTEBOOK_DIR if folder is None else folder
    found = sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))
    if not found:
        raise FileNotFoundError(f"no numbered notebooks (01_*.ipynb, ...) in {folder}")
    return found


def check_notebook_outputs(out_dir: Optional[Path], html_dir: Optional[Path], inplace: bool,
                           key: bool = False) -> None:
    """Refuse, before any notebook runs, outputs that would overwrite the series or cannot be written.

    ``--out`` naming the series' own folder rewrites the committed notebooks: that is ``--inplace``,
    which must be asked for by name, and never for the instructors' ``key`` (``--solutions``), which
    would replace the learners' notebooks with the solved ones. ``UserError`` naming the option.
    """
    from .cli import UserError, check_writable

    if inplace:
        check_writable(NOTEBOOK_DIR, "--inplace", folder=True, entries=("*.ipynb",))
    else:
        out_dir = Path(out_dir or DEFAULT_OUT)
        if out_dir.resolve() == NOTEBOOK_DIR.resolve():
            if key:
                raise UserError(f"--out {out_dir} is the notebook series itself: --solutions would replace the "
                                "learners' notebooks with the solved key; choose another --out")
            raise UserError(f"--out {out_dir} is the notebook series itself: its notebooks would be overwritten; "
                            "pass --inplace if that is what you mean (maintainers), or choose another --out")
        check_writable(out_dir, "--out", folder=True, entries=("*.ipynb",))  # what is written there: no FIFO, no device
    if html_dir is not None:
        check_writable(html_dir, "--html", folder=True, entries=("*.html",))


def execute_series(out_dir: Optional[Path], html_dir: Optional[Path] = None, inplace: bool = False,
                   only: Optional[str] = None, timeout: int = 600, folder: Optional[Path] = None,
                   key: bool = False) -> dict[str, float]:
    """Run each notebook top to bottom in its own kernel; return seconds per notebook.

    Each executed notebook is written whole or not at all (:func:`~ssd_lesson.io.files.atomic_write`).
    Ctrl-C stops the running notebook's kernel and raises :class:`SeriesInterrupted`, which says
    which notebooks were completed. ``out_dir`` may not be the series' own folder unless ``inplace``.
    """
    import nbformat
    from fastprogress.fastprogress import progress_bar

    paths = [p for p in series(folder) if only is None or only in p.name]
    if not paths:
        raise FileNotFoundError(f"no notebook in {folder or NOTEBOOK_DIR} matches {only!r}")
    if not inplace:
        out_dir = Path(out_dir or DEFAULT_OUT)
        if out_dir.resolve() == paths[0].parent.resolve():
            raise ValueError(f"out_dir {out_dir} is the series' own folder: pass inplace=True to overwrite its notebooks")
        out_dir.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}
    stems, executed = [p.stem for p in paths], []
    bar = progress_bar(paths)
    for path in bar:
        bar.comment = f"running {path.stem}"  # a notebook can take minutes: say which one, now
        bar.update(len(times))
        nb = nbformat.read(path, as_version=4)
        start = time.perf_counter()
        _execute(nb, path, timeout, done=list(times), out=path.parent if inplace else out_dir)
        times[path.name] = time.perf_counter() - start
        with atomic_write(path if inplace else out_dir / path.name) as tmp:
            nbformat.write(nb, str(tmp))
        if html_dir is not None:
            export_page(nb, html_dir, stems, path.stem, key)
            executed.append((path.stem, nb))
    if html_dir is not None:
        write_index(html_dir, executed, key)
    return times


def export_page(nb, html_dir: Path, stems: Sequence[str], stem: str, key: bool = False) -> Path:
    """The page of notebook ``stem`` (one of the exported ``stems``) in ``html_dir``: linked to its neighbours
    and the index (:func:`ssd_lesson.commands.site.page_copy`), marked when it is the instructors' ``key``."""
    return export_html(page_copy(nb, stems, stem, key), Path(html_dir) / page_name(stem, key))


class SeriesInterrupted(Exception):
    """Ctrl-C while ``running`` executed; ``done`` notebooks were completed and written to ``out``."""

    def __init__(self, running: str, done: list[str], out: Path):
        self.running, self.done, self.out = running, done, out
        finished = f"{len(done)} completed ({', '.join(done)}), written to {out}" if done else "none completed"
        super().__init__(f"interrupted while running {running} (its kernel is stopped, nothing written for it); "
                         f"notebooks {finished}")


def _execute(nb, path: Path, timeout: int, done: list[str], out: Path) -> None:
    """Execute ``nb`` in its own kernel, from ``path``'s folder as in JupyterLab.

    On Ctrl-C (or SIGTERM) nbclient's own signal handler stops the kernel, and the execution then fails
    (``DeadKernelError``, then an ``AssertionError`` from its clean-up): that is :class:`SeriesInterrupted`.
    """
    from nbclient import NotebookClient

    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    with tempfile.TemporaryFile("w+") as kernel_log:  # the kernel's own stderr: shown only if it fails
        try:
            client.execute(stderr=kernel_log)
        except BaseException as e:
            # nbclient keeps the clean-up its signal handler started here: it is set only after a signal
            if isinstance(e, KeyboardInterrupt) or getattr(client, "_async_cleanup_kernel_future", None) is not None:
                raise SeriesInterrupted(path.name, done, out) from None
            if type(e).__name__ == "DeadKernelError":  # the kernel died on its own: its stderr says why
                kernel_log.seek(0)
                sys.stderr.write(kernel_log.read()[-4000:])
            raise


def _widget_images(state: dict, model_id: str) -> list[tuple[str, str]]:
    """``(mime, base64)`` of every ``Image`` widget in the saved widget tree under ``model_id``, in display order."""
    found, seen, todo = [], set(), [model_id]
    while todo:
        mid = todo.pop(0)
        if mid in seen or mid not in state:
            continue
        seen.add(mid)
        model = state[mid]
        if model.get("model_name") == "ImageModel":
            fmt = model.get("state", {}).get("format", "png")
            for buf in model.get("buffers", []):
                if buf.get("path") == ["value"] and buf.get("encoding", "base64") == "base64" and buf.get("data"):
                    found.append((f"image/{fmt}", buf["data"]))
        refs = []
        for v in model.get("state", {}).values():
            for item in (v if isinstance(v, list) else [v]):
                if isinstance(item, str) and item.startswith("IPY_MODEL_"):
                    refs.append(item[len("IPY_MODEL_"):])
        todo[:0] = refs  # depth first: children before the next sibling
    return found


def static_widgets(nb) -> tuple["nbformat.NotebookNode", list[str]]:
    """A copy of ``nb`` for a static page: every widget output becomes its widget's figure.

    An output that shows a widget keeps (or, from the saved widget state, gains) an
    ``image/*`` copy of the widget's figure, and loses the widget view, which no
    page without a kernel can run; the saved widget state is dropped, so the page
    loads no widget renderer. Returns ``(copy, widget outputs without an image)``.
    """
    nb = copy.deepcopy(nb)
    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    missing = []
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            data = out.get("data", {})
            if WIDGET_VIEW not in data:
                continue
            if not any(k.startswith("image/") for k in data):
                images = _widget_images(state, data[WIDGET_VIEW].get("model_id", ""))
                if images:
                    mime, b64 = images[0]
                    data[mime] = b64
                else:
                    missing.append(f"cell {i}")
            del data[WIDGET_VIEW]
    nb.metadata.pop("widgets", None)
    return nb, missing


def export_html(nb, dest: Path) -> Path:
    """Write ``nb`` as an HTML page that shows every figure and formula offline (see :func:`static_widgets`
    and :func:`ssd_lesson.drawing.formulas.typeset_markdown`)."""
    from nbconvert import HTMLExporter

    from ..drawing.formulas import typeset_markdown

    static, _ = static_widgets(nb)
    for cell in static.cells:
        if cell.cell_type == "markdown":
            cell.source = typeset_markdown(cell.source)
    exporter = HTMLExporter()
    body, _ = exporter.from_notebook_node(static)
    # require.js serves widget and JavaScript outputs; a static page has none, and offline its CDN tag only fails.
    body = body.replace(f'<script src="{exporter.require_js_url}"></script>', "")
    # The formulas are pictures now: MathJax, from a CDN, has nothing left to typeset.
    body = re.sub(r"<!-- Load mathjax -->[\s\S]*?<!-- End of mathjax configuration -->", "", body, count=1)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(body, encoding="utf-8")
    return dest


def export_series(html_dir: Path, only: Optional[str] = None, folder: Optional[Path] = None,
                  key: bool = False) -> list[Path]:
    """Export the stored notebooks as they are (no execution) to ``html_dir``, with an index page
    (:func:`ssd_lesson.commands.site.write_index`, not among the pages returned); return the pages."""
    import nbformat

    paths = [p for p in series(folder) if only is None or only in p.name]
    if not paths:
        raise FileNotFoundError(f"no notebook in {folder or NOTEBOOK_DIR} matches {only!r}")
    notebooks = [(p.stem, nbformat.read(p, as_version=4)) for p in paths]
    stems = [stem for stem, _ in notebooks]
    pages = [export_page(nb, html_dir, stems, stem, key) for stem, nb in notebooks]
    write_index(html_dir, notebooks, key)
    return pages


def write_solutions(out_dir: Path, only: Optional[str] = None, folder: Optional[Path] = None) -> list[Path]:
    """The instructors' key: copies of the series in ``out_dir`` with every "your turn" cell filled in
    with its solution (:func:`ssd_lesson.course.exercises.solutions.fill_solutions`), not yet executed; return them."""
    import nbformat

    from ..course.exercises.solutions import fill_solutions

    paths = [p for p in series(folder) if only is None or only in p.name]
    if not paths:
        raise FileNotFoundError(f"no notebook in {folder or NOTEBOOK_DIR} matches {only!r}")
    out_dir = Path(out_dir)
    if out_dir.resolve() == NOTEBOOK_DIR.resolve():
        raise ValueError(f"out_dir {out_dir} is the learners' series: the key must go to a folder of its own")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        fill_solutions(nb)
        nbformat.write(nb, out_dir / path.name)
        written.append(out_dir / path.name)
    return written


def notebooks_main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m ssd_lesson notebooks", description=DESCRIPTION, formatter_class=HelpFormatter)
    p.add_argument("--execute", action="store_true", help="execute the series in order")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where executed copies go")
    p.add_argument("--inplace", action="store_true", help="overwrite the notebooks in notebooks/ (maintainers)")
    p.add_argument("--html", type=Path, default=None,
                   help="export each notebook as HTML here (executed with --execute, else as stored)")
    p.add_argument("--only", default=None, help="run only notebooks whose name contains this")
    p.add_argument("--solutions", action="store_true",
                   help="the instructors' key: write the series to --out with every 'your turn' cell solved, executed")
    args = p.parse_args(argv)
    try:
        paths = series()
    except FileNotFoundError:
        print(f"ssd_lesson notebooks: no notebook series in {NOTEBOOK_DIR}; the notebooks live in the repository "
              "checkout (notebooks/), not in the installed package: clone the repository and run this there",
              file=sys.stderr)
        return 2
    if args.solutions:
        write_solutions(args.out, args.only)
        args.execute, paths = True, series(args.out)  # run the solved copies where they are
    if not args.execute and args.html is not None:
        pages = export_series(args.html, args.only)
        for page in pages:
            print(page)
        return 0
    if not args.execute:
        for path in paths:
            print(path.name)
        print("\nadd --execute to run them (copies go to --out; --inplace for maintainers), --html DIR to export them")
        return 0
    try:
        # the solved copies are run where write_solutions put them: in place, in --out
        times = execute_series(args.out, args.html, args.inplace or args.solutions, args.only,
                               folder=args.out if args.solutions else None, key=args.solutions)
    except SeriesInterrupted as e:
        print(f"\n{e}", file=sys.stderr)
        return 130
    for name, sec in times.items():
        print(f"{name:<40} {sec:6.1f} s")
    print(f"{'total':<40} {sum(times.values()):6.1f} s")
    return 0
