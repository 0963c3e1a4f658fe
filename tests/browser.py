"""Headless Chromium for the browser tests (Debian's chromium + chromium-driver, driven by
Selenium), and a static HTTP server on 127.0.0.1.

The browser runs with the flags that keep it off the network on its own (no component
updates, no sync, no background requests), so that every request it makes is one a page
asked for; the Chrome DevTools performance log records those requests for the tests.
"""
from __future__ import annotations

import contextlib
import functools
import http.server
import json
import shutil
import tempfile
import threading
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--no-first-run", "--disable-quic",
    "--disable-domain-reliability", "--disable-features=OptimizationHints,MediaRouter,Translate",
    "--window-size=1280,1000",
]


def require_chromium() -> None:
    """Fail (not skip) with the fix when the browser is missing: .ci/run installs it."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    if missing:
        pytest.fail(f"browser tests need Debian's chromium and chromium-driver ({missing} not found): "
                    "run `apt-get install chromium chromium-driver` (.ci/run does this when missing)")


@contextlib.contextmanager
def chromium():
    """A Selenium WebDriver for a fresh headless Chromium profile; quits on exit."""
    require_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def network_events(driver) -> list[dict]:
    """Drain the performance log: every request the page made and every response it got.

    Returns dicts {"kind": "request"|"response"|"failed", "url", "status", "type"}.
    """
    events = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        method, params = msg.get("method"), msg.get("params", {})
        if method == "Network.requestWillBeSent":
            events.append({"kind": "request", "url": params["request"]["url"], "type": params.get("type")})
        elif method == "Network.responseReceived":
            r = params["response"]
            events.append({"kind": "response", "url": r["url"], "status": r["status"], "type": params.get("type")})
        elif method == "Network.loadingFailed":
            events.append({"kind": "failed", "url": params.get("requestId"), "error": params.get("errorText"),
                           "type": params.get("type")})
    return events


def console_errors(driver) -> list[str]:
    """Console messages at level SEVERE (JavaScript errors, failed loads)."""
    return [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass


@contextlib.contextmanager
def serve(directory: Path):
    """Serve `directory` on 127.0.0.1 at a free port; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
