"""The Inspector and the demo app in headless Chromium (Debian's `chromium`), against a stack of
their own: live rows on two pages, presence joins and leaves, the bell, explain's verdicts.
Screenshots go to tests/browser/artifacts/."""
from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from ripple.local.inspector.demo import seed
from ripple.local.stack import ROOT, Stack

pytestmark = pytest.mark.e2e
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).parent / "artifacts"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def demo_stack(stack) -> Stack:
    """The session's stack, with the demo's schema and data (both re-runnable)."""
    seed(stack.db_url)
    return stack


@pytest.fixture(scope="module")
def browser() -> Iterator:
    # Fail, never skip: `make test` installs Chromium, so its absence is a broken set-up.
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: run `make test` (installs Debian's chromium) "
                    "or set CHROMIUM=/path/to/chromium")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield launched
        launched.close()


def open_page(browser, url: str):
    """A page in its own context (its own storage, as a separate browser would be)."""
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url)
    page.errors = errors
    return page


def demo(browser, stack: Stack, user: str):
    page = open_page(browser, f"{stack.inspector_url}/demo/?user={user}")
    page.wait_for_selector('body[data-crm="SUBSCRIBED"][data-presence="SUBSCRIBED"]', timeout=20_000)
    return page


def students_text(page) -> str:
    return page.locator("#students").inner_text()


def test_demo_pages_show_rows_presence_and_notifications_live(browser, demo_stack) -> None:
    ada = demo(browser, demo_stack, "ada")
    tomas = demo(browser, demo_stack, "tomas")
    bea = demo(browser, demo_stack, "bea")
    # Each school sees its own students only (RLS on the first load, as on every change).
    assert "Leo Park" in students_text(ada) and "Leo Park" not in students_text(bea)
    ada.wait_for_selector('body[data-online="2"]', timeout=15_000)  # Ada and Tomás
    bea.wait_for_selector('body[data-online="1"]', timeout=15_000)  # her school's room
    assert "Tomás Teacher" in ada.locator("#online").inner_text()

    leo = 'tr[data-id="2a000000-0000-4000-8000-000000000002"]'
    with psycopg.connect(demo_stack.db_url, autocommit=True) as db:
        written = time.monotonic()
        db.execute("update students set payment_status = 'overdue' where full_name = 'Leo Park'")
    seen = {}
    for name, page in (("ada", ada), ("tomas", tomas)):
        page.wait_for_function(f"document.querySelector('{leo}')?.textContent.includes('overdue')",
                               timeout=15_000)
        seen[name] = round((time.monotonic() - written) * 1000)
    # The overdue rule notifies the school's admins: Ada's bell rings, the teacher's does not.
    ada.wait_for_function("document.getElementById('bell-count').textContent === '1'", timeout=20_000)
    assert tomas.locator("#bell-count").inner_text() == "0"
    # Bea's page got nothing of another school's row (while the two Northside pages did).
    assert "Leo Park" not in students_text(bea) and bea.locator("#bell-count").inner_text() == "0"

    tomas.context.close()  # Tomás leaves
    ada.wait_for_selector('body[data-online="1"]', timeout=20_000)
    ada.locator("#bell").click()
    ada.screenshot(path=str(ARTIFACTS / "demo-ada.png"))
    (ARTIFACTS / "demo-latency.json").write_text(json.dumps({"write_to_page_ms": seen}))
    assert ada.errors == [] and bea.errors == []
    ada.context.close()
    bea.context.close()


def test_inspector_lists_connections_explains_delivery_and_joins_as_anyone(browser, demo_stack) -> None:
    ada = demo(browser, demo_stack, "ada")
    bea = demo(browser, demo_stack, "bea")
    inspector = open_page(browser, demo_stack.inspector_url + "/")
    inspector.wait_for_function(
        "document.querySelectorAll('#connections tbody tr').length >= 2", timeout=15_000)
    assert "1a000000-0000-4000-8000-000000000001" in inspector.locator("#connections").inner_text()

    inspector.fill("#explain-table", "public.students")
    inspector.select_option("#explain-type", "UPDATE")
    inspector.fill("#explain-where", "full_name=Mia Jones")
    inspector.click("#explain")
    inspector.wait_for_selector("#explain-result tbody tr", timeout=15_000)
    rows = inspector.locator("#explain-result tbody tr")
    verdicts = {}
    for i in range(rows.count()):
        row = rows.nth(i)
        verdicts.setdefault(row.get_attribute("data-sub"), []).append(
            (row.get_attribute("data-receives"), row.inner_text()))
    ada_id, bea_id = "1a000000-0000-4000-8000-000000000001", "1b000000-0000-4000-8000-000000000001"
    assert ("true", ) == tuple({r for r, _ in verdicts[ada_id]}), verdicts[ada_id]
    assert {r for r, _ in verdicts[bea_id]} == {"false"}
    assert all("may not read this row" in text for _, text in verdicts[bea_id])
    assert "receive it" in inspector.locator("#explain-summary").inner_text()

    # Join as anon, who may not read students: the refusal is listed with its error.
    inspector.select_option("#join-role", "anon")
    inspector.fill("#join-claims", "{}")
    inspector.click("#join")
    inspector.wait_for_function(
        "document.querySelector('#refusals tbody')?.textContent.includes('Unauthorized')", timeout=15_000)
    inspector.wait_for_function(
        "document.getElementById('join-status').textContent.startsWith('joined')", timeout=15_000)
    # Join as Ada from the page, then watch a change arrive as a frame.
    inspector.select_option("#join-role", "authenticated")
    inspector.fill("#join-claims", json.dumps({"sub": ada_id}))
    inspector.fill("#join-bindings", json.dumps([{"event": "*", "schema": "public", "table": "groups"}]))
    inspector.click("#join")
    inspector.wait_for_function(
        "document.getElementById('join-status').textContent.startsWith('joined')", timeout=15_000)
    with psycopg.connect(demo_stack.db_url, autocommit=True) as db:
        db.execute("update groups set capacity = capacity + 1 where name = 'Violin'")
    inspector.wait_for_function(
        """document.getElementById('join-log').textContent.includes('"event":"postgres_changes"')""",
        timeout=15_000)
    inspector.wait_for_function(
        "document.querySelector('#outbox tbody')?.textContent.includes('UPDATE public.groups')",
        timeout=15_000)
    inspector.screenshot(path=str(ARTIFACTS / "inspector.png"), full_page=True)
    if os.environ.get("RIPPLE_UPDATE_DOCS_SCREENSHOT"):
        shutil.copy(ARTIFACTS / "inspector.png", ROOT / "docs" / "inspector.png")
    assert inspector.errors == [] and ada.errors == [] and bea.errors == []
    for page in (inspector, ada, bea):
        page.context.close()
