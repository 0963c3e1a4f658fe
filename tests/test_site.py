"""The published website in a real browser, offline: every page of the table of contents is
opened in headless Chromium from a server on 127.0.0.1, as a student would see it.

For each page: HTTP 200 for the page and every local file it loads; no request leaves
127.0.0.1 (MathJax, require.js and the widget manager are served from _static: see
book/_ext/offline_assets.py); MathJax has typeset every equation and no raw TeX delimiters
are left in the text; every image has loaded; the embedded widgets are drawn; no
JavaScript console error. A full-page screenshot of each page is saved under
_build/screenshots/. The search page must find "Langevin".
"""
from __future__ import annotations

import re
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest

from browser import chromium, console_errors, network_events, serve
from conftest import REPO, toc_pages

HTML = REPO / "_build" / "html"
SHOTS = REPO / "_build" / "screenshots"

pytestmark = pytest.mark.slow


WAIT_FOR_PAGE = """
const done = arguments[arguments.length - 1];
const deadline = Date.now() + 30000;
document.querySelectorAll('img').forEach(img => { img.loading = 'eager'; });
function ready() {
  const imgs = [...document.images].every(img => img.complete);
  const mj = !document.querySelector('.math') ||
             (window.MathJax && MathJax.startup && MathJax.startup.promise);
  return imgs && mj;
}
(function poll() {
  if (ready()) {
    const p = (window.MathJax && MathJax.startup && MathJax.startup.promise) || Promise.resolve();
    p.then(() => done(true), e => done('MathJax failed: ' + e));
  } else if (Date.now() > deadline) {
    done('timed out waiting for images/MathJax');
  } else {
    setTimeout(poll, 100);
  }
})();
"""

PAGE_FACTS = """
const text = (() => {
  const body = document.querySelector('main') || document.body;
  const copy = body.cloneNode(true);
  copy.querySelectorAll('pre, code, script, style, textarea, mjx-assistive-mml').forEach(e => e.remove());
  return copy.innerText;
})();
const maths = [...document.querySelectorAll('.math')];
return {
  math: maths.length,
  untypeset: maths.filter(e => !e.querySelector('mjx-container')).map(e => e.textContent.slice(0, 80)),
  mathErrors: [...document.querySelectorAll('mjx-merror, [data-mjx-error]')].map(e => e.textContent.slice(0, 80)),
  rawTex: (text.match(/\\$\\$|\\\\\\(|\\\\\\[/g) || []).length,
  rawTexSample: (text.match(/.{0,40}(\\$\\$|\\\\\\(|\\\\\\[).{0,40}/) || [''])[0],
  images: document.images.length,
  brokenImages: [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src),
  widgetViews: document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]').length,
  widgetsDrawn: document.querySelectorAll('.jupyter-widgets, .widget-container, .widget-inline-hbox').length,
  height: Math.max(document.body.scrollHeight, document.documentElement.scrollHeight),
};
"""


def _screenshot(driver, path: Path, height: int) -> None:
    """Full-page PNG of what a reader sees in the 1280 px window, through the DevTools
    protocol (Selenium's own is the viewport only).

    The page is laid out in a viewport as wide as the window's content area (1280 px less the
    scrollbar) and as tall as the page, and captured whole at the document's scroll width.
    (Capturing a 1280 x height clip "beyond the viewport" instead let Chromium lay the page
    out again for the capture, shifted left, so the text started mid-sentence.)
    """
    import base64

    height = min(height, 16000)  # keep files reasonable; chapters are shorter than this
    width = driver.execute_script("return document.documentElement.clientWidth")
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
    try:
        full = driver.execute_script(
            "return [document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
        shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": False,
            "clip": {"x": 0, "y": 0, "width": max(width, full[0]), "height": min(full[1], 16000), "scale": 1}})
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    path.write_bytes(base64.b64decode(shot["data"]))


def _check_requests(events: list[dict], base: str) -> list[str]:
    problems = []
    host = urlparse(base).netloc
    for e in events:
        url = e.get("url", "")
        scheme = urlparse(url).scheme
        if e["kind"] == "request" and scheme in ("http", "https", "ws", "wss") and urlparse(url).netloc != host:
            problems.append(f"request leaves 127.0.0.1: {url}")
        if e["kind"] == "response" and url.startswith(base) and e["status"] not in (200, 304):
            problems.append(f"HTTP {e['status']} for {url}")
        if e["kind"] == "failed" and e.get("error") != "net::ERR_ABORTED":
            problems.append(f"load failed ({e.get('error')}) for a {e.get('type')} resource")
    return problems


@pytest.fixture(scope="module")
def site(book_build):
    if book_build.returncode != 0:
        pytest.fail("the book did not build (see test_book_builds_without_warnings)")
    SHOTS.mkdir(parents=True, exist_ok=True)
    with serve(HTML) as base, chromium() as driver:
        driver.set_script_timeout(40)
        yield base, driver


def test_every_page_displays_offline(site):
    base, driver = site
    problems: dict[str, list[str]] = {}
    totals = {"math": 0, "images": 0, "widgets": 0}
    for page in toc_pages() + ["search", "genindex"]:
        url = f"{base}/{page}.html"
        driver.get_log("performance"), driver.get_log("browser")  # drain the previous page's logs
        driver.get(url)
        status = driver.execute_async_script(WAIT_FOR_PAGE)
        facts = driver.execute_script(PAGE_FACTS)
        time.sleep(0.3)  # late console messages (widget manager) arrive after load
        found = _check_requests(network_events(driver), base)
        if status is not True:
            found.append(str(status))
        found += [f"console error: {m}" for m in console_errors(driver)]
        if facts["untypeset"]:
            found.append(f"{len(facts['untypeset'])} of {facts['math']} equations not typeset, "
                         f"e.g. {facts['untypeset'][0]!r}")
        if facts["mathErrors"]:
            found.append(f"MathJax errors: {facts['mathErrors'][:3]}")
        if facts["rawTex"]:
            found.append(f"{facts['rawTex']} raw TeX delimiters in the text, e.g. {facts['rawTexSample']!r}")
        if facts["brokenImages"]:
            found.append(f"images not loaded: {facts['brokenImages'][:3]}")
        if facts["widgetViews"] and facts["widgetsDrawn"] == 0:
            found.append(f"{facts['widgetViews']} widgets embedded but none drawn")
        totals["math"] += facts["math"]
        totals["images"] += facts["images"]
        totals["widgets"] += facts["widgetViews"]
        _screenshot(driver, SHOTS / (page.replace("/", "__") + ".png"), facts["height"])
        if found:
            problems[page] = found
    assert not problems, "\n".join(f"{p}:\n  " + "\n  ".join(v) for p, v in problems.items())
    # the checks above ran on real content, not on empty pages
    assert totals["math"] > 100 and totals["images"] > 20 and totals["widgets"] >= 3, totals


def test_search_finds_langevin(site):
    base, driver = site
    driver.get(f"{base}/search.html?q=Langevin")
    deadline = time.time() + 30
    results: list[str] = []
    while time.time() < deadline:
        results = driver.execute_script(
            "return [...document.querySelectorAll('#search-results li a')].map(a => a.getAttribute('href'))")
        if results:
            break
        time.sleep(0.2)
    _screenshot(driver, SHOTS / "search-Langevin.png", 1000)
    assert any(re.search(r"07-annealed-langevin", r) for r in results), f"search results: {results}"


def test_no_cdn_address_left_in_the_pages(book_build):
    """A static check behind the browser one: no page links a script or style from a CDN."""
    assert book_build.returncode == 0
    cdn = re.compile(r"""<(?:script|link)[^>]+(?:src|href)=["']https?://""")
    offenders = [str(p.relative_to(HTML)) for p in HTML.rglob("*.html") if cdn.search(p.read_text())]
    assert not offenders, f"pages that load a script or stylesheet from the internet: {offenders}"


def test_every_chapter_offers_its_notebook(site):
    """The download menu of each chapter and exercise page links an .ipynb that is served and
    is a notebook (chapters: the executed one, with outputs)."""
    import json
    import urllib.request

    base, driver = site
    missing = []
    for page in toc_pages():
        if page.endswith(("intro", "notation", "bibliography")):
            continue
        driver.get(f"{base}/{page}.html")
        links = driver.execute_script(
            "return [...document.querySelectorAll('.dropdown-download-buttons a')].map(a => a.href)"
            ".filter(h => h.endsWith('.ipynb'))")
        if not links:
            missing.append(f"{page}: no .ipynb in the download menu")
            continue
        with urllib.request.urlopen(links[0]) as response:
            nb = json.load(response)
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        if not code:
            missing.append(f"{page}: {links[0]} has no code cells")
        elif page.startswith("book/") and not any(c.get("outputs") for c in code):
            missing.append(f"{page}: {links[0]} has no outputs (not the executed notebook)")
    assert not missing, "\n".join(missing)
