"""A real headless browser opens the built book: every image loads, no console errors.

Uses Debian's Chromium (``/usr/bin/chromium``, installed by ``.ci/run``) driven by
Playwright, over a local HTTP server. Skipped when the book is not built or no browser is
available, unless ``VITLENS_REQUIRE_BOOK=1`` (CI), where that is a failure.
"""

from __future__ import annotations

import functools
import http.server
import threading
from pathlib import Path

import pytest
from _browser import CHROMIUM, CHROMIUM_FLAGS, REQUIRED

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"


def _unavailable() -> str | None:
    if not (HTML / "index.html").exists():
        return "the book is not built"
    if CHROMIUM is None:
        return "no chromium on PATH (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[test]')"
    return None


reason = _unavailable()
if reason:
    if REQUIRED:
        raise RuntimeError(f"browser check required but {reason}")
    pytest.skip(reason, allow_module_level=True)

from playwright.sync_api import sync_playwright  # noqa: E402
from test_book import page_of, toc_files  # noqa: E402


@pytest.fixture(scope="module")
def server():
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(HTML))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


PAGES = ["index.html"] + [page_of(s).relative_to(HTML).as_posix() for s in toc_files()]


@pytest.mark.parametrize("page_path", PAGES)
def test_page_loads_its_images_without_console_errors(server, browser, page_path):
    page = browser.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{server}/{page_path}", wait_until="networkidle")
    images = page.eval_on_selector_all(
        "img", "els => els.map(e => [e.getAttribute('src'), e.complete && e.naturalWidth > 0])"
    )
    page.close()
    broken = [src for src, loaded in images if not loaded]
    assert not broken, f"{page_path}: images that did not load: {broken}"
    assert not errors, f"{page_path}: console errors: {errors}"


CHAPTERS = [path for path in PAGES if path.startswith("notebooks/")]


def test_visible_chapter_code_fits_the_page_column_on_a_desktop_screen(server, browser):
    """At 1200 px wide, the narrowest window with both sidebars beside the text, no code
    cell of a chapter scrolls sideways, folded ones opened (tests/test_repository.py keeps
    every visible line within the width the chapters are formatted to)."""
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    scrolling = []
    for path in CHAPTERS:
        page.goto(f"{server}/{path}", wait_until="networkidle")
        page.eval_on_selector_all("details", "els => els.forEach(e => (e.open = true))")
        widths = page.eval_on_selector_all(
            "div.cell_input pre", "els => els.map(e => [e.scrollWidth, e.clientWidth])"
        )
        assert widths, f"{path}: no code cells found"
        scrolling += [path for scroll, client in widths if scroll > client + 1]
    page.close()
    assert not scrolling, f"code cells that scroll sideways: {sorted(set(scrolling))}"


def test_ledger_cells_are_plain_weight_while_pasted_prose_stays_bold(server, browser):
    def pasted_weights(page_path: str, selector: str) -> list[int]:
        page = browser.new_page()
        page.goto(f"{server}/{page_path}", wait_until="networkidle")
        weights = page.eval_on_selector_all(
            selector, "els => els.map(e => parseInt(getComputedStyle(e).fontWeight))"
        )
        page.close()
        return weights

    ledger = pasted_weights("book/findings.html", "table span.pasted-text")
    assert ledger and max(ledger) < 600, f"ledger cells rendered bold: {sorted(set(ledger))}"
    prose = pasted_weights("notebooks/06_scale.html", "p span.pasted-text")
    assert prose and min(prose) >= 600, f"measured numbers in prose not bold: {set(prose)}"


@pytest.mark.parametrize(
    "page_path", ["notebooks/03_local_global.html", "notebooks/04_skip_connections.html"]
)
def test_explorer_shows_the_view_the_reader_picks(server, browser, page_path):
    page = browser.new_page()
    page.goto(f"{server}/{page_path}", wait_until="networkidle")
    select = page.locator(".vitlens-explorer select").first
    visible = page.locator(".vitlens-explorer").first.locator("img:not([hidden])")
    assert visible.count() == 1
    before = visible.get_attribute("src")
    options = select.locator("option")
    assert options.count() > 1, f"{page_path}: the explorer offers one view only"
    select.select_option(index=options.count() - 1)
    assert visible.count() == 1
    after = visible.get_attribute("src")
    loaded = visible.evaluate("e => e.complete && e.naturalWidth > 0")
    page.close()
    assert after != before, f"{page_path}: picking another option did not change the figure"
    assert loaded
