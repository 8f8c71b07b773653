"""The timeline report in a real browser: headless Chromium, driven by Playwright."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from history_helpers import History

from taskloom import flow, task
from taskloom.cli import main
from taskloom_history.report import STATE_COLOURS

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"
# Flags for a machine with no display and no outside network.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"Chromium is not installed at {CHROMIUM}: .ci/run installs it (apt-get install chromium).")
        pytest.skip("Chromium is not installed (apt-get install chromium); CI installs it.")
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@task(retries=1, retry_delay_seconds=0)
def step(x: int) -> int:
    if x == 3:
        raise RuntimeError("step 3 always fails")
    return x


@flow(task_runner="concurrent")
def pipeline(n: int = 6) -> str:
    step.map(range(n))
    return "done"


def test_the_report_renders_with_hover_details(history: History, in_tmp: Path, browser, capsys) -> None:
    pipeline()
    run = history.only_flow_run()
    assert main(["report", run.id, "-o", "run.html"]) == 0
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    page.goto((in_tmp / "run.html").as_uri())

    bars = page.locator("svg.timeline rect.bar")
    assert bars.count() == 7  # five runs that completed at once, one failing twice
    lanes = page.locator("svg.timeline text.lane").all_text_contents()
    workers = {t.worker for t in history.task_runs(run)}
    assert len(lanes) == len(workers) and all(f"pid {os.getpid()}" in lane for lane in lanes)

    failed = page.locator('rect.bar[data-state="Failed"]')
    fill = failed.evaluate("el => getComputedStyle(el).fill")
    assert fill == _rgb(STATE_COLOURS["Failed"]), "a bar is drawn in the colour of its state"
    card = page.locator("#card")
    assert not card.is_visible()
    failed.hover()
    assert card.is_visible()
    text = card.inner_text()
    assert "step-" in text and "Final state: Failed" in text and "Attempt: 2 of 2" in text
    assert "step 3 always fails" in text and "Parameters: x=3" in text

    shot = page.screenshot(path=str(in_tmp / "report.png"), full_page=True)
    assert shot[:8] == b"\x89PNG\r\n\x1a\n" and len(shot) > 20_000
    page.close()


def _rgb(hex_colour: str) -> str:
    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgb({r}, {g}, {b})"
