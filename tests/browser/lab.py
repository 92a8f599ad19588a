"""Drive a real JupyterLab in the system Chromium: the server, one notebook page, one widget slider.

Nothing here knows the lesson's notebooks: the tests say which slider to move and
which library call the readout must agree with.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

REPO = Path(__file__).resolve().parents[2]
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
FIX = "install it with `apt-get install chromium` (Debian/Ubuntu, as root; `.ci/run` does this)"


def find_chromium() -> Optional[str]:
    """The system Chromium on PATH (Playwright's own download is never used)."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def fresh_copy(src: Path, dest: Path) -> None:
    """``src`` notebook without outputs, execution counts or saved widget state: what Run All must rebuild."""
    nb = json.loads(src.read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    nb["metadata"].pop("widgets", None)
    dest.write_text(json.dumps(nb, indent=1), encoding="utf-8")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LabServer:
    """``jupyter lab`` headless on 127.0.0.1, a free port and a random token, serving ``root``.

    Its config, data, runtime and workspace folders are inside ``home`` (so a user's
    Jupyter set-up cannot leak in and nothing is written outside); its kernels run
    this checkout's ``ssd_lesson``. :meth:`stop` shuts every kernel down and the server,
    and kills whatever of them is still alive.
    """

    def __init__(self, root: Path, home: Path, start_timeout: float = 90.0):
        self.root, self.home = root, home
        self.port, self.token = free_port(), secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ)
        for var, sub in (("JUPYTER_CONFIG_DIR", "config"), ("JUPYTER_DATA_DIR", "data"),
                         ("JUPYTER_RUNTIME_DIR", "runtime"), ("IPYTHONDIR", "ipython"), ("MPLCONFIGDIR", "mpl")):
            (home / sub).mkdir(parents=True, exist_ok=True)
            env[var] = str(home / sub)
        env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in [env.get("PYTHONPATH")] if p])
        # The python3 kernelspec runs `python` from PATH: make that this interpreter.
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        env.pop("JUPYTER_PATH", None)
        # No "get notified about Jupyter news?" toast over the notebook (news_url=None alone still asks).
        settings = home / "settings" / "@jupyterlab" / "apputils-extension"
        settings.mkdir(parents=True, exist_ok=True)
        (settings / "notification.jupyterlab-settings").write_text(
            json.dumps({"fetchNews": "false", "checkForUpdates": False}))
        self.log_path = home / "jupyter.log"
        self._log = open(self.log_path, "wb")
        cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={self.port}",
               "--ServerApp.port_retries=0", f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={root}",
               "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
               "--LabApp.expose_app_in_browser=True", f"--LabApp.workspaces_dir={home / 'workspaces'}",
               f"--LabApp.user_settings_dir={home / 'settings'}", "--ServerApp.terminals_enabled=False"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.append("--allow-root")  # CI containers run as root
        self.proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        try:
            self._wait_ready(start_timeout)
        except BaseException:
            self.stop()
            raise

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def api(self, path: str, method: str = "GET") -> Any:
        req = urllib.request.Request(f"{self.url}/api/{path}", method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=30) as r:
            body = r.read()
        return json.loads(body) if body else None

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if "started" in self.api("status"):
                    return
            except (urllib.error.URLError, ConnectionError, OSError, ValueError):
                pass
            time.sleep(0.5)
        raise TimeoutError(f"jupyter lab did not answer /api/status within {timeout:.0f} s:\n{self.log_tail()}")

    def notebook_url(self, name: str, workspace: str) -> str:
        # ?reset: no layout restored from another run; a workspace name without dots (a dotted one hangs).
        return f"{self.url}/lab/workspaces/{workspace}/tree/{name}?reset&token={self.token}"

    def shutdown_kernels(self, path: Optional[str] = None) -> None:
        """Shut down the sessions (and their kernels) of ``path``, or every kernel."""
        try:
            if path is None:
                for k in self.api("kernels"):
                    self.api(f"kernels/{k['id']}", "DELETE")
            else:
                for s in self.api("sessions"):
                    if s.get("path") == path:
                        self.api(f"sessions/{s['id']}", "DELETE")
        except (urllib.error.URLError, ConnectionError, OSError):
            pass

    def stop(self) -> None:
        import psutil

        try:
            family = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.Error:
            family = []
        if self.proc.poll() is None:
            self.shutdown_kernels()
            self.proc.send_signal(signal.SIGINT)  # the server's own clean shutdown: kernels, terminals, files
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        for p in family:  # kernels run in sessions of their own: make sure none outlives the server
            try:
                p.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(family, timeout=10)
        self._log.close()


@dataclass
class Notebook:
    """One notebook open in its own page, its kernel started and idle."""

    server: LabServer
    page: Any
    name: str
    page_errors: list = field(default_factory=list)
    run_seconds: Optional[float] = None

    JS_READY = """name => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
        const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
        return !!(w && w.context && w.context.path === name && w.content && w.content.widgets.length
                  && k && k.status === 'idle'); }"""

    JS_CELLS = """() => { const w = window.jupyterapp.shell.currentWidget, cells = w.content.model.cells, out = [];
        for (let i = 0; i < cells.length; i++) { const c = cells.get(i); if (c.type !== 'code') continue;
          const o = c.outputs.toJSON();
          out.push({index: i, count: c.executionCount, source: c.sharedModel.getSource().slice(0, 80),
                    errors: o.filter(x => x.output_type === 'error').map(x => x.ename + ': ' + x.evalue),
                    widgets: o.filter(x => x.data && x.data['application/vnd.jupyter.widget-view+json']).length}); }
        return out; }"""

    JS_IDLE = """() => { const w = window.jupyterapp.shell.currentWidget;
        return w.sessionContext.session.kernel.status === 'idle'; }"""

    @classmethod
    def open(cls, server: LabServer, context: Any, name: str, workspace: str, timeout_s: float = 120) -> "Notebook":
        page = context.new_page()
        nb = cls(server, page, name)
        page.on("pageerror", lambda e: nb.page_errors.append(f"{e.name}: {e.message}"))
        try:
            page.goto(server.notebook_url(name, workspace), wait_until="domcontentloaded")
            page.wait_for_function(cls.JS_READY, arg=name, timeout=timeout_s * 1000, polling=250)
        except BaseException:
            nb.close()
            raise
        return nb

    def run_all(self, timeout_s: float) -> float:
        """Run All in the browser; wait until it settles; seconds taken."""
        start = time.perf_counter()
        self.page.evaluate("""() => { window.__runDone = null;
            window.jupyterapp.commands.execute('notebook:run-all-cells')
              .then(ok => { window.__runDone = {ok: ok === undefined ? true : !!ok}; },
                    e => { window.__runDone = {ok: false, error: String(e)}; }); }""")
        self.page.wait_for_function("() => window.__runDone", timeout=timeout_s * 1000, polling=500)
        self.wait_idle()
        self.run_seconds = time.perf_counter() - start
        return self.run_seconds

    def wait_idle(self, timeout_s: float = 60) -> None:
        self.page.wait_for_function(self.JS_IDLE, timeout=timeout_s * 1000, polling=100)

    def cells(self) -> list[dict]:
        return self.page.evaluate(self.JS_CELLS)

    def widget_outputs(self) -> Any:
        """Locator: the output areas that show a live widget view."""
        return self.page.locator(".jp-OutputArea-child").filter(has=self.page.locator(".jupyter-widgets"))

    def close(self) -> None:
        try:
            self.page.close()  # no beforeunload prompt for the unsaved notebook
        finally:
            self.server.shutdown_kernels(self.name)


@dataclass
class View:
    """What a widget shows at one moment: its readout text, the slider's value text, its figure as pixels."""

    readout: str
    value: str
    image_src: str
    image_png: bytes
    widget_png: bytes


@contextlib.contextmanager
def notebook_of_cells(server: LabServer, browser: Any, cells: Sequence[str], name: str, workspace: str,
                      viewport: tuple[int, int] = (1440, 900), timeout_s: float = 300) -> Iterator[Notebook]:
    """A notebook of code ``cells`` written as ``name`` into the server's folder, opened in a browser
    context of ``viewport`` (width, height) and run whole; page and context closed afterwards."""
    nb = {"cells": [{"cell_type": "code", "metadata": {}, "source": c, "outputs": [], "execution_count": None}
                    for c in cells],
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    (server.root / name).write_text(json.dumps(nb))
    context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
    try:
        page = Notebook.open(server, context, name, workspace=workspace)
        try:
            page.run_all(timeout_s)
            yield page
        finally:
            page.close()
    finally:
        context.close()


def changed_fraction(a: bytes, b: bytes) -> float:
    """Fraction of pixels that differ between two screenshots (1.0 when their sizes differ)."""
    import numpy as np
    from PIL import Image

    x = np.asarray(Image.open(io.BytesIO(a)).convert("RGB"), dtype=np.int16)
    y = np.asarray(Image.open(io.BytesIO(b)).convert("RGB"), dtype=np.int16)
    if x.shape != y.shape:
        return 1.0
    return float((np.abs(x - y).max(axis=2) > 8).mean())  # > 8 of 255: above JPEG / scaling noise


class Slider:
    """One ``FloatSlider`` of a widget output, found by its description, moved from the keyboard."""

    def __init__(self, nb: Notebook, output: Any, description: str, readout: Callable[[], Any]):
        self.nb, self.output, self.description = nb, output, description
        self.root = output.locator(".widget-slider").filter(
            has=nb.page.locator(".widget-label", has_text=re.compile(rf"^\s*{re.escape(description)}\s*$")))
        self.handle = self.root.locator(".noUi-handle")
        self.readout_box = self.root.locator(".widget-readout")
        self._readout = readout

    def view(self, shot: bool = False) -> View:
        """What the widget shows now (``shot``: with a screenshot of the whole widget, for the record)."""
        # JupyterLab skips laying out cells off screen (their text reads empty): bring the widget into view.
        self.output.scroll_into_view_if_needed()
        img = self.output.locator("img").first
        img.wait_for(state="visible")
        self.nb.page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=img.element_handle())
        return View(readout=self._readout().inner_text(), value=self._value(), image_src=img.get_attribute("src") or "",
                    image_png=img.screenshot(), widget_png=self.output.screenshot() if shot else b"")

    def _value(self) -> str:
        return self.readout_box.inner_text().strip().replace("\u2212", "-")  # ipywidgets writes U+2212 for minus

    def _reuse(self, before: Optional[View], shot: bool) -> View:
        """``before`` (the widget as last seen, perhaps through another of its sliders) with this slider's value."""
        if before is None or (shot and not before.widget_png):
            return self.view(shot)
        self.output.scroll_into_view_if_needed()
        return dataclasses.replace(before, value=self._value())

    def _settle(self, before: View, timeout_s: float, shot: bool) -> View:
        """Wait for the kernel to answer the move: the readout changes, then the kernel goes idle."""
        page = self.nb.page
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self._readout().inner_text() == before.readout:
            page.wait_for_timeout(100)
        self.nb.wait_idle()
        page.wait_for_timeout(300)  # the image view swaps its blob URL after the message
        return self.view(shot)

    def press(self, *keys: str, before: Optional[View] = None, shot: bool = False,
              timeout_s: float = 30) -> tuple[View, View]:
        """Focus the slider's handle, press ``keys`` as a learner would; the views before and after.

        ``before``: the widget's view as last seen (saves taking it again); ``shot``: screenshots of both.
        """
        before = self._reuse(before, shot)
        self.handle.focus()
        for key in keys:
            self.handle.press(key)
        return before, self._settle(before, timeout_s, shot)

    def type_value(self, text: str, before: Optional[View] = None, timeout_s: float = 30) -> tuple[View, View]:
        """Type a value into the slider's readout box and press Enter (ipywidgets' editable readout)."""
        before = self._reuse(before, False)
        self.readout_box.click()
        self.nb.page.keyboard.press("Control+A")
        self.nb.page.keyboard.type(text)
        self.nb.page.keyboard.press("Enter")
        return before, self._settle(before, timeout_s, False)


def key_to_new_figure(nb: Notebook, output: Any, press: Callable[[], Any], timeout_ms: float = 30000) -> float:
    """Milliseconds from ``press()`` (a key press, a click) to the page showing a new figure in ``output``."""
    img = output.locator("img").last
    src = img.get_attribute("src")
    t = time.monotonic()
    press()
    nb.page.wait_for_function("([i, s]) => i.getAttribute('src') !== s && i.complete && i.naturalWidth > 0",
                              arg=[img.element_handle(), src], timeout=timeout_ms)
    return 1000 * (time.monotonic() - t)
