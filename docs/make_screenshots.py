"""Screenshots of each dashboard page, into docs/screenshots/, from a running local stack.

    make screenshots     # the demo's rounds on .mlops-demo/, these screenshots, the stack stopped

or, on a stack of your own that has run something (e.g. `mlops demo --keep --data-dir DIR`):

    .venv/bin/python docs/make_screenshots.py --data-dir DIR

The pages are served in-process by `mlops.ui.create_app` and shot by headless Chromium (Debian's
`chromium` package) through Playwright; the pipeline and run shown are the first pipeline's and its
champion's, found by clicking through the pages as a person would.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import threading
from pathlib import Path

OUT = Path(__file__).resolve().parent / "screenshots"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path(".mlops-demo"), help="the running stack's folder")
    parser.add_argument("--out", type=Path, default=OUT, help="where the PNGs go")
    args = parser.parse_args()
    chromium = shutil.which("chromium")
    if chromium is None:
        sys.stderr.write("error: no browser: install Debian's chromium (`apt-get install -y chromium`)\n")
        return 1
    from playwright.sync_api import sync_playwright
    from werkzeug.serving import make_server

    from mlops.ops.context import CliContext
    from mlops.ops.errors import OperatorError
    from mlops.ui import create_app

    ctx = CliContext(args.data_dir)
    if ctx.state is None:
        sys.stderr.write(f"error: no local stack in {args.data_dir}: run `mlops demo --keep --data-dir {args.data_dir}` first\n")
        return 1
    try:
        ctx.require_stack("storage", "bigquery", "vertex")
    except OperatorError as error:
        sys.stderr.write(f"error: {error}\n")
        return 1
    server = make_server("127.0.0.1", 0, create_app(ctx), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            shots = []

            def shoot(name: str) -> None:
                path = args.out / f"{name}.png"
                page.screenshot(path=str(path), full_page=True)
                shots.append(path)

            page.goto(f"{base}/")
            shoot("overview")
            links = page.locator("#pipelines tr[data-pipeline] td:first-child a")
            if links.count() == 0:
                sys.stderr.write("error: the stack has no pipeline yet: run `mlops demo --keep` on it first\n")
                return 1
            links.first.click()
            page.wait_for_load_state()
            shoot("pipeline")
            champion_run = page.locator("tr[data-version]", has_text="champion").locator("a")
            (champion_run if champion_run.count() else page.locator("tr[data-version] a")).first.click()
            page.wait_for_load_state()
            shoot("run")
            page.goto(f"{base}/failures")
            shoot("failures")
            browser.close()
    finally:
        server.shutdown()
    for path in shots:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
