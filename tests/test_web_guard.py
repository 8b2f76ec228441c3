"""The web server against what a hostile page, upload or local user could send it: huge images, opaque
origins, endless bodies, ids past SQLite's integers, files swapped under the index, PDFs that carry
script, a file manager that cannot open, and HTTPS for a server other machines reach."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from web_helpers import flat_png, get, make_web_collection, peak_rss, request

if not os.environ.get("CI"):
    pytest.importorskip("starlette", reason="the web app needs its extra: pip install -e '.[web]'")
    pytest.importorskip("uvicorn", reason="the web app needs its extra: pip install -e '.[web]'")

from mmsearch import Index  # noqa: E402
from mmsearch.web import WebSettings  # noqa: E402
from mmsearch.web.server import BackgroundServer  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MB = 2**20


@pytest.fixture(scope="module")
def collection(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    root = tmp_path_factory.mktemp("guard") / "photos"
    return root, make_web_collection(root)


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory, collection, bundle) -> Path:
    folder = tmp_path_factory.mktemp("guard-index") / "index"
    with Index(folder, model=bundle) as idx:
        assert not idx.index([collection[0]]).errors
    return folder


@pytest.fixture(scope="module")
def server(index_dir):
    with BackgroundServer(WebSettings(index_dir=index_dir, reveal=lambda path: None)) as srv:
        yield srv


def _item(index_dir: Path, picture: Path) -> int:
    with Index(index_dir) as idx:
        return next(h.item_id for h in idx.search(image=picture, k=20) if h.path == str(picture))


# -- 9: images to search by ------------------------------------------------------------------------


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the server's peak memory from /proc")
def test_four_uploads_of_a_huge_png_cost_the_server_little_memory(tmp_path, index_dir, collection):
    """A 15,800 x 15,800 PNG is ~0.7 MB sent and ~750 MB decoded: four sent at once must not cost the
    server gigabytes (they cost +950 MB each before query images had a decode limit)."""
    huge = flat_png(tmp_path / "huge.png", 15_800, 15_800)
    assert huge.stat().st_size < MB
    proc = subprocess.Popen([sys.executable, "-m", "mmsearch", "serve", "--index", str(index_dir), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        line = proc.stdout.readline()
        url = line.split(" at ")[1].split(" ")[0]
        warm = request(url, "POST", "/api/search/image?k=3", body=collection[1]["img0.jpg"].read_bytes())
        assert warm.status == 200  # the image tower is loaded: what follows is the uploads' own cost
        before = peak_rss(proc.pid)
        replies = []

        def send() -> None:
            replies.append(request(url, "POST", "/api/search/image?k=3", body=huge.read_bytes()))

        threads = [threading.Thread(target=send) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        added = peak_rss(proc.pid) - before
        assert [r.status for r in replies] == [400] * 4
        error = replies[0].json()["error"]
        assert error.startswith("the uploaded image: is 15800x15800 pixels") and "scale it down" in error
        assert added < 300 * MB, f"four uploads added {added / MB:.0f} MB to the server's peak memory"
        assert request(url, "POST", "/api/search/image?k=3", body=collection[1]["img0.jpg"].read_bytes()).status == 200
    finally:
        proc.terminate()
        proc.wait(30)


def test_the_cli_refuses_a_huge_png_to_search_by_the_same_way(tmp_path, index_dir):
    from mmsearch import MmsearchError

    huge = flat_png(tmp_path / "wide.png", 9000, 5000)  # 45 MP
    with Index(index_dir) as idx, pytest.raises(MmsearchError, match="is 9000x5000 pixels, more than a picture to "
                                                                    "search by may be"):
        idx.search(image=huge)


# -- 10: opaque origins ------------------------------------------------------------------------------


def test_an_opaque_origin_is_refused_even_where_no_token_is_needed(server, collection):
    body = collection[1]["img0.jpg"].read_bytes()
    for origin in ("null", "http://evil.example"):
        r = request(server.url, "POST", "/api/search/image", body=body, headers={"Origin": origin})
        assert r.status == 403 and f"requests from {origin} are refused" in r.json()["error"]
    same = f"http://{urlsplit(server.url).netloc}"
    assert request(server.url, "POST", "/api/search/image", body=body, headers={"Origin": same}).status == 200


# -- 11: bodies past the limit -----------------------------------------------------------------------


def _send_chunked(url: str, total: int, chunk: int = MB) -> tuple[int, bytes]:
    """POST an image search with a chunked body of `total` bytes; returns (bytes the server let in,
    what it answered)."""
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
    sent = 0
    try:
        sock.sendall(f"POST /api/search/image HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n".encode())
        piece = f"{chunk:x}\r\n".encode() + b"\xff" * chunk + b"\r\n"
        try:
            while sent < total:
                sock.sendall(piece)
                sent += chunk
            sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = b""
        try:
            while data := sock.recv(65536):
                answer += data
        except (ConnectionResetError, TimeoutError):
            pass
        return sent, answer
    finally:
        sock.close()


def test_a_chunked_body_past_the_limit_is_not_read_to_its_end(index_dir):
    with BackgroundServer(WebSettings(index_dir=index_dir, max_upload_bytes=MB)) as srv:
        sent, answer = _send_chunked(srv.url, 256 * MB)
        # What the kernel's buffers take is sent by the client without the server reading it.
        assert sent < 64 * MB, f"the server read {sent / MB:.0f} MB of a body limited to 1 MB"
        if answer:  # the answer may be lost to the connection's reset, depending on timing
            assert answer.startswith(b"HTTP/1.1 413") and b"takes images up to 1 MB" in answer
        assert get(srv.url, "/api/status").status == 200


def test_a_declared_length_past_the_limit_is_refused_before_reading(index_dir):
    with BackgroundServer(WebSettings(index_dir=index_dir, max_upload_bytes=MB)) as srv:
        parts = urlsplit(srv.url)
        with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
            sock.sendall(f"POST /api/search/image HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                         f"Content-Length: {600 * MB}\r\n\r\n".encode())  # and no body at all
            answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 413") and b"the image is 600.0 MB" in answer


# -- 12: ids that are no item -------------------------------------------------------------------------


@pytest.mark.parametrize("item", ["9223372036854775808", "99999999999999999999999", "-1", "0", "9223372036854775807"])
def test_an_id_past_sqlite_integers_is_no_item(server, item):
    for endpoint in ("file", "thumb", "item"):
        r = get(server.url, f"/api/{endpoint}/{item}")
        assert r.status == 404 and "no item" in r.json()["error"], (endpoint, item, r.status)
    assert get(server.url, f"/api/similar?item={item}").status == 404


def test_the_library_says_none_for_such_an_id(index_dir):
    with Index(index_dir) as idx:
        assert idx.item(2**63) is None and idx.item(-5) is None


# -- 15: "show in folder" -----------------------------------------------------------------------------


@pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="xdg-open is the opener on Linux and BSD")
def test_show_in_folder_says_when_nothing_can_show_it_and_leaves_no_zombie(tmp_path, monkeypatch, index_dir, collection):
    import psutil

    from mmsearch.web.app import open_in_file_manager

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    opener = bin_dir / "xdg-open"
    opener.write_text("#!/bin/sh\necho 'xdg-open: no method available for opening' >&2\nexit 3\n")
    opener.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    picture = collection[1]["img0.jpg"]
    with BackgroundServer(WebSettings(index_dir=index_dir, reveal=open_in_file_manager)) as srv:
        item = _item(index_dir, picture)
        r = request(srv.url, "POST", f"/api/reveal?item={item}", headers={"X-Mmsearch-Token": srv.settings.token})
        assert r.status == 501, r.body
        assert "nothing on this machine could show the folder" in r.json()["error"]
        assert "no method available" in r.json()["error"]
        opener.write_text("#!/bin/sh\nexit 0\n")
        ok = request(srv.url, "POST", f"/api/reveal?item={item}", headers={"X-Mmsearch-Token": srv.settings.token})
        assert ok.status == 200
        time.sleep(0.2)
        zombies = [c for c in psutil.Process().children(recursive=True) if c.status() == psutil.STATUS_ZOMBIE]
        assert zombies == []


# -- 16: HTTPS ----------------------------------------------------------------------------------------


def _self_signed(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "cert.pem", folder / "key.pem"
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                        str(cert), "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return cert, key


@pytest.mark.skipif(subprocess.run(["which", "openssl"], capture_output=True).returncode != 0,
                    reason="the test makes its certificate with openssl")
def test_serve_over_https_with_a_certificate_and_its_key(tmp_path, index_dir):
    import urllib.request

    cert, key = _self_signed(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "mmsearch", "serve", "--index", str(index_dir), "--port", "0",
                             "--host", "0.0.0.0", "--allow-remote", "--tls-cert", str(cert), "--tls-key", str(key)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        warning, token_line, open_line = (proc.stdout.readline() for _ in range(3))
        assert "over HTTPS" in warning and "plain HTTP" not in warning
        token = token_line.removeprefix("Access token: ").strip()
        assert open_line.startswith(f"Open https://{socket.gethostname()}:")
        port = open_line.split(f"{socket.gethostname()}:")[1].split("/")[0]
        context = ssl.create_default_context(cafile=str(cert))
        req = urllib.request.Request(f"https://127.0.0.1:{port}/api/status",
                                     headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req, context=context, timeout=30) as r:
            assert r.status == 200 and b'"index"' in r.read()
        with socket.create_connection(("127.0.0.1", int(port)), timeout=30) as plain:  # no plain HTTP beside it
            plain.sendall(b"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert not plain.recv(100).startswith(b"HTTP/1.1 200")
    finally:
        proc.terminate()
        proc.wait(30)


def test_remote_plain_http_is_said_and_tls_files_are_checked(tmp_path, index_dir):
    proc = subprocess.Popen([sys.executable, "-m", "mmsearch", "serve", "--index", str(index_dir), "--port", "0",
                             "--host", "0.0.0.0", "--allow-remote"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT)
    try:
        warning = proc.stdout.readline()
        assert "over plain HTTP" in warning and "--tls-cert and --tls-key" in warning
    finally:
        proc.terminate()
        proc.wait(30)
    (tmp_path / "cert.pem").write_text("not a certificate")
    (tmp_path / "key.pem").write_text("not a key")
    for args, said in ((["--tls-cert", str(tmp_path / "cert.pem")], "go together"),
                       (["--tls-cert", str(tmp_path / "nope.pem"), "--tls-key", str(tmp_path / "key.pem")],
                        "nope.pem: no such file (the TLS certificate)"),
                       (["--tls-cert", str(tmp_path / "cert.pem"), "--tls-key", str(tmp_path / "key.pem")],
                        "not a certificate and its private key in PEM")):
        r = subprocess.run([sys.executable, "-m", "mmsearch", "serve", "--index", str(index_dir), "--port", "0", *args],
                           capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert r.returncode != 0 and said in r.stderr, r.stderr
