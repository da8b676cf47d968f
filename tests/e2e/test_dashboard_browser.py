"""The dashboard in a real browser, on the real stack after the demo's rounds.

`mlops ui` serves it as a user starts it; headless Chromium (Debian's `chromium` package, installed
here when missing, root and apt allowing) opens each page through Playwright and checks what a
person sees: the champion's version, a chart with one point per version, a failed event's reason,
and a replay confirmed by a flash message.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests

from mlops.core.events import ModelEvaluated, new_envelope
from mlops.ops.archive import query_events
from mlops.ops.context import CliContext
from mlops.ops.demo import run_demo
from mlops.stack.processes import free_port
from tests.integration.harness import wait_for

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def chromium_path() -> str | None:
    """Debian's Chromium, installed with apt when it is missing and this process may (root, apt-get)."""
    found = shutil.which("chromium") or (CHROMIUM if os.path.exists(CHROMIUM) else None)
    if found:
        return found
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        installed = subprocess.run(["apt-get", "install", "-y", "chromium"], capture_output=True, env=env, timeout=900)
        if installed.returncode != 0:  # a stale package index: refresh it once
            subprocess.run(["apt-get", "update"], capture_output=True, env=env, timeout=300)
            subprocess.run(["apt-get", "install", "-y", "chromium"], capture_output=True, env=env, timeout=900)
    return shutil.which("chromium")


@pytest.fixture(scope="module")
def browser():
    path = chromium_path()
    if path is None:
        pytest.skip("no browser: Debian's `chromium` is not installed and cannot be installed here "
                    "(needs root and apt-get; `apt-get install -y chromium`)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def demo(stack, stack_dir):
    """The demo's rounds on the package's stack, and a poison message dead-lettered by the registrar."""
    summary = run_demo(stack_dir, keep=True)
    ctx = CliContext(stack_dir)
    poison_id = f"poison-{uuid.uuid4()}"
    attributes = new_envelope(ModelEvaluated.example(), "forger", pipeline=summary["pipeline"]).to_attributes()
    attributes["ce-id"] = poison_id
    pushed = requests.post(f"{ctx.state.url('registrar')}/push", timeout=10, json={
        "message": {"data": base64.b64encode(b'{"metrics": "not a map"}').decode(), "attributes": attributes,
                    "messageId": "1"},
        "subscription": "model.evaluated.v1--registrar"})
    assert pushed.status_code == 200 and pushed.json()["status"] == "dead-lettered", pushed.text
    [parked] = wait_for(lambda: query_events(ctx.warehouse, event_id=poison_id, dead_letters=True), timeout=30,
                        what="the dead letter in the archive")
    return {**summary, "poison_reason": parked.attributes["dead_letter_reason"]}


@pytest.fixture(scope="module")
def dashboard(stack_dir, demo):
    port = free_port()
    command = [str(Path(sys.executable).parent / "mlops"), "ui", "--data-dir", str(stack_dir), "--port", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return requests.get(f"{url}/healthz", timeout=2).ok
        except requests.ConnectionError:
            assert process.poll() is None, f"mlops ui exited: {process.stderr.read() if process.stderr else ''}"
            return False

    try:
        wait_for(up, timeout=30, what="mlops ui answering")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_each_page_shows_what_the_loop_did(browser, dashboard, demo):
    pipeline = demo["pipeline"]
    champion = max((r["version"] for r in demo["rounds"] if r["decision"] == "promote"), key=int)
    page = browser.new_page()
    try:
        page.goto(f"{dashboard}/")
        row = page.locator(f'tr[data-pipeline="{pipeline}"]')
        assert row.locator("td.champion").inner_text().startswith(f"v{champion}")
        assert "100%" in row.locator("td.champion").inner_text()

        row.locator("a", has_text=pipeline).first.click()
        page.wait_for_url(f"**/pipelines/{pipeline}")
        chart = page.locator("svg#gate-chart")
        assert chart.locator("circle.point").count() == len(demo["rounds"]) == int(chart.get_attribute("data-points"))
        assert page.locator("tr[data-version]").count() == len(demo["rounds"])
        rejected = next(r for r in demo["rounds"] if r["decision"] == "reject")
        assert rejected["reason"] in page.locator(f'tr[data-version="{rejected["version"]}"]').inner_text()
        assert "champion" in page.locator(f'tr[data-version="{champion}"]').inner_text()
        assert page.locator("#monitoring").is_visible()

        page.locator(f'tr[data-version="{champion}"] a').last.click()
        page.wait_for_url("**/runs/**")
        kinds = page.locator("tr[data-type]").evaluate_all("rows => rows.map(r => r.dataset.type)")
        assert kinds[:1] == ["data.ready.v1"] and "model.deployed.v1" in kinds
        assert page.locator("#lineage dl").inner_text().count(f"v{champion}") >= 1
        page.locator('tr[data-type="model.trained.v1"] button', has_text="Replay").click()
        page.wait_for_load_state()
        assert "replayed model.trained.v1" in page.locator(".flash.ok").inner_text()

        page.goto(f"{dashboard}/failures")
        assert demo["poison_reason"][:60] in page.locator("#failures").inner_text()
    finally:
        page.close()


def test_a_replay_without_the_pages_token_is_refused(dashboard):
    answer = requests.post(f"{dashboard}/replay", data={"event_id": "x"}, timeout=10, allow_redirects=False)
    assert answer.status_code == 403 and "token" in answer.text
