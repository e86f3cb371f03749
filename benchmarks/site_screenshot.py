"""The overview page of the leaderboard site, as headless Chromium renders it.

    python benchmarks/site_screenshot.py [--out leaderboards/site-overview.png]

Builds the site of the committed records (``dfbench leaderboard --format html``) in a temporary
folder, opens its index.html from ``file://`` in headless Chromium (Debian's chromium and
chromium-driver, driven by selenium), prints the page's title, the number of table rows it shows
and any console message, and saves a screenshot. ``dfbench leaderboard`` links the screenshot from
the overview page when it lies beside it.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path


def main() -> None:
    from dfbench.app.leaderboard import SITE_SCREENSHOT
    from dfbench.app.site import build_site, headless_chromium

    repo = Path(__file__).resolve().parent.parent
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=repo / "leaderboards" / SITE_SCREENSHOT)
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        site = build_site(repo / "leaderboards" / "records", out=Path(tmp) / "site", suites_dir=repo / "benchmarks")
        driver = headless_chromium(args.width, args.height)
        try:
            driver.get((site.out / "index.html").resolve().as_uri())
            title = driver.title
            rows = driver.execute_script("return document.querySelectorAll('main table tbody tr').length")
            console = driver.get_log("browser")
            driver.save_screenshot(str(args.out))
        finally:
            driver.quit()
    print(f"title: {title}; table rows shown: {rows}; console messages: {len(console)}")
    for entry in console:
        print(f"  {entry.get('level')}: {entry.get('message')}")
    print(f"screenshot: {args.out}")


if __name__ == "__main__":
    main()
