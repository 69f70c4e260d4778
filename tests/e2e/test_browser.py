"""The job page of a really finished job, in headless Chromium (Debian's, driven by
playwright): the charts have a point per datum, the recommendation shows, and the copy
button copies it. Saves a screenshot to test-artifacts/job-page.png, and refreshes the one
the README shows (docs/img/job-page.png) with ``ADAMTUNE_UPDATE_SCREENSHOTS=1``."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.e2e.harness import Service

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.e2e

CHROMIUM = os.environ.get("ADAMTUNE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ROOT = Path(__file__).resolve().parents[2]
ARTIFACT = ROOT / "test-artifacts" / "job-page.png"
README_SCREENSHOT = ROOT / "docs" / "img" / "job-page.png"
JOB = {
    "name": "digits, tuned in the browser test",
    "workload": "digits_mlp",
    "seed": 7,
    "budget": {"trials": 10, "steps_per_trial": 60, "eval_every": 20},
    "sweep": {"steps": 40},
}
JOB_TIMEOUT_S = 240.0

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not shutil.which(CHROMIUM):
        pytest.skip(
            f"no Chromium at {CHROMIUM}: `apt-get install chromium` or set ADAMTUNE_CHROMIUM"
        )
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def save_screenshot(page: Page) -> None:
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACT), full_page=True)
    if os.environ.get("ADAMTUNE_UPDATE_SCREENSHOTS") == "1":
        README_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ARTIFACT, README_SCREENSHOT)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_job_page_of_a_finished_job(service: Service, browser: Browser) -> None:
    url = service.start_api()
    service.start_worker("browser-worker")
    with service.client() as client:
        job = client.wait(client.submit(JOB)["id"], timeout=JOB_TIMEOUT_S, poll=0.5)
        assert job["status"] == "completed", job
        sweep = client.lr_sweep(job["id"])
        trials = client.trials(job["id"])
        rec = client.recommendation(job["id"])
    finite_losses = sum(1 for v in sweep["smoothed"] if v is not None)
    valued_trials = sum(1 for t in trials if t["value"] is not None)

    context = browser.new_context(viewport={"width": 1200, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=url)
    page = context.new_page()
    external: list[str] = []
    page.on("request", lambda r: None if r.url.startswith(url) else external.append(r.url))
    page.goto(f"{url}/jobs/{job['id']}")

    assert page.locator("#status").inner_text() == "completed"
    assert page.locator("svg.lr-curve circle.pt").count() == finite_losses > 0
    assert page.locator("svg.trials-chart circle.pt").count() == valued_trials > 0
    assert page.locator("svg.trials-chart polyline.best").count() == 1
    assert page.locator("svg.lr-curve line.suggestion").count() >= 1
    assert page.locator("section.recommendation").inner_text().count(rec["optimizer"]) >= 1
    assert page.locator("#snippet").inner_text().strip() == rec["snippet"].strip()
    assert page.locator("a.dashboard-link").get_attribute("href").startswith("/dashboard/studies/")

    save_screenshot(page)
    page.locator("button.copy").click()
    page.wait_for_function("document.querySelector('button.copy').textContent === 'Copied'")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied.strip() == rec["snippet"].strip()
    assert external == []  # nothing fetched from outside the service
    context.close()
