"""The leaderboards as a static site: ``dfbench leaderboard --format html --out DIR``.

The pages are the markdown leaderboards (:func:`dfbench.app.leaderboard.render`: the same groups,
columns, regime checks and numbers, computed from the records once) turned into HTML with
markdown-it (which rich already brings), wrapped in jinja2 templates (``dfbench/app/site_templates``),
plus one page per row: its seeds, validation curves, pictures, per-query AP by class and its config's
difference from the rows next to it. Every table sorts (click a header) and filters (the box
above it) with a few lines of JavaScript inlined in the page, so the site works from ``file://`` and
from any static host, with no server and nothing fetched. Everything it writes stays in ``DIR``:
pictures and curve files are copied from the records' own run folders, never followed out of them.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

#: the largest per-query file read (decompressed): a record's folder is data from someone else
MAX_QUERIES_BYTES = 64 * 2**20
#: neighbours whose config difference a row page shows
MAX_NEIGHBOURS = 8


@dataclass
class Site:
    """What :func:`build_site` wrote: the output folder and its files (relative paths)."""

    out: Path
    pages: list = field(default_factory=list)
    assets: list = field(default_factory=list)


@dataclass
class Row:
    """The records of one leaderboard row: one (dataset, method, config hash), each seed a record."""

    dataset: str
    method: str
    config_hash: str
    label: str
    records: list

    @property
    def page(self) -> str:
        from dfbench.api.fileio import safe_component

        return f"rows/{safe_component(self.dataset, 'the dataset name')}/{safe_component(self.method, 'the method name')}-{self.config_hash}.html"


def _env():
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("dfbench.app", "site_templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def markdown_to_html(text: str) -> str:
    """A leaderboard page's markdown as HTML; raw HTML in it is escaped, never passed through (a
    record's names reach these pages)."""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": False}).enable("table").render(text)


_HASH_CELL = re.compile(r'<td( style="[^"<>]*")?><code>([0-9a-f]{12})</code></td>')
_MD_LINK = re.compile(r'href="([A-Za-z0-9_.\-]+)\.md(#[^"]*)?"')


def _link_rows(html: str, rows_by_hash: dict, prefix: str = "") -> str:
    """Each table cell holding a row's config hash links to that row's page."""

    def link(m):
        rows = rows_by_hash.get(m.group(2), [])
        if len({r.page for r in rows}) != 1:  # unknown or ambiguous: left as it is
            return m.group(0)
        return f'<td{m.group(1) or ""}><a href="{prefix}{rows[0].page}"><code>{m.group(2)}</code></a></td>'

    return _HASH_CELL.sub(link, html)


def _page_links(html: str) -> str:
    """Links between the markdown pages point to their HTML pages (README.md is index.html)."""
    return _MD_LINK.sub(lambda m: f'href="{"index" if m.group(1) == "README" else m.group(1)}.html{m.group(2) or ""}"', html)


def _flatten(obj, prefix: str = "") -> dict:
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: obj}


def _fmt(v, digits: int = 4) -> str:
    if isinstance(v, bool) or v is None:
        return "-" if v is None else str(v)
    if isinstance(v, float):
        return "-" if math.isnan(v) else f"{v:.{digits}f}"
    return str(v)


def _records_file(results: Path, record: dict, name: str) -> Path | None:
    """``name`` in a record's run folder (the record's own path without ``.json``), or None when it
    is not there or would lead out of ``results``."""
    path = record.get("_path")
    if not path:
        return None
    folder = Path(path).with_suffix("")
    candidate = folder / name
    try:
        resolved = candidate.resolve()
        resolved.relative_to(results.resolve())
    except (OSError, ValueError):
        return None
    return candidate if resolved.is_file() and not candidate.is_symlink() else None


def per_query_by_class(results: Path, row: Row) -> tuple[list[dict], list[str]]:
    """AP by class, from each seed's ``queries.csv.gz``: [{class, queries, AP per seed..., mean}],
    and the seeds read. A file that is missing, too large or malformed is skipped."""
    table: dict = {}
    seeds = []
    for rec in sorted(row.records, key=lambda r: r["seed"]):
        path = _records_file(results, rec, "queries.csv.gz")
        if path is None:
            continue
        try:
            with gzip.open(path, "rb") as fh:
                raw = fh.read(MAX_QUERIES_BYTES + 1)
            if len(raw) > MAX_QUERIES_BYTES:
                continue
            reader = csv.DictReader(io.StringIO(raw.decode("utf-8")))
            sums: dict = {}
            for line in reader:
                label, ap = int(line["label"]), float(line["AP"])
                s = sums.setdefault(label, [0, 0.0])
                s[0] += 1
                s[1] += ap
        except (OSError, EOFError, ValueError, KeyError, TypeError, UnicodeDecodeError, gzip.BadGzipFile, csv.Error):
            continue
        classes = (rec.get("data") or {}).get("classes") or []
        seeds.append(f"seed {rec['seed']}")
        for label, (n, total) in sums.items():
            name = classes[label] if 0 <= label < len(classes) else str(label)
            entry = table.setdefault(name, {"class": name, "queries": n, "ap": {}})
            entry["ap"][f"seed {rec['seed']}"] = total / n
    rows = []
    for entry in table.values():
        values = [entry["ap"].get(s) for s in seeds]
        known = [v for v in values if v is not None]
        rows.append({"class": entry["class"], "queries": entry["queries"], "values": [_fmt(v) for v in values],
                     "mean": _fmt(sum(known) / len(known)) if known else "-"})
    rows.sort(key=lambda r: r["class"])
    return rows, seeds


def curves_svg(row: Row, width: int = 640, height: int = 260) -> str | None:
    """Validation mAP@all against teacher images (rounds where a row spent none), one line per
    seed, from the records' ``anytime`` points, as inline SVG; None without points."""
    series = []
    for rec in sorted(row.records, key=lambda r: r["seed"]):
        points = [p for p in rec.get("anytime") or [] if isinstance(p, dict) and isinstance(p.get("value"), (int, float))]
        if points:
            x_key = "teacher images" if any(p.get("teacher images") for p in points) else "round"
            series.append((rec["seed"], [(float(p.get(x_key) or 0.0), float(p["value"])) for p in points], x_key))
    if not series:
        return None
    xs = [x for _, pts, _ in series for x, _ in pts]
    ys = [y for _, pts, _ in series for _, y in pts]
    x0, x1 = min(xs), max(xs) or 1.0
    y0, y1 = 0.0, max(max(ys), 1e-6)
    pad = 40

    def px(x):
        return pad + (x - x0) / ((x1 - x0) or 1.0) * (width - 2 * pad)

    def py(y):
        return height - pad - (y - y0) / ((y1 - y0) or 1.0) * (height - 2 * pad)

    colours = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f")
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="validation mAP@all per seed">',
             f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#444"/>',
             f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="#444"/>',
             f'<text x="{width / 2}" y="{height - 8}" text-anchor="middle" font-size="12">{series[0][2]}</text>',
             f'<text x="12" y="{height / 2}" transform="rotate(-90 12 {height / 2})" text-anchor="middle" font-size="12">val mAP@all</text>',
             f'<text x="{pad - 4}" y="{py(y1) + 4}" text-anchor="end" font-size="10">{y1:.3f}</text>',
             f'<text x="{pad - 4}" y="{py(0) + 4}" text-anchor="end" font-size="10">0</text>',
             f'<text x="{width - pad}" y="{height - pad + 14}" text-anchor="end" font-size="10">{x1:g}</text>']
    for i, (seed, pts, _) in enumerate(series):
        colour = colours[i % len(colours)]
        coords = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{coords}"/>')
        parts.append(f'<text x="{width - pad + 4}" y="{pad + 14 * i}" font-size="11" fill="{colour}">seed {seed}</text>')
    parts.append("</svg>")
    return "".join(parts)


def config_differences(row: Row, neighbours: list[Row]) -> list[dict]:
    """For each neighbour (rows of the same method on the same dataset), the config keys whose
    values differ from this row's: [{neighbour, page, keys: [(key, this, theirs)]}]."""
    mine = _flatten(row.records[0].get("config") or {})
    out = []
    for other in neighbours[:MAX_NEIGHBOURS]:
        theirs = _flatten(other.records[0].get("config") or {})
        keys = [(k, _fmt(mine.get(k, "(unset)")), _fmt(theirs.get(k, "(unset)")))
                for k in sorted(set(mine) | set(theirs)) if mine.get(k, "(unset)") != theirs.get(k, "(unset)")]
        out.append({"label": other.label, "config_hash": other.config_hash, "page": other.page, "keys": keys})
    return out


def _rows(records: list[dict], labels: dict, suite_tables) -> list[Row]:
    suite_labels = {}
    for table in suite_tables:
        for label, dataset, method, chash, _ in table.rows:
            suite_labels.setdefault((dataset, method, chash), label)
    groups: dict = {}
    for rec in records:
        groups.setdefault((rec["dataset"], rec["method"], rec["config_hash"]), []).append(rec)
    rows = []
    for (dataset, method, chash), recs in sorted(groups.items()):
        label = labels.get((dataset, method, chash)) or suite_labels.get((dataset, method, chash)) or method
        rows.append(Row(dataset, method, chash, label, sorted(recs, key=lambda r: r["seed"])))
    return rows


def row_metrics(row: Row) -> list[str]:
    """The core four, then every other metric one of the row's records holds (a plugin's)."""
    from dfbench.app.records import METRIC_KEYS

    extra = sorted({k for rec in row.records for k in (rec.get("metrics") or {}) if k not in METRIC_KEYS})
    return [*METRIC_KEYS, *extra]


def _seed_rows(row: Row) -> list[dict]:
    out = []
    for rec in row.records:
        metrics = rec.get("metrics") or {}
        selection = rec.get("selection") or {}
        synthesis = rec.get("synthesis") or {}
        budget = rec.get("budget") or {}
        out.append({
            "seed": rec["seed"], "status": rec.get("status"),
            "metrics": [_fmt(metrics.get(k)) for k in row_metrics(row)],
            "wall": _fmt((rec.get("timing") or {}).get("total"), 0),
            "selected": f"{selection['round']} of {selection.get('rounds', '?')}" if isinstance(selection.get("round"), int) else "-",
            "agreement": _fmt(synthesis.get("pair agreement"), 2),
            "teacher_images": _fmt(budget.get("teacher_images"), 0),
            "teachers": ", ".join(f"{role} {_fmt(t.get('accuracy') if not isinstance(t.get('accuracy'), dict) else t['accuracy'].get('all'), 2)}"
                                  for role, t in sorted((rec.get("teachers") or {}).items()) if isinstance(t, dict)),
        })
    return out


def build_site(results: Path | None = None, *, out: Path | None = None, suites_dir: Path | None = None) -> Site:
    """The static site of the leaderboards of ``results`` (default: the committed records) in
    ``out`` (default ``./site``): index.html, a page per dataset and own-table suite, a page per
    row, and the pictures and curve files the pages show, copied from the records' run folders."""
    from dfbench.api.errors import DfbenchError
    from dfbench.api.fileio import atomic_write_bytes, atomic_write_text, check_writable_dir
    from dfbench.api.locations import committed_records, suites_dir as default_suites
    from dfbench.app import leaderboard as lb
    from dfbench.app.records import pinned_teachers

    if results is None:
        results = committed_records()
        if results is None:
            raise DfbenchError("No run records to build the site from: the committed records (leaderboards/records in the "
                               "checkout) are not here, and no --results was given. Pass --results DIR.")
    results, out = Path(results), Path(out or "site")
    if not results.is_dir():
        raise DfbenchError(f"Results folder {results} does not exist. Pass --results DIR (where 'dfbench run' wrote its records).")
    check_writable_dir(out, "site folder", "--out")
    suites_dir = Path(suites_dir) if suites_dir else default_suites()
    tables, dataset_keys, labels, regimes = lb.suite_tables(suites_dir) if suites_dir.is_dir() else ([], {}, {}, [])
    records = lb.load_records(results)
    reported = lb.load_reported(suites_dir / "reported")
    files = lb.render(records, link_base="records", suite_tables=tables, reported=reported, dataset_keys=dataset_keys,
                      labels=labels, pinned=pinned_teachers(), regimes=regimes)
    rows = _rows(records, labels, tables)
    by_hash: dict = {}
    for row in rows:
        by_hash.setdefault(row.config_hash, []).append(row)
    env = _env()
    site = Site(out)
    nav = [("index.html", "Overview")] + [(f"{n.removesuffix('.md')}.html", n.removesuffix(".md"))
                                           for n in sorted(files) if n != "README.md"]
    pages: dict[str, str] = {}
    for name, text in files.items():
        body = _page_links(_link_rows(markdown_to_html(text.split("\n", 1)[1] if text.startswith("<!--") else text), by_hash))
        page = "index.html" if name == "README.md" else f"{name.removesuffix('.md')}.html"
        title = "Leaderboards" if name == "README.md" else name.removesuffix(".md")
        pages[page] = env.get_template("page.html.j2").render(title=title, body=body, nav=nav, root="", current=page)
    assets: dict[str, Path] = {}  # relative path in the site -> source file
    for row in rows:
        neighbours = [r for r in rows if r.dataset == row.dataset and r.method == row.method and r is not row]
        pictures = []
        for rec in row.records:
            for pic in rec.get("pictures") or []:
                src = _records_file(results, rec, str(pic))
                if src is not None:
                    rel = src.resolve().relative_to(results.resolve()).as_posix()
                    assets[f"records/{rel}"] = src
                    pictures.append({"seed": rec["seed"], "name": str(pic), "src": f"../../records/{rel}"})
        curve_files = []
        for rec in row.records:
            src = _records_file(results, rec, "curves.csv")
            if src is not None:
                rel = src.resolve().relative_to(results.resolve()).as_posix()
                assets[f"records/{rel}"] = src
                curve_files.append({"seed": rec["seed"], "src": f"../../records/{rel}"})
        per_class, query_seeds = per_query_by_class(results, row)
        pages[row.page] = env.get_template("row.html.j2").render(
            title=f"{row.label} on {row.dataset}", row=row, nav=nav, root="../../", current=row.page,
            metric_keys=row_metrics(row), seeds=_seed_rows(row), curves=curves_svg(row), curve_files=curve_files,
            pictures=pictures, per_class=per_class, query_seeds=query_seeds,
            differences=config_differences(row, neighbours),
            config=json.dumps(row.records[0].get("config") or {}, indent=2, sort_keys=True),
        )
    # links from the pages into records/: each file they name is copied, when it lies in results
    for page_html in list(pages.values()):
        for ref in re.findall(r'(?:href|src)="records/([^"#?]+)"', page_html):
            src = results / ref
            try:
                src.resolve().relative_to(results.resolve())
            except (OSError, ValueError):
                continue
            if src.is_file() and not src.is_symlink():
                assets[f"records/{ref}"] = src
    for rel, text in pages.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / rel, text)
        site.pages.append(rel)
    for rel, src in sorted(assets.items()):
        dest = out / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not dest.is_file() or dest.stat().st_size != src.stat().st_size or dest.read_bytes() != src.read_bytes():
            atomic_write_bytes(dest, src.read_bytes())
        site.assets.append(rel)
    return site


#: Chromium's flags for a closed network: without the background-networking ones it keeps trying
#: to reach Google's hosts at every start
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage")


def chromium_paths() -> tuple[str, str] | None:
    """(chromium, chromedriver) as Debian's packages install them (or on PATH), or None."""
    found = [shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").is_file() else None)
             for name in ("chromium", "chromedriver")]
    return (found[0], found[1]) if all(found) else None


def headless_chromium(width: int = 1400, height: int = 1000):
    """A Selenium driver of a headless Chromium with a fresh profile, its console log readable
    (``driver.get_log("browser")``): for the site's browser test and its screenshot. Raises
    RuntimeError naming what to install when Chromium, its driver or selenium is missing."""
    import tempfile

    paths = chromium_paths()
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        paths = None
    if paths is None:
        raise RuntimeError("A headless browser needs Chromium, its driver and selenium: apt-get install chromium "
                           "chromium-driver; pip install selenium (both in dfbench's test set-up, .ci/run).")
    options = webdriver.ChromeOptions()
    for flag in (*CHROMIUM_FLAGS, f"--window-size={width},{height}", f"--user-data-dir={tempfile.mkdtemp(prefix='dfbench-chromium-')}"):
        options.add_argument(flag)
    options.binary_location = paths[0]
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(paths[1]), options=options)


__all__ = ["Site", "Row", "build_site", "headless_chromium", "chromium_paths", "markdown_to_html", "per_query_by_class", "curves_svg", "config_differences"]
