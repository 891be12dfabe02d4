"""The atlas in a real browser: headless Chromium opens it from ``file://``, follows links,
and finds every image loaded, no console error and no request outside the folder.

Needs Debian's ``chromium`` and ``chromium-driver`` (``make setup`` installs them when
apt-get can) and ``selenium`` (the dev extras). Skipped, with the reason, only where no
browser is installed.
"""

from __future__ import annotations

import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from atlas_models import build_tiny

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("src", "href") and value is not None:
                self.urls.append(value)


def open_browser():
    """A headless Chromium driven by selenium, logging the console (skips if unavailable)."""
    webdriver = pytest.importorskip("selenium.webdriver",
                                    reason="selenium is not installed (pip install -e '.[dev]')")
    if CHROMIUM is None or DRIVER is None:
        pytest.skip("no headless browser: chromium and chromedriver are not installed and "
                    "could not be (apt-get install chromium chromium-driver; make setup tries)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--window-size=1280,1000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    return webdriver.Chrome(service=Service(DRIVER), options=options)


def _requested_urls(driver) -> list[str]:
    """Every URL the browser asked for since the last call (DevTools network events)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def _check_page(driver, root: Path) -> None:
    assert driver.execute_script("return document.readyState") == "complete"
    images = driver.execute_script(
        "return Array.from(document.images).map(i => [i.src, i.complete, i.naturalWidth])")
    for src, complete, width in images:
        assert complete and width > 0, f"image did not load: {src}"
    # the stylesheet applied and the script ran (both are local files)
    assert driver.execute_script(
        "return getComputedStyle(document.querySelector('table')).borderCollapse") == "collapse"
    if driver.find_elements("css selector", "table.sortable"):
        assert driver.find_elements("css selector", "th.sortable"), "atlas.js did not run"
    requested = _requested_urls(driver)
    resources = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)")
    assert requested, "no request was logged (DevTools performance log)"
    for url in requested + resources + [driver.current_url]:
        assert url.startswith("file://") or url.startswith("data:"), url
        if url.startswith("file://"):
            path = Path(unquote(urlparse(url).path)).resolve()
            assert path.is_relative_to(root) and path.is_file(), url
    errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert not errors, errors


def test_atlas_pages_in_headless_chromium(tmp_path):
    out = (tmp_path / "atlas").resolve()
    build = build_tiny(out)
    # every src/href of every page stays inside the folder
    for page in out.rglob("*.html"):
        parser = _Links()
        parser.feed(page.read_text())
        for url in parser.urls:
            assert url == "data:," or not re.match(r"^([a-z]+:|//)", url), (page, url)
            if url != "data:,":
                assert (page.parent / url).resolve().is_file(), (page, url)
    driver = open_browser()
    try:
        driver.get(build.index.as_uri())
        assert "Atlas of" in driver.title
        _check_page(driver, out)
        driver.find_element("css selector", "#model-card tbody a").click()
        assert driver.current_url.endswith("layers/1.html")
        _check_page(driver, out)
        assert len(driver.find_elements("css selector", "#channels tbody tr")) == 6
        header = driver.find_element("xpath", "//th[text()='max activation']")
        header.click()
        header.click()  # descending
        values = [float(td.get_attribute("data-value")) for td in driver.find_elements(
            "css selector", "#channels tbody tr td:nth-child(3)")]
        assert values == sorted(values, reverse=True)
        driver.find_element("css selector", "#channels a[href$='c0000.html']").click()
        assert driver.current_url.endswith("/channels/1/c0000.html")
        _check_page(driver, out)
        assert len(driver.find_elements("css selector", "img")) >= 5  # strips, optima, filter
        driver.find_element("css selector", "a[rel=next]").click()
        assert driver.current_url.endswith("/channels/1/c0001.html")
        _check_page(driver, out)
        driver.find_element("css selector", "a[href*='channels/4/']").click()  # feeds most
        assert "/channels/4/" in driver.current_url
        _check_page(driver, out)
    finally:
        driver.quit()
