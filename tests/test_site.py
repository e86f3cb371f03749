"""The leaderboard site (dfbench.app.site): its pages hold the records' rows, its links stay in its
folder, record text is escaped, and in a real headless browser the rows a reader sees equal the
records, sorting reorders them, filtering hides rows, and the console stays quiet."""

from __future__ import annotations

import json
import os
import re
from html.parser import HTMLParser
from pathlib import Path
from statistics import mean

import pytest
from click.testing import CliRunner

from conftest import REPO, error_paragraph, sealed

RECORDS = REPO / "leaderboards" / "records"


class Tables(HTMLParser):
    """Every table of a page as [(header cells, [row cells]), ...], each cell (text, hrefs)."""

    def __init__(self):
        super().__init__()
        self.tables, self.refs, self._cell, self._row, self._in_head = [], [], None, None, False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("href", "src"):
            if attrs.get(key):
                self.refs.append(attrs[key])
        if tag == "table":
            self.tables.append(([], []))
        elif tag == "thead":
            self._in_head = True
        elif tag == "tbody":
            self._in_head = False
        elif tag == "tr" and self.tables:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = ["", []]
        elif tag == "a" and self._cell is not None:
            self._cell[1].append(attrs.get("href"))

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[0] += data

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append((self._cell[0].strip(), self._cell[1]))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            head, body = self.tables[-1]
            if self._in_head:
                head.extend(text for text, _ in self._row)
            else:
                body.append(self._row)
            self._row = None


def parse(path: Path) -> Tables:
    p = Tables()
    p.feed(path.read_text(encoding="utf-8"))
    return p


def first_number(text: str) -> float | None:
    m = re.match(r"(?:incomplete \(\d+/\d+ seeds: )?([-+]?\d+\.\d+)", text)
    return float(m.group(1)) if m else None


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    from dfbench.app.site import build_site

    return build_site(RECORDS, out=tmp_path_factory.mktemp("site") / "site", suites_dir=REPO / "benchmarks")


@pytest.fixture(scope="module")
def groups():
    """{(dataset, method, config hash): [mAP@all of each completed record]} of the committed records."""
    from dfbench.app.leaderboard import load_records

    out: dict = {}
    for rec in load_records(RECORDS):
        if rec["status"] == "completed":
            out.setdefault((rec["dataset"], rec["method"], rec["config_hash"]), []).append(rec)
    return out


def row_key(href: str) -> tuple[str, str, str]:
    dataset, name = href.split("/")[-2:]
    method, chash = name.removesuffix(".html").rsplit("-", 1)
    return dataset, method, chash


def test_every_dataset_row_links_to_a_row_page_whose_seeds_are_the_records(site, groups):
    linked = 0
    for page in sorted(site.out.glob("*.html")):
        for head, body in parse(page).tables:
            if "config" not in head or "mAP@all" not in head:
                continue
            for cells in body:
                config_text, config_links = cells[head.index("config")]
                if cells[head.index("seeds")][0].startswith("0/"):  # a suite's row with no record yet: no page
                    assert not config_links
                    continue
                assert config_links, f"{page.name}: the row of config {config_text} links to no row page"
                key = row_key(config_links[0])
                assert key[2] == config_text
                row_page = site.out / config_links[0]
                assert row_page.is_file(), row_page
                seeds_head, seeds = parse(row_page).tables[0]
                recs = {r["seed"]: r for r in groups[key]}
                assert sorted(int(c[0][0]) for c in seeds) == sorted(recs)
                for c in seeds:
                    rec = recs[int(c[0][0])]
                    assert c[seeds_head.index("mAP@all")][0] == f"{rec['metrics']['mAP@all']:.4f}"
                shown = first_number(cells[head.index("mAP@all")][0])
                if shown is not None and page.name in (f"{key[0]}.html",):  # a dataset page: the mean of every seed
                    assert shown == pytest.approx(mean(r["metrics"]["mAP@all"] for r in recs.values()), abs=6e-5)
                linked += 1
    assert linked >= len({k for k in groups}) // 2, linked  # most rows of the committed records are on some page


def test_every_link_of_the_site_stays_in_its_folder_and_resolves(site):
    root = site.out.resolve()
    for rel in site.pages:
        page = site.out / rel
        for ref in parse(page).refs:
            if ref.startswith(("http://", "https://", "#", "mailto:")):
                continue
            target = (page.parent / ref.split("#")[0]).resolve()
            assert target.is_relative_to(root), (rel, ref)
            assert target.is_file(), (rel, ref)


def test_per_query_ap_by_class_averages_to_the_record(site, groups):
    key = next(k for k in sorted(groups) if k[1] == "dfsbir" and k[0] == "shapes")
    from dfbench.app.site import Row

    page = site.out / Row(*key, label="", records=[]).page
    head, body = parse(page).tables[1]
    assert head[0] == "class" and head[-1] == "mean AP"
    seed0 = next(r for r in groups[key] if r["seed"] == 0)
    col = head.index("AP, seed 0")
    # the record's mAP@all is the mean over queries: the class means weighted by their query counts
    total = sum(int(c[1][0]) for c in body)
    weighted = sum(float(c[col][0]) * int(c[1][0]) for c in body) / total
    assert weighted == pytest.approx(seed0["metrics"]["mAP@all"], abs=2e-4)


def _write(folder: Path, record: dict) -> Path:
    path = folder / record["dataset"] / record["method"] / f"{record['config_hash']}-s{record['seed']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    return path


def test_record_text_is_escaped_and_files_outside_the_records_are_never_copied(tmp_path):
    import warnings

    from test_first_hour import _record

    from dfbench.app.records import BadRecordWarning
    from dfbench.app.site import build_site

    secret = tmp_path / "secret.png"
    secret.write_bytes(b"not yours")
    results = tmp_path / "results"
    rec = _record("dfsbir", 0, 0.4)
    rec["config"] = {"params": {"note": "<script>alert(1)</script>"}}
    rec["pictures"] = ["retrieval.png", "pairs.png"]
    rec = sealed(rec)
    folder = _write(results, rec).with_suffix("")
    folder.mkdir()
    (folder / "retrieval.png").write_bytes(b"\x89PNG fake")
    (folder / "pairs.png").symlink_to(secret)  # a link out of the records is never followed
    crafted = _record("unimodal-kd", 0, 0.3)
    crafted["pictures"] = ["../../../../secret.png"]
    _write(results, sealed(crafted))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        site = build_site(results, out=tmp_path / "site", suites_dir=tmp_path / "no-suites")
    assert any(issubclass(w.category, BadRecordWarning) and "secret.png" in str(w.message) for w in caught)
    text = "".join((site.out / p).read_text() for p in site.pages)
    assert "<script>alert(1)</script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "unimodal-kd" not in text  # the crafted record is left out whole
    copied = sorted(p.relative_to(site.out).as_posix() for p in site.out.rglob("*") if p.is_file() and p.suffix == ".png")
    assert copied == [f"records/shapes/dfsbir/{rec['config_hash']}-s0/retrieval.png"]
    assert not any(p.is_symlink() for p in site.out.rglob("*"))
    assert all(p.resolve().is_relative_to(site.out.resolve()) for p in site.out.rglob("*"))


def test_cli_writes_the_site_and_refuses_check(tmp_path):
    from dfbench.app.cli import cli

    res = CliRunner().invoke(cli, ["leaderboard", "--format", "html", "--out", str(tmp_path / "s"), "--results", str(RECORDS),
                                   "--suites", str(REPO / "benchmarks")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "s" / "index.html").is_file() and "pages" in res.output
    res = CliRunner().invoke(cli, ["leaderboard", "--format", "html", "--check"])
    assert res.exit_code == 2 and "--check compares the markdown" in error_paragraph(res.output)


# -- in a real browser ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    from dfbench.app.site import chromium_paths, headless_chromium

    try:
        import selenium  # noqa: F401
    except ImportError:
        selenium = None
    if chromium_paths() is None or selenium is None:
        if os.environ.get("DFBENCH_REQUIRE_BROWSER") == "1":
            pytest.fail("DFBENCH_REQUIRE_BROWSER=1 but Chromium, chromedriver or selenium is missing (.ci/run installs them)")
        pytest.skip("no headless Chromium here: apt-get install chromium chromium-driver; pip install selenium")
    driver = headless_chromium()
    yield driver
    driver.quit()


def _visible_rows(driver, table):
    return [[td.text for td in tr.find_elements("css selector", "td")]
            for tr in table.find_elements("css selector", "tbody tr") if tr.is_displayed()]


def test_in_a_browser_rows_equal_the_records_sort_and_filter(site, groups, browser):
    from selenium.webdriver.common.by import By

    browser.get((site.out / "shapes.html").resolve().as_uri())
    assert browser.title.startswith("shapes")
    tables = [t for t in browser.find_elements(By.CSS_SELECTOR, "main table")
              if "config" in [th.text.strip(" ▲▼") for th in t.find_elements(By.CSS_SELECTOR, "thead th")]]
    assert tables, "no leaderboard table rendered"
    table = max(tables, key=lambda t: len(t.find_elements(By.CSS_SELECTOR, "tbody tr")))
    head = [th.text for th in table.find_elements(By.CSS_SELECTOR, "thead th")]
    col, cfg, meth = head.index("mAP@all"), head.index("config"), head.index("method")
    rows = _visible_rows(browser, table)
    assert len(rows) >= 5
    for cells in rows:  # what a reader sees is the records' mean
        recs = groups[("shapes", next(k[1] for k in groups if k[0] == "shapes" and k[2] == cells[cfg]), cells[cfg])]
        shown = first_number(cells[col])
        if shown is not None:
            assert shown == pytest.approx(mean(r["metrics"]["mAP@all"] for r in recs), abs=6e-5), cells
    header = table.find_elements(By.CSS_SELECTOR, "thead th")[col]
    header.click()
    values = [first_number(c[col]) for c in _visible_rows(browser, table)]
    known = [v for v in values if v is not None]
    assert known == sorted(known, reverse=True) and values[: len(known)] == known  # numbers first, descending
    header.click()
    known = [v for v in (first_number(c[col]) for c in _visible_rows(browser, table)) if v is not None]
    assert known == sorted(known)
    before = len(_visible_rows(browser, table))
    box = browser.execute_script("return arguments[0].previousElementSibling", table)
    box.send_keys("dfsbir")
    shown = _visible_rows(browser, table)
    assert 0 < len(shown) < before and all("dfsbir" in c[meth] for c in shown)
    # a row's config links to its page, whose seeds are the row's records
    link = table.find_element(By.XPATH, f".//tbody/tr[not(contains(@class,'hidden'))]/td[{cfg + 1}]/a")
    chash = link.text
    link.click()
    seeds = browser.find_elements(By.CSS_SELECTOR, "#seeds tbody tr")
    key = next(k for k in groups if k[0] == "shapes" and k[2] == chash)
    assert len(seeds) == len(groups[key])
    assert browser.find_elements(By.CSS_SELECTOR, "svg polyline"), "no validation curve drawn"
    errors = [e for e in browser.get_log("browser") if e.get("level") == "SEVERE"]
    assert not errors, errors
