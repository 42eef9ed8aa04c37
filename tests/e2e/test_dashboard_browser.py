"""The web dashboard in a real browser: Debian's chromium, headless, driven by Playwright.

A server started with a token; the browser logs in through the form, another client submits a
task over the REST API, and the open page shows its subtasks running and then succeeded, without
a reload, and its detail. The screenshot is saved under the test's tmp_path (its path printed);
with REYNOLDS_DASHBOARD_SCREENSHOT=PATH it is copied there too (docs/dashboard.png for the README).

Never a downloaded browser: `executable_path` is the system's chromium. Without chromium or
Playwright the test skips, and fails with REYNOLDS_REQUIRE_SERVICES=1 (as in CI).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest
from cli_support import Server, make_server, output

TOKEN = "dashboard-browser-4d1e-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CHROMIUM = os.environ.get("REYNOLDS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WAIT_MS = 30_000
COMPONENTS = ["api", "web", "worker"]
# Every status a DAG node had on the page, from the moment it is drawn: proof that the page
# changed under our eyes (running, then succeeded) rather than being drawn once at the end.
WATCH_NODES = """() => {
  window.__seen = new Set();
  window.__notReloaded = true;
  const note = (n) =>
    n.matches && n.matches("svg.dag .node") && window.__seen.add(n.dataset.status);
  new MutationObserver((changes) => {
    for (const c of changes) {
      if (c.type === "attributes") note(c.target);
      for (const n of c.addedNodes || []) {
        if (n.querySelectorAll) { note(n); n.querySelectorAll("svg.dag .node").forEach(note); }
      }
    }
  }).observe(document.body, {subtree: true, childList: true, attributes: true,
                             attributeFilter: ["data-status"]});
}"""

pytestmark = pytest.mark.slow


def slow_task() -> dict[str, Any]:
    """Two steps a component, each taking long enough to be seen running."""
    return {
        "type": "build",
        "description": "dashboard demo: build then check",
        "components": COMPONENTS,
        "steps": [
            {
                "name": "build",
                "action": {
                    "kind": "shell",
                    "argv": ["sh", "-c", "sleep 1.5; echo built {component}"],
                },
            },
            {
                "name": "check",
                "after": ["build"],
                "action": {
                    "kind": "shell",
                    "argv": ["sh", "-c", "sleep 1; echo checked {component}"],
                },
            },
        ],
    }


@pytest.fixture
def chromium(require_service: Callable[[str, str], NoReturn]) -> Iterator[Any]:
    """A headless chromium of the system's, through Playwright."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require_service("playwright", "pip install playwright (in the dev extras)")
    if not Path(CHROMIUM).is_file():
        require_service("chromium", f"no {CHROMIUM}: apt-get install chromium (Debian's package)")
    if sys.version_info < (3, 12):
        # The server's bootstrap, run in this process by earlier in-process tests, leaves
        # 3.11's global child watcher bound to their closed loop; Playwright starts its
        # driver as a subprocess of a loop of its own, which needs one that works anywhere.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            asyncio.set_child_watcher(asyncio.ThreadedChildWatcher())
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    server = make_server(tmp_path)
    started = server.run("start", env={"REYNOLDS_API_TOKEN": TOKEN})
    assert started.returncode == 0, output(started)
    yield server
    server.run("stop")


def submit(server: Server) -> str:
    """The task, from another client (the REST API with the bearer token)."""
    response = httpx.post(
        f"{server.base_url}/mcp/tools/orchestrate_task",
        json={"arguments": {"task": slow_task(), "wait": False}},
        headers=AUTH,
        timeout=30,
    )
    assert response.status_code == 200, response.text
    task_id: str = response.json()["structuredContent"]["taskId"]
    return task_id


def test_a_browser_logs_in_and_watches_a_task_run_live(
    server: Server, chromium: Any, tmp_path: Path
) -> None:
    # `server` first: torn down last, after the browser has closed its event stream.
    from playwright.sync_api import expect

    page = chromium.new_page(viewport={"width": 1500, "height": 1250})
    page.set_default_timeout(WAIT_MS)
    # Script errors and console errors (a Content-Security-Policy violation is one) fail it.
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.goto(f"{server.base_url}/")
    # The login form, and nothing about tasks or pools before it.
    expect(page.locator("form#login input[name=token]")).to_be_visible()
    assert page.locator("#tasks").count() == 0
    assert "devops" not in page.content()
    page.fill("input[name=token]", TOKEN)
    page.click("button[type=submit]")
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    expect(page.locator("#pools tbody tr")).to_have_count(3)
    page.evaluate(WATCH_NODES)

    task_id = submit(server)
    row = page.locator(f'#tasks tr[data-task-id="{task_id}"]')
    expect(row).to_be_visible()
    row.click()
    nodes = page.locator("svg.dag .node")
    expect(nodes).to_have_count(2 * len(COMPONENTS))
    expect(page.locator('svg.dag .node[data-status="succeeded"]')).to_have_count(
        2 * len(COMPONENTS)
    )
    seen = page.evaluate("[...window.__seen]")
    assert "running" in seen, seen
    assert page.evaluate("window.__notReloaded === true"), "the page was reloaded"
    expect(row.locator(".badge")).to_have_text("succeeded")

    # The detail: the plan, the routing and attempts, a subtask's output, the timeline.
    expect(page.locator("#detail h2 .badge")).to_have_text("succeeded")
    expect(page.locator("#detail pre.plan")).to_contain_text("parallelGroups")
    expect(page.locator("#detail table.routing tbody tr")).to_have_count(2 * len(COMPONENTS))
    expect(page.locator("svg.gantt rect.bar-succeeded")).to_have_count(2 * len(COMPONENTS))
    page.locator('svg.dag .node[data-id="build:api"]').click()
    expect(page.locator("#detail .subtask pre.output")).to_have_text("built api")
    expect(page.locator("#k-success")).not_to_have_text("—")

    shot = tmp_path / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"dashboard screenshot: {shot}")
    copy_to = os.environ.get("REYNOLDS_DASHBOARD_SCREENSHOT")
    if copy_to:
        shutil.copyfile(shot, copy_to)
    assert shot.stat().st_size > 10_000
    assert not errors, errors
