"""Remake docs/images/report.png: run docs/examples/run_history.py in a scratch directory,
open its report in headless Chromium, hover a failed bar, and take a screenshot.

    python tools/report_screenshot.py      # needs playwright and /usr/bin/chromium
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, str(ROOT / "docs" / "examples" / "run_history.py")],
            cwd=tmp, check=True, capture_output=True,
        )
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            page = browser.new_page(viewport={"width": 1300, "height": 900}, device_scale_factor=1)
            page.goto((Path(tmp) / "etl-report.html").as_uri())
            page.locator('rect.bar[data-state="Failed"]').first.hover()
            out = ROOT / "docs" / "images" / "report.png"
            page.screenshot(path=str(out), full_page=False)
            browser.close()
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
