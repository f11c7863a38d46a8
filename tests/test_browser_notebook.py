"""The tour notebook in a real JupyterLab, offline: every Panel component renders.

nbval executes notebooks but never renders their JavaScript, so it cannot see
a view that shows nothing because BokehJS, Panel or Tabulator could not be
fetched. Here a JupyterLab server runs on loopback, chromium opens
``notebooks/00_tour.ipynb`` with every request that leaves 127.0.0.1
aborted, runs all cells, and each cell that displays a pmkit view must show
interactive content: a Tabulator cell or a Bokeh canvas. A second notebook
loads Panel from its CDN first (``pn.extension`` before importing
`pmkit_widgets`, as Panel's docs do): the view must render all the same.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sync_api = pytest.importorskip("playwright.sync_api")

from browser_support import (  # noqa: E402
    SERVER_START_TIMEOUT,
    Watched,
    free_port,
    screenshot_dir,
    stop,
    wait_http,
)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(1500)]

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
RUN_TIMEOUT_S = 900  # the whole tour, in a kernel of a loaded 2-core machine
RENDER_TIMEOUT_MS = 60_000
KERNEL_TIMEOUT_MS = 180_000

#: The last line of a code cell that displays a pmkit view (a name ending in ``view``).
_DISPLAYS_VIEW = re.compile(r"^(\w*view|\w+View\(.*\))$")

#: The notebook on screen, and its cells (in document order; no cell holds another).
_PANEL = ".jp-NotebookPanel:visible"
_CELLS = f"{_PANEL} .jp-Notebook .jp-Cell"

#: JupyterLab settings for a test: every cell in the DOM (no virtual scrolling), no news.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false", "checkForUpdates": False},
}

CDN_FIRST = [
    "import panel as pn\npn.extension('tabulator')  # Panel's own default: from its CDN",
    "from pmkit.demo import open_demo\nfrom pmkit_widgets import RegistryView\n"
    "view = RegistryView(open_demo().as_user('bob'))",
    "view",
]


def _notebook(cells: list[str]) -> dict[str, Any]:
    return {"nbformat": 4, "nbformat_minor": 5,
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                        "language": "python"}},
            "cells": [{"cell_type": "code", "metadata": {}, "source": src, "outputs": [],
                       "execution_count": None, "id": f"c{i}"} for i, src in enumerate(cells)]}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A JupyterLab server on loopback over a copy of the tour (and a CDN-first notebook)."""
    root = tmp_path_factory.mktemp("lab")
    work, settings = root / "work", root / "settings"
    work.mkdir()
    shutil.copy(NOTEBOOKS / "00_tour.ipynb", work / "00_tour.ipynb")
    (work / "cdn_first.ipynb").write_text(json.dumps(_notebook(CDN_FIRST)))
    for name, values in LAB_SETTINGS.items():
        path = settings / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    port, token = free_port(), secrets.token_hex(16)
    jupyter = Path(sys.executable).parent / "jupyter"
    cmd = [str(jupyter), "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={work}",
           f"--LabApp.user_settings_dir={settings}",
           f"--LabApp.workspaces_dir={root / 'workspaces'}"]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    log = root / "lab.log"
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(root / "runtime")}
    env.pop("PANEL_INLINE", None)  # the kernel must find its own way
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=work)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_http(f"{url}api/status?token={token}", proc, log, SERVER_START_TIMEOUT)
        yield {"url": url, "token": token, "work": str(work), "log": str(log)}
    finally:
        stop(proc)


def _run_all(page: Any, lab: dict[str, str], name: str) -> float:
    """Open ``name`` in JupyterLab, run every cell, wait until all ran; seconds taken."""
    # a workspace of its own, reset: the notebook of another test does not open beside it
    workspace = Path(name).stem.replace("_", "-")
    page.goto(f"{lab['url']}lab/workspaces/{workspace}/tree/{name}?reset&token={lab['token']}")
    page.locator(_CELLS).first.wait_for(timeout=RENDER_TIMEOUT_MS)
    # the kernel starts after the page (tens of seconds on a loaded machine)
    sync_api.expect(page.locator(".jp-StatusBar-Widget", has_text=re.compile(
        r"Python 3.*\|\s*Idle")).first).to_be_visible(timeout=KERNEL_TIMEOUT_MS)
    start = time.monotonic()
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name=re.compile(r"^Run All Cells")).click()
    prompts = page.locator(f"{_PANEL} .jp-CodeCell .jp-InputPrompt")
    deadline = start + RUN_TIMEOUT_S
    stalled = 0
    while time.monotonic() < deadline:
        texts = [t.strip() for t in prompts.all_inner_texts()]
        if texts and all(re.fullmatch(r"\[\d+\]:", t) for t in texts):
            return time.monotonic() - start
        errors = _errors_shown(page)
        if errors:  # JupyterLab stops a run at the first error
            pytest.fail(f"{name}: a cell failed in JupyterLab:\n{errors[0][-3000:]}")
        # the run stopped short without a traceback (seen 5 times: not the instant of the click)
        stalled = stalled + 1 if "[ ]:" in texts and "[*]:" not in texts else 0
        if stalled >= 5:
            page.screenshot(path=str(Path(lab["work"]) / f"{name}-stopped.png"))
            pytest.fail(f"{name}: the run stopped at code cell {texts.index('[ ]:')}: {texts}")
        time.sleep(1.0)
    pytest.fail(f"{name}: not every cell ran within {RUN_TIMEOUT_S} s: {texts}")


def _errors_shown(page: Any) -> list[str]:
    """Tracebacks shown in the notebook (warnings on stderr are not errors).

    JupyterLab renders an error output as ``application/vnd.jupyter.stderr``,
    like a stream on stderr; the traceback's header tells them apart.
    """
    stderr = ".jp-RenderedText[data-mime-type='application/vnd.jupyter.stderr']"
    shown = page.locator(f"{_PANEL} {stderr}").all_inner_texts()
    return [t for t in shown if "Traceback (most recent call last)" in t]


def _expect_interactive(cell: Any, what: str) -> None:
    """``cell``'s output shows a Tabulator cell or a Bokeh canvas (inside Bokeh's shadow DOM)."""
    content = cell.locator(".jp-OutputArea").locator(".tabulator-cell:visible, canvas:visible")
    try:
        sync_api.expect(content.first).to_be_visible(timeout=RENDER_TIMEOUT_MS)
    except AssertionError as exc:
        raise AssertionError(f"{what}: no table cell or chart canvas rendered") from exc


def test_the_tour_renders_every_component_in_jupyterlab_offline(browser, lab,
                                                                 tmp_path_factory) -> None:
    nb = json.loads((Path(lab["work"]) / "00_tour.ipynb").read_text())
    shows = {i: "".join(c["source"]).strip().splitlines()[-1]
             for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"}
    shows = {i: last for i, last in shows.items() if _DISPLAYS_VIEW.match(last)}
    assert len(shows) >= 7, shows  # the seven views, at least once each

    shots = screenshot_dir(tmp_path_factory) / "jupyterlab"
    shots.mkdir(parents=True, exist_ok=True)
    watched = Watched(browser, viewport={"width": 1400, "height": 1000})
    try:
        page = watched.new_page()
        took = _run_all(page, lab, "00_tour.ipynb")
        print(f"\nthe tour ran in JupyterLab in {took:.1f} s")
        assert _errors_shown(page) == []
        cells = page.locator(_CELLS)
        assert cells.count() == len(nb["cells"])
        for index, what in shows.items():
            cell = cells.nth(index)
            cell.scroll_into_view_if_needed()
            _expect_interactive(cell, f"cell {index} ({what})")
            cell.screenshot(path=str(shots / f"tour-{index:02d}-{what[:30]}.png"))
        page.screenshot(path=str(shots / "tour-last.png"))
        assert watched.blocked == [], f"requests left the machine: {sorted(set(watched.blocked))}"
    finally:
        watched.close()


def test_a_view_renders_offline_after_panel_loaded_from_its_cdn(browser, lab) -> None:
    watched = Watched(browser, viewport={"width": 1400, "height": 1000})
    try:
        page = watched.new_page()
        _run_all(page, lab, "cdn_first.ipynb")
        assert any("cdn" in url for url in watched.blocked)  # Panel did try its CDN
        cells = page.locator(_CELLS)
        _expect_interactive(cells.nth(2), "RegistryView after a CDN load")
        sync_api.expect(cells.nth(2).locator(
            '.tabulator-cell[tabulator-field="id"]', has_text="client_a/growth").first
        ).to_be_visible()
    finally:
        watched.close()
