"""Screenshots of the atlas, taken by headless Chromium: the index, a layer page, a channel page.

Builds (continues, or rebuilds after a change of settings) the ``--quick`` atlas of
``zfnet-fashion`` layers 1-5 over the first 300 Fashion-MNIST test images in ``atlas-quick/``
(git-ignored), then opens it from
``file://`` in Debian's ``chromium`` (through selenium and ``chromedriver``) and saves
``index.png``, ``layer.png`` (paper layer 3) and ``channel.png`` (its strongest channel) to
``results/atlas/`` (``results/quick/atlas/`` with ``--quick``). Without a browser the atlas is
still built and the screenshots are skipped with a note.

Usage: ``python experiments/atlas_screenshots.py [--quick] [--site DIR] [--out DIR]``
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def screenshot(driver, url: str, path: Path, height: int = 1100) -> None:
    """Open ``url`` and save the top ``height`` pixels of the page (1280 px wide) as PNG."""
    driver.set_window_size(1280, height)
    driver.get(url)
    full = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, min(height, max(full, 400)))
    path.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(path))


def open_browser():
    """Headless Chromium through selenium, or None (with the reason printed)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        print("note: selenium is not installed; no screenshots (pip install -e '.[dev]')")
        return None
    if chromium is None or driver_path is None:
        print("note: chromium/chromedriver not installed; no screenshots "
              "(apt-get install chromium chromium-driver)")
        return None
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--hide-scrollbars", "--force-device-scale-factor=1"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(driver_path), options=options)


def main(argv: list[str] | None = None) -> None:
    """Build the quick atlas and take the three screenshots."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="write the screenshots to results/quick/atlas")
    parser.add_argument("--site", default=str(ROOT / "atlas-quick"), help="atlas folder")
    parser.add_argument("--out", default=None, help="screenshot folder")
    args = parser.parse_args(argv)
    out = Path(args.out) if args.out else ROOT / "results" / ("quick/atlas" if args.quick
                                                             else "atlas")
    import deconv

    start = time.perf_counter()
    build = deconv.build_atlas(deconv.load_model("zfnet-fashion"), "fashion-mnist:test",
                               [1, 2, 3, 4, 5], args.site, quick=True, rebuild=True)
    print(f"quick atlas in {args.site} ({time.perf_counter() - start:.1f} s, "
          f"{build.manifest['site_bytes'] / 1e6:.1f} MB): {build.index.as_uri()}")
    layer = next(x for x in build.manifest["layers"] if x["paper"] == 3)
    strongest = max(layer["feature_maps"], key=lambda r: r["max_activation"])
    site = Path(args.site).resolve()
    pages = {"index.png": site / "index.html", "layer.png": site / layer["page"],
             "channel.png": site / strongest["page"]}
    driver = open_browser()
    if driver is None:
        return
    try:
        for name, page in pages.items():
            screenshot(driver, page.as_uri(), out / name)
            print(f"wrote {out / name}")
    finally:
        driver.quit()
    (out / "screenshots.json").write_text(json.dumps(
        {name: str(page.relative_to(site)) for name, page in pages.items()}, indent=1) + "\n")


if __name__ == "__main__":
    main()
