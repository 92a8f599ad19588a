"""Browser fixtures: the system Chromium through Playwright, one JupyterLab server per session.

Without Chromium on PATH the browser tests are skipped, saying how to install it;
under ``CI=true`` that is a failure instead, so CI cannot pass by skipping them.
Everything runs in one temporary folder that is removed at the end, and the
server, its kernels and the browser are stopped even when a test fails.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import pytest

from ssd_lesson.commands.notebooks import series

from .lab import FIX, REPO, LabServer, Notebook, find_chromium, fresh_copy

OUT = REPO / "ssd_lesson_out" / "browser"  # screenshots and timings (ignored by git)
TIMINGS: dict[str, float] = {}


def browser_missing(reason: str) -> None:
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(f"{reason}; CI=true, so the browser tests may not be skipped: {FIX}", pytrace=False)
    pytest.skip(f"{reason}: {FIX}")


@pytest.fixture(scope="session")
def workdir():
    with tempfile.TemporaryDirectory(prefix="ssd-lesson-browser-") as d:
        yield Path(d)


@pytest.fixture(scope="session")
def out_dir() -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    return OUT


@pytest.fixture(scope="session")
def browser(workdir):
    path = find_chromium()
    if path is None:
        browser_missing("no Chromium on PATH (the browser tests drive the system Chromium, never a downloaded one)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        browser_missing("the `playwright` package is missing (pip install -e '.[test]')")
    # Playwright's driver keeps its profile and artifacts in TMPDIR: ours, removed with workdir.
    (workdir / "tmp").mkdir()
    with pytest.MonkeyPatch.context() as env:  # for the driver's start only
        env.setenv("TMPDIR", str(workdir / "tmp"))
        pw = sync_playwright().start()
    try:
        b = pw.chromium.launch(executable_path=path, headless=True, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()
    finally:
        pw.stop()


class Lab:
    """The session's JupyterLab: each notebook opened once, in its own page, and run once."""

    def __init__(self, server: LabServer, context):
        self.server, self.context, self.open = server, context, {}

    def run(self, name: str, limit_s: float = 180) -> Notebook:
        """``name`` opened and Run All done (once per session; the page stays open until :meth:`close`)."""
        if name not in self.open:
            nb = Notebook.open(self.server, self.context, name, workspace=f"w{len(TIMINGS) + len(self.open)}")
            self.open[name] = nb
            try:
                TIMINGS[name] = nb.run_all(limit_s)
            except Exception as e:
                try:
                    cells = json.dumps(nb.cells())[:3000]
                except Exception as why:
                    cells = f"(unreadable: {why})"
                raise AssertionError(f"{name}: Run All did not finish within {limit_s:.0f} s ({e})\n"
                                     f"cells: {cells}\nserver log: {self.server.log_tail(1500)}") from None
        return self.open[name]

    def close(self, name: str) -> None:
        nb = self.open.pop(name, None)
        if nb is not None:
            nb.close()

    def close_all(self) -> None:
        for name in list(self.open):
            try:
                self.close(name)
            except Exception:
                pass


@pytest.fixture(scope="session")
def lab(browser, workdir):
    root = workdir / "notebooks"
    root.mkdir()
    for p in series():
        fresh_copy(p, root / p.name)  # the committed notebooks are never opened
    start = time.perf_counter()
    server = LabServer(root, workdir / "home")
    context = None
    try:
        context = browser.new_context(viewport={"width": 1400, "height": 2700})  # a whole widget fits (05: 2400 px)
        session = Lab(server, context)
        TIMINGS["(server start)"] = time.perf_counter() - start
        try:
            yield session
        finally:
            session.close_all()
    finally:
        try:
            if context is not None:
                context.close()
        finally:
            server.stop()


def pytest_terminal_summary(terminalreporter):
    if not TIMINGS:
        return
    terminalreporter.section("browser: seconds per notebook (Run All in JupyterLab)")
    for name, sec in TIMINGS.items():
        terminalreporter.write_line(f"{name:<40} {sec:6.1f} s")
    terminalreporter.write_line(f"{'total':<40} {sum(TIMINGS.values()):6.1f} s")
    try:
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / "timings.json").write_text(json.dumps(TIMINGS, indent=1))
    except OSError:
        pass
