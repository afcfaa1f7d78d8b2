"""Screenshots of the Dagster UI for docs/images/, taken in headless Chromium (a docs-only tool).

playwright is not a dependency of crm-wave; Chromium is Debian's (`apt-get install chromium`).
Beside a running `crm-wave dev` on the demo's data (docs/runbook.md, "Screenshots"):

    .venv/bin/crm-wave demo --data-dir /tmp/shots
    .venv/bin/crm-wave dev --data-dir /tmp/shots --port 3000 --crm-port 0 --wave-port 0 &
    .tools/bin/uv run --frozen --with playwright python tools/screenshots.py --data-dir /tmp/shots --url http://127.0.0.1:3000

It adds one CRM customer whose Description Wave refuses (1500 characters, at most 1000 are sent),
waits for the `sync_job` run the changes sensor starts for it, and saves lineage.png, asset.png,
run.png and dead_letters.png (PNG, width 1400 or less).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import httpx
from playwright.sync_api import Page, sync_playwright

from crm_wave.config.envfile import ENV_FILE, read_env_file
from crm_wave.systems.crm.client import CrmClient

RUNS = "{ runsOrError(limit: 20) { ... on Runs { results { runId jobName status startTime } } } }"


def add_refused_customer(data_dir: Path) -> float:
    """Create the customer Wave refuses (once; its idempotency key makes a rerun a no-op); returns now."""
    env = read_env_file(data_dir / ENV_FILE)
    with CrmClient(base_url=env["CRM_BASE_URL"], token=env["CRM_API_TOKEN"]) as crm:
        crm.create("customers", {"Type": "organization", "Name": "Fjordline Long Notes AS",
                                 "Email": "notes@fjordline.example", "Description": "Long notes. " * 125},
                   idempotency_key="docs-screenshots-refused-customer")
    return time.time()


def wait_for_sync_run(url: str, after: float, timeout_s: float = 900) -> str:
    """The id of the first `sync_job` run started after `after` that has finished."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        runs = httpx.post(f"{url}/graphql", json={"query": RUNS}, timeout=30).json()["data"]["runsOrError"]["results"]
        done = [r for r in runs if r["jobName"] == "sync_job" and (r["startTime"] or 0) >= after
                and r["status"] in ("SUCCESS", "FAILURE")]
        if done:
            return done[-1]["runId"]
        time.sleep(10)
    raise SystemExit(f"no sync_job run finished within {timeout_s:.0f} s at {url}; is `crm-wave dev` running there?")


def _open(page: Page, url: str, ready: str) -> None:
    """Go to `url` and wait until the text `ready` shows and the page stops loading."""
    page.goto(url)
    page.get_by_text(ready, exact=True).first.wait_for(timeout=300_000)
    page.wait_for_load_state("networkidle", timeout=300_000)
    page.wait_for_timeout(3000)  # the graph's layout and zoom-to-fit run after the data arrives


def shoot(url: str, out: Path, run_id: str, chromium: str) -> list[Path]:
    """Save the four screenshots into `out`; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    shots: list[Path] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_context(viewport={"width": 1400, "height": 860}).new_page()
        page.add_init_script("localStorage.setItem('communityNux', '1')")  # no "join the community" dialog

        _open(page, f"{url}/asset-groups", "global_customer")
        page.get_by_text("Hide navigation").click()  # remembered by the browser; the graph is fitted to the width again:
        _open(page, f"{url}/asset-groups", "global_customer")
        shots.append(out / "lineage.png")
        page.screenshot(path=shots[-1])

        page.set_viewport_size({"width": 1400, "height": 1300})
        _open(page, f"{url}/assets/global_customer?view=overview", "Latest check results")
        shots.append(out / "asset.png")
        page.screenshot(path=shots[-1])

        page.set_viewport_size({"width": 1400, "height": 860})
        _open(page, f"{url}/runs/{run_id}", "sync_job")
        page.get_by_text("Loading run logs").wait_for(state="hidden", timeout=300_000)
        page.wait_for_timeout(2000)
        shots.append(out / "run.png")
        page.screenshot(path=shots[-1])

        _open(page, f"{url}/assets/push_wave_customer?view=checks", "no_dead_letters")
        page.get_by_text("[Show Markdown]").first.click()  # the `records` metadata: the refused records
        page.wait_for_timeout(2000)
        shots.append(out / "dead_letters.png")
        page.screenshot(path=shots[-1])
        browser.close()
    return shots


def main() -> None:
    """Parse the options, make the dead letter, wait for its run, take the screenshots."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default="http://127.0.0.1:3000", help="the Dagster UI of `crm-wave dev`")
    ap.add_argument("--data-dir", type=Path, default=Path("data"), help="the data directory of `crm-wave dev`")
    ap.add_argument("--out", type=Path, default=Path("docs/images"))
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--run-id", help="the sync_job run to show (default: add the refused customer and wait for its run)")
    args = ap.parse_args()
    run_id = args.run_id or wait_for_sync_run(args.url, add_refused_customer(args.data_dir) - 5)
    for path in shoot(args.url.rstrip("/"), args.out, run_id, args.chromium):
        print(f"{path}: {path.stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()
