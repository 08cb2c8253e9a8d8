"""The downloader against a local HTTP server on 127.0.0.1: resume, drops, corrupt bytes, 5xx, re-runs."""

import hashlib
import io
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tinyasc.cli import main
from tinyasc.data.download import SETS, DownloadError, Package, download, is_complete

ROOT = "TAU-urban-acoustic-scenes-2020-mobile-development"


def make_zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


class Server:
    """Serves ``files`` with Range support; ``mode[name]`` injects faults: 'drop' (first response cut
    in the middle), 'corrupt' (always wrong bytes), 'error' (first two requests answer 503),
    'norange' (ignores Range)."""

    def __init__(self, files: dict[str, bytes]):
        self.files, self.mode, self.requests = files, {}, []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                name = self.path.split("/")[-1].split("?")[0]
                outer.requests.append((name, self.headers.get("Range")))
                count = sum(1 for n, _ in outer.requests if n == name)
                data = outer.files.get(name)
                mode = outer.mode.get(name)
                if data is None:
                    self.send_error(404)
                    return
                if mode == "error" and count <= 2:
                    self.send_error(503)
                    return
                if mode == "corrupt":
                    data = bytes(b ^ 0xFF for b in data[:64]) + data[64:]
                start = 0
                rng = self.headers.get("Range")
                if rng and mode != "norange":
                    start = int(rng.split("=")[1].split("-")[0])
                    if start >= len(data):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if mode == "drop" and count == 1:
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(2)  # the connection dies mid-file
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/files/{{filename}}?download=1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def served():
    payloads = {
        f"{ROOT}.meta.zip": make_zip(
            {f"{ROOT}/meta.csv": b"filename\tscene_label\tidentifier\tsource_label\n"}
        ),
        f"{ROOT}.audio.1.zip": make_zip({f"{ROOT}/audio/park-lyon-1-1-a.wav": bytes(range(256)) * 4000}),
        f"{ROOT}.audio.2.zip": make_zip(
            {f"{ROOT}/audio/bus-lyon-2-2-a.wav": bytes(range(255, -1, -1)) * 3000}
        ),
    }
    packages = [Package(n, hashlib.md5(d).hexdigest(), 3819968) for n, d in payloads.items()]
    server = Server(payloads)
    yield server, packages
    server.close()


def _get(dest, server, packages, **kw):
    return download(
        dest, base_url=server.url, packages=packages, progress=False, backoff=0.01, timeout=5, **kw
    )


def test_download_extract_and_rerun_is_safe(served, tmp_path):
    server, packages = served
    assert set(_get(tmp_path, server, packages).values()) == {"extracted"}
    assert (tmp_path / ROOT / "audio/park-lyon-1-1-a.wav").stat().st_size == 256 * 4000
    assert (tmp_path / ROOT / "meta.csv").exists()
    assert not list(tmp_path.glob(".extract-*"))
    n = len(server.requests)
    assert set(_get(tmp_path, server, packages).values()) == {"complete"}
    assert len(server.requests) == n  # nothing fetched again
    # a damaged tree is repaired from the kept archive, without downloading
    (tmp_path / ROOT / "audio/park-lyon-1-1-a.wav").unlink()
    assert not is_complete(tmp_path, packages[1])
    assert _get(tmp_path, server, packages)[packages[1].filename] == "extracted"
    assert len(server.requests) == n
    assert (tmp_path / ROOT / "audio/park-lyon-1-1-a.wav").exists()


def test_dropped_connection_resumes_with_range(served, tmp_path):
    server, packages = served
    server.mode[packages[1].filename] = "drop"
    _get(tmp_path, server, packages[1:2])
    ranges = [r for n, r in server.requests if n == packages[1].filename]
    assert ranges[0] is None and ranges[1] is not None and ranges[1].startswith("bytes=")
    assert int(ranges[1].split("=")[1].rstrip("-")) > 0
    assert is_complete(tmp_path, packages[1])


def test_server_errors_are_retried(served, tmp_path):
    server, packages = served
    server.mode[packages[0].filename] = "error"
    _get(tmp_path, server, packages[:1])
    assert is_complete(tmp_path, packages[0])


def test_server_ignoring_range_restarts_cleanly(served, tmp_path):
    server, packages = served
    pkg = packages[2]
    server.mode[pkg.filename] = "norange"
    part = tmp_path / ".tinyasc_download" / (pkg.filename + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(server.files[pkg.filename][:100])
    _get(tmp_path, server, [pkg])
    assert is_complete(tmp_path, pkg)


def test_corrupt_bytes_are_refused_and_removed(served, tmp_path):
    server, packages = served
    pkg = packages[1]
    server.mode[pkg.filename] = "corrupt"
    with pytest.raises(DownloadError, match="md5 .* does not match"):
        _get(tmp_path, server, [pkg], retries=1)
    assert not (tmp_path / ".tinyasc_download" / pkg.filename).exists()
    assert not (tmp_path / ".tinyasc_download" / (pkg.filename + ".part")).exists()
    assert not (tmp_path / ROOT / "audio").exists()  # nothing half-extracted
    assert not is_complete(tmp_path, pkg)


def test_truncated_archive_with_matching_name_is_not_done(served, tmp_path):
    server, packages = served
    pkg = packages[1]
    bad = Package(pkg.filename, hashlib.md5(server.files[pkg.filename][:1000]).hexdigest(), pkg.record)
    server.files[pkg.filename] = server.files[pkg.filename][:1000]  # a truncated zip that matches its md5
    with pytest.raises(DownloadError, match="not a valid zip archive"):
        _get(tmp_path, server, [bad])
    assert not is_complete(tmp_path, bad)


def test_missing_file_fails_clearly_via_cli(served, tmp_path, capsys):
    server, _ = served
    code = main(
        [
            "download",
            str(tmp_path),
            "--dataset",
            "development",
            "--base-url",
            server.url,
            "--retries",
            "0",
            "--quiet",
            "--only",
            "doc",
        ]
    )
    assert code == 2
    assert "HTTP 404" in capsys.readouterr().err


def test_real_package_list():
    dev = SETS["development"]
    assert len(dev) == 18 and dev[2].filename.endswith("development.audio.1.zip")
    assert dev[1].md5 == "6eae9db553ce48e4ea246e34e50a3cf5" and len(SETS["evaluation-2020"]) == 10
