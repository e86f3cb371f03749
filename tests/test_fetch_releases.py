"""``dfbench data fetch sketchy | tuberlin | quickdraw`` offline: a local HTTP server on 127.0.0.1
serves the replica archives of tests/replicas.py, including truncated, corrupt and interrupted
downloads and a server that ignores Range requests."""

from __future__ import annotations

import http.server
import json
import threading
import urllib.error
import zipfile
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner

from dfbench.api.datasets import DatasetOptions
from dfbench.api.errors import DataError
from dfbench_datasets import fetch as fetch_module
from dfbench_datasets import releases
from dfbench_datasets.commands import data
from dfbench_datasets.extended import QuickDrawExtended, SketchyExtended, TUBerlinExtended

import replicas

#: the server stops itself after this many seconds, whatever the test does
SERVER_LIFETIME_S = 120


class ArchiveHandler(http.server.BaseHTTPRequestHandler):
    """GET /<file> from the server's folder, honouring ``Range: bytes=N-`` unless told otherwise.

    ``server.faults[file]`` changes one file's answers: ``("drop", n)`` sends the full length but
    closes the connection after n bytes, once; ``("truncate", n)`` does that every time;
    ``("corrupt",)`` flips bytes in the middle; ``("no-range",)`` ignores Range (answers 200).
    """

    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802  (the http.server API)
        name = self.path.lstrip("/")
        path = self.server.folder / name
        self.server.requests.append((name, self.headers.get("Range")))
        if not path.is_file():
            self.send_error(404)
            return
        body = path.read_bytes()
        fault = self.server.faults.get(name, ())
        if fault[:1] == ("corrupt",):
            middle = len(body) // 2
            body = body[:middle] + bytes(b ^ 0xFF for b in body[middle:middle + 64]) + body[middle + 64:]
        start = 0
        wanted = self.headers.get("Range")
        if wanted and fault[:1] != ("no-range",):
            start = int(wanted.split("=")[1].split("-")[0])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        payload = body[start:]
        if fault[:1] in (("drop",), ("truncate",)):
            if fault[0] == "drop":
                self.server.faults.pop(name)
            self.wfile.write(payload[: fault[1]])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@contextmanager
def serve(folder: Path, faults: dict | None = None):
    """An HTTP server on 127.0.0.1 (a free port) in a thread, shut down on exit or after SERVER_LIFETIME_S."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), ArchiveHandler)
    server.daemon_threads = True
    server.folder, server.faults, server.requests = Path(folder), dict(faults or {}), []
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    watchdog = threading.Timer(SERVER_LIFETIME_S, server.shutdown)
    watchdog.daemon = True
    watchdog.start()
    try:
        yield server, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        watchdog.cancel()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """Caches and data in tmp_path; no request may leave 127.0.0.1."""
    monkeypatch.setenv("DFBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("DFBENCH_DATA", str(tmp_path / "data"))
    real_urlopen = fetch_module.urllib.request.urlopen

    def local_only(request, *args, **kwargs):
        url = request.full_url if hasattr(request, "full_url") else str(request)
        if not url.startswith("http://127.0.0.1:"):
            raise urllib.error.URLError(f"network disabled in tests ({url})")
        return real_urlopen(request, *args, **kwargs)

    monkeypatch.setattr(fetch_module.urllib.request, "urlopen", local_only)
    monkeypatch.setattr(releases.time, "sleep", lambda s: None)


@pytest.fixture(scope="module")
def archives(tmp_path_factory):
    """The replica archives of the three releases, one folder each."""
    root = tmp_path_factory.mktemp("replicas")
    out = {}
    for name, build in replicas.BUILDERS.items():
        kwargs = {"size": 200} if name == "tuberlin" else {}
        tree = build(root / "trees" / name, **kwargs)
        replicas.build_archives(name, tree, root / "archives" / name)
        out[name] = (tree, root / "archives" / name)
    return out


def load(cls, root, tmp_path):
    return cls().load(DatasetOptions(data_root=root, image_size=32, cache_dir=tmp_path / "dcache"))


def no_leftovers(dest: Path) -> bool:
    return not dest.exists() or not [p for p in dest.iterdir() if p.name.startswith(".extract")]


def test_quickdraw_from_a_mirror_loads_and_is_not_fetched_twice(archives, tmp_path):
    tree, folder = archives["quickdraw"]
    dest = tmp_path / "qd"
    with serve(folder) as (server, url):
        result = releases.fetch_release("quickdraw", dest, mirror=url, quiet=True)
        assert result.created and set(result.counts) == {"QuickDraw_sketches_final", "QuickDraw_images_final"}
        again = releases.fetch_release("quickdraw", dest, mirror=url, quiet=True)
        assert not again.created and len(server.requests) == 2
    bench = load(QuickDrawExtended, dest, tmp_path)
    assert bench.classes == load(QuickDrawExtended, tree, tmp_path).classes
    info = json.loads((dest / "fetch-info.json").read_text())
    zip_md5 = releases.file_md5(folder / "QuickDraw_images_final.zip")
    assert info["archives"]["QuickDraw_images_final.zip"]["md5"] == zip_md5
    assert info["archives"]["QuickDraw_images_final.zip"]["md5_published"] is None
    assert no_leftovers(dest)


def test_interrupted_download_resumes_with_a_range_request(archives, tmp_path):
    _, folder = archives["quickdraw"]
    with serve(folder, {"QuickDraw_sketches_final.zip": ("drop", 1000)}) as (server, url):
        releases.fetch_release("quickdraw", tmp_path / "qd", mirror=url, quiet=True)
    sketch_requests = [r for f, r in server.requests if f == "QuickDraw_sketches_final.zip"]
    assert sketch_requests == [None, "bytes=1000-"]
    assert (tmp_path / "qd" / "QuickDraw_sketches_final" / "bat").is_dir()


def test_a_truncating_server_keeps_the_part_and_the_next_run_resumes(archives, tmp_path):
    _, folder = archives["quickdraw"]
    dest = tmp_path / "qd"
    size = (folder / "QuickDraw_images_final.zip").stat().st_size
    with serve(folder, {"QuickDraw_images_final.zip": ("truncate", 700)}) as (server, url):
        with pytest.raises(DataError, match="completely after 4 attempts.*run the same command again to resume"):
            releases.fetch_release("quickdraw", dest, mirror=url, quiet=True)
    part = tmp_path / "cache" / "downloads" / "quickdraw" / "QuickDraw_images_final.zip.part"
    assert part.stat().st_size == 4 * 700 < size  # each attempt resumed where the last stopped
    assert not (dest / "QuickDraw_images_final").exists() and (dest / "QuickDraw_sketches_final").is_dir()
    with serve(folder) as (server, url):
        result = releases.fetch_release("quickdraw", dest, mirror=url, quiet=True)
    assert server.requests == [("QuickDraw_images_final.zip", "bytes=2800-")]  # sketches were not fetched again
    assert set(result.counts) == {"QuickDraw_images_final"} and not part.exists()
    assert load(QuickDrawExtended, dest, tmp_path).num_classes == len(replicas.QUICKDRAW_CLASSES)


def test_a_server_ignoring_range_restarts_the_file(archives, tmp_path):
    _, folder = archives["quickdraw"]
    downloads = tmp_path / "cache" / "downloads" / "quickdraw"
    downloads.mkdir(parents=True)
    data = (folder / "QuickDraw_sketches_final.zip").read_bytes()
    (downloads / "QuickDraw_sketches_final.zip.part").write_bytes(data[:500])
    with serve(folder, {"QuickDraw_sketches_final.zip": ("no-range",)}) as (server, url):
        releases.fetch_release("quickdraw", tmp_path / "qd", mirror=url, quiet=True)
    assert ("QuickDraw_sketches_final.zip", "bytes=500-") in server.requests
    assert (downloads / "QuickDraw_sketches_final.zip").read_bytes() == data  # not spliced onto the 500 bytes


def test_a_corrupt_download_is_refused_deleted_and_leaves_nothing(archives, tmp_path):
    _, folder = archives["quickdraw"]
    dest = tmp_path / "qd"
    with serve(folder, {"QuickDraw_sketches_final.zip": ("corrupt",)}) as (server, url):
        with pytest.raises(DataError, match="is corrupt or truncated"):
            releases.fetch_release("quickdraw", dest, mirror=url, quiet=True)
    assert not (tmp_path / "cache" / "downloads" / "quickdraw" / "QuickDraw_sketches_final.zip").exists()
    assert not (dest / "QuickDraw_sketches_final").exists() and no_leftovers(dest)


def test_a_published_md5_is_checked(archives, tmp_path, monkeypatch):
    _, folder = archives["quickdraw"]
    sources = tuple(
        releases.Archive(**{**a.__dict__, "md5": "0" * 32}) if a.file == "QuickDraw_sketches_final.zip" else a
        for a in releases.SOURCES["quickdraw"]
    )
    monkeypatch.setitem(releases.SOURCES, "quickdraw", sources)
    with serve(folder) as (server, url):
        with pytest.raises(DataError, match="is corrupt \\(MD5 [0-9a-f]{32}, expected 0{32}\\); it was deleted"):
            releases.fetch_release("quickdraw", tmp_path / "qd", mirror=url, quiet=True)
    assert not list((tmp_path / "cache" / "downloads" / "quickdraw").glob("QuickDraw_sketches_final.zip*"))


def test_tuberlin_click_through_photos_come_from_archives_dir(archives, tmp_path, monkeypatch):
    tree, folder = archives["tuberlin"]
    dest, manual = tmp_path / "tub", tmp_path / "manual"
    manual.mkdir()
    with serve(folder) as (server, url):
        # the sketches come from the server, standing in for the publisher's URL; images.zip needs a person
        sketches, images = releases.SOURCES["tuberlin"]
        sketches = releases.Archive(**{**sketches.__dict__, "url": f"{url}/sketches_png.zip"})
        monkeypatch.setitem(releases.SOURCES, "tuberlin", (sketches, images))
        with pytest.raises(DataError) as error:
            releases.fetch_release("tuberlin", dest, archives_dir=manual, quiet=True)
        message = str(error.value)
        assert "images.zip: from https://drive.google.com/uc?id=0B2U-hnwRkpRrMFVvTmFQa3dmSUk" in message
        assert f"Save them into {manual}" in message
        assert (dest / "png" / "airplane").is_dir()  # what could be fetched is extracted and kept
        (manual / "images.zip").write_bytes((folder / "images.zip").read_bytes())
        result = releases.fetch_release("tuberlin", dest, archives_dir=manual, quiet=True)
    assert set(result.counts) == {"ImageResized"}
    assert [f for f, _ in server.requests] == ["sketches_png.zip"]
    bench = load(TUBerlinExtended, dest, tmp_path)
    assert bench.num_classes == len(replicas.TUBERLIN_CLASSES) and "warnings" not in bench.info


def test_sketchy_7z_extracted_by_hand_then_the_rest_fetched(archives, tmp_path, monkeypatch):
    import shutil

    tree, folder = archives["sketchy"]
    dest = tmp_path / "sketchy"
    monkeypatch.setattr(releases.shutil, "which", lambda name: None)  # no 7z program
    with pytest.raises(DataError, match="the 7z program \\(package p7zip\\), which is not installed.*7z x"):
        releases.fetch_release("sketchy", dest, quiet=True)
    shutil.copytree(tree / "256x256", dest / "256x256")  # what '7z x rendered_256x256.7z -oDEST' gives
    with serve(folder) as (server, url):
        result = releases.fetch_release("sketchy", dest, mirror=url, quiet=True)
    assert set(result.counts) == {"EXTEND_image_sketchy"}
    bench = load(SketchyExtended, dest, tmp_path)
    assert bench.info["photo_dir"].endswith("EXTEND_image_sketchy") and "warnings" not in bench.info


def _zip(path: Path, members: dict, links: tuple = ()) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, content in members.items():
            zf.writestr(name, content)
        for name in links:
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o120777 << 16)  # a symbolic link
            zf.writestr(info, "/etc/passwd")
    return path


@pytest.mark.parametrize(
    "members, links, expected",
    [
        ({"png/a/1.png": b"x", "../evil.txt": b"x"}, (), "unsafe path '../evil.txt'"),
        ({"/abs/evil.txt": b"x"}, (), "unsafe path '/abs/evil.txt'"),
        ({"png/a/1.png": b"x"}, ("png/link",), "symbolic link"),
        ({"png/a/1.png": b"x" * 5000}, (), "more than the limits"),
    ],
)
def test_unsafe_archives_are_refused(tmp_path, members, links, expected):
    archive = _zip(tmp_path / "sketches_png.zip", members, links)
    (tmp_path / "manual").mkdir()
    archive.rename(tmp_path / "manual" / archive.name)
    dest = tmp_path / "data" / "tub"
    with pytest.raises(DataError, match=expected):
        releases.fetch_release("tuberlin", dest, archives_dir=tmp_path / "manual", quiet=True, max_bytes=4096)
    assert not (tmp_path / "data" / "evil.txt").exists() and not (tmp_path / "evil.txt").exists()
    assert not (dest / "png").exists() and no_leftovers(dest)
    assert (tmp_path / "manual" / archive.name).exists()  # a file of the user's is never deleted


def test_cli_fetch_and_options_of_other_datasets(archives, tmp_path):
    _, folder = archives["quickdraw"]
    runner = CliRunner()
    with serve(folder) as (server, url):
        result = runner.invoke(data, ["fetch", "quickdraw", "--mirror", url, "--dest", str(tmp_path / "qd"), "-q"])
    assert result.exit_code == 0, result.output
    assert "Fetched quickdraw into" in result.output and "dfbench data check quickdraw" in result.output
    result = runner.invoke(data, ["fetch", "sketchy", "--train-sketches", "3"])
    assert result.exit_code == 2 and "--train-sketches do(es) not apply to 'sketchy'" in result.output
    result = runner.invoke(data, ["fetch", "qd-cifar10", "--mirror", url])
    assert result.exit_code == 2 and "--mirror do(es) not apply to 'qd-cifar10'" in result.output


def test_a_damaged_cached_download_is_deleted_not_kept_to_fail_every_fetch(archives, tmp_path, monkeypatch):
    _, folder = archives["quickdraw"]
    downloads = tmp_path / "cache" / "downloads" / "quickdraw"
    downloads.mkdir(parents=True)
    good = folder / "QuickDraw_sketches_final.zip"
    cached = downloads / good.name
    cached.write_bytes(good.read_bytes()[:-10] + b"0123456789")  # damaged after it was downloaded
    sources = tuple(releases.Archive(**{**a.__dict__, "md5": releases.file_md5(good)}) if a.file == good.name else a
                    for a in releases.SOURCES["quickdraw"])
    monkeypatch.setitem(releases.SOURCES, "quickdraw", sources)
    with pytest.raises(DataError, match="did not have the published MD5 .* it was damaged and is deleted"):
        releases.fetch_release("quickdraw", tmp_path / "qd", quiet=True)
    assert not cached.exists()
    with serve(folder) as (server, url):  # the next run downloads it anew and completes
        releases.fetch_release("quickdraw", tmp_path / "qd", mirror=url, quiet=True)
    assert (tmp_path / "qd" / "QuickDraw_sketches_final").is_dir()


def test_an_archive_larger_than_the_free_space_is_refused_before_extracting(archives, tmp_path, monkeypatch):
    import collections

    _, folder = archives["quickdraw"]
    dest = tmp_path / "qd"
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(releases.shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 100, 100))
    with serve(folder) as (server, url):
        with pytest.raises(DataError, match="expands to .* GiB, but .* has 0.0 GiB free.*nothing was extracted"):
            releases.fetch_release("quickdraw", dest, mirror=url, quiet=True)
    assert not (dest / "QuickDraw_sketches_final").exists() and no_leftovers(dest)
