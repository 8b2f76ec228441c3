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
            answer = b""
            while data := sock.recv(65536):  # the answer, then the server closes the connection
                answer += data
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


# -- 13: the file served is the file indexed ----------------------------------------------------------


def _swap_world(tmp_path: Path, bundle: Path) -> tuple[Path, Path, dict[str, int]]:
    """A folder with a text file, a photo and a photo reached through a symlink, indexed; and the items."""
    root = tmp_path / "photos"
    paths = make_web_collection(root)
    (tmp_path / "elsewhere").mkdir()
    linked = tmp_path / "elsewhere" / "linked.jpg"
    linked.write_bytes(paths["img0.jpg"].read_bytes()[:-10] + b"\0" * 10)
    (root / "linked.jpg").symlink_to(linked)
    with Index(tmp_path / "index", model=bundle) as idx:
        assert not idx.index([root]).errors
        items = {"notes": idx.search("fishing boats tied", mode="keyword", k=1)[0].item_id,
                 "photo": next(h.item_id for h in idx.search(image=paths["img3.jpg"], k=20) if h.path.endswith("img3.jpg")),
                 "linked": next(h.item_id for h in idx.search(image=linked, k=20) if h.path.endswith("linked.jpg"))}
    return root, tmp_path / "index", items


def _same_size_and_time(secret: Path, like: Path, fill: bytes) -> Path:
    st = like.stat()
    secret.write_bytes(fill * st.st_size)
    os.utime(secret, ns=(st.st_atime_ns, st.st_mtime_ns))
    return secret


def test_a_symlink_or_a_file_swapped_in_with_the_same_size_and_time_is_not_served(tmp_path, bundle):
    root, index, items = _swap_world(tmp_path, bundle)
    notes, photo = root / "docs" / "harbour.txt", root / "sub" / "img3.jpg"
    secret = _same_size_and_time(tmp_path / "secret.txt", notes, b"S")
    with BackgroundServer(WebSettings(index_dir=index)) as srv:
        assert get(srv.url, f"/api/file/{items['notes']}").status == 200
        assert get(srv.url, f"/api/file/{items['linked']}").status == 200  # a symlink indexed as one is served
        notes.unlink()
        notes.symlink_to(secret)  # what the issue found served: a symlink to a secret of the same size and time
        r = get(srv.url, f"/api/file/{items['notes']}")
        assert r.status == 409 and b"SSS" not in r.body and "is another file than the one indexed" in r.json()["error"]
        notes.unlink()
        os.link(secret, notes)  # the secret's own inode, as a hard link (same size and time)
        assert get(srv.url, f"/api/file/{items['notes']}").status == 409
        notes.unlink()
        os.replace(_same_size_and_time(tmp_path / "other.txt", secret, b"S"), notes)  # a file renamed over it
        assert get(srv.url, f"/api/file/{items['notes']}").status == 409
        other = _same_size_and_time(tmp_path / "other.jpg", photo, b"\xff")
        photo.unlink()
        photo.symlink_to(other)
        for path in (f"/api/thumb/{items['photo']}?size=large", f"/api/file/{items['photo']}"):
            assert get(srv.url, path).status == 409, path
        photo.unlink()
        os.mkfifo(photo)  # a reader of a FIFO would wait forever: refused at once
        assert get(srv.url, f"/api/file/{items['photo']}").status == 409
    with Index(index) as idx:  # the next run indexes what is there now, and serves that
        idx.index([root])


def test_a_permission_change_is_refused_until_the_next_run_which_rehashes_and_keeps_the_vectors(tmp_path, bundle):
    root, index, items = _swap_world(tmp_path, bundle)
    notes = root / "docs" / "harbour.txt"
    notes.chmod(0o644 if notes.stat().st_mode & 0o777 != 0o644 else 0o640)  # the inode changes, not the file
    with BackgroundServer(WebSettings(index_dir=index)) as srv:
        assert get(srv.url, f"/api/file/{items['notes']}").status == 409
        with Index(index) as idx:
            report = idx.index([root])
        assert report.added == report.updated == 0 and report.encoded_items == 0
        assert get(srv.url, f"/api/file/{items['notes']}").status == 200


def test_a_catalog_without_change_times_serves_what_it_can_compare_and_the_next_run_records_them(tmp_path, bundle):
    import sqlite3

    root, index, items = _swap_world(tmp_path, bundle)
    with sqlite3.connect(index / "catalog.db") as conn:  # as an index made before change times were kept
        conn.execute("UPDATE files SET ctime_ns = NULL")
    with BackgroundServer(WebSettings(index_dir=index)) as srv:
        assert get(srv.url, f"/api/file/{items['notes']}").status == 200
        # No change time to compare: a symlink is not followed, even one indexed as one.
        r = get(srv.url, f"/api/file/{items['linked']}")
        assert r.status == 409 and "is a symbolic link now" in r.json()["error"]
        with Index(index) as idx:
            report = idx.index([root])
            assert report.encoded_items == 0 and report.unchanged >= 10  # recorded, nothing read again
            assert all(idx.item(i).ctime_ns is not None for i in items.values())
        assert get(srv.url, f"/api/file/{items['linked']}").status == 200


# -- 14: documents the app does not draw ---------------------------------------------------------------


def test_a_pdf_with_script_is_downloaded_not_shown(tmp_path, bundle):
    from web_helpers import make_pdf

    root = tmp_path / "docs"
    root.mkdir()
    pdf = root / "alert.pdf"
    make_pdf(pdf, ["A harbour report with a script that runs when it opens."])
    data = pdf.read_bytes().replace(b"/Type /Catalog", b"/Type /Catalog /OpenAction << /S /JavaScript /JS (app.alert(1)) >>", 1)
    assert b"app.alert" in data
    pdf.write_bytes(data)
    with Index(tmp_path / "index", model=bundle) as idx:
        idx.index([root])
        item = idx.search("harbour report", mode="keyword", k=1)[0].item_id
    with BackgroundServer(WebSettings(index_dir=tmp_path / "index")) as srv:
        r = get(srv.url, f"/api/file/{item}")
        assert r.status == 200 and r.body == data
        assert r.headers["content-disposition"] == 'attachment; filename="alert.pdf"'
        assert r.headers["content-security-policy"] == "sandbox"
        assert get(srv.url, f"/api/thumb/{item}").status == 200  # the app draws its page itself


# -- 8: text in the encoding it was written in ------------------------------------------------------


def test_a_text_file_is_served_in_the_encoding_indexing_found(tmp_path, bundle):
    root = tmp_path / "docs"
    root.mkdir()
    text = "Café au lait, crème brûlée and a naïve résumé for the façade’s déjà vu. " * 8
    (root / "menu.txt").write_bytes(text.encode("cp1252"))
    (root / "plain.txt").write_text("A plain lemon cake, nothing more.", encoding="utf-8")
    named = root / "a\\b.txt"
    named.write_text("A file whose name holds a backslash: lemon tart.")
    with Index(tmp_path / "index", model=bundle) as idx:
        idx.index([root])
        menu = idx.search("crème brûlée", mode="keyword", k=1)[0].item_id
        tart = idx.search("lemon tart", mode="keyword", k=1)[0].item_id
    with BackgroundServer(WebSettings(index_dir=tmp_path / "index")) as srv:
        r = get(srv.url, f"/api/file/{menu}")
        assert r.status == 200 and r.headers["content-type"] == "text/plain; charset=utf-8"
        assert r.body.decode("utf-8") == text and "\ufffd" not in r.body.decode("utf-8")
        d = get(srv.url, f"/api/item/{tart}").json()
        assert (d["name"], d["folder"]) == ("a\\b.txt", str(root))
        f = get(srv.url, f"/api/file/{tart}")
        assert f.headers["content-disposition"] == 'inline; filename="a_b.txt"; filename*=utf-8\'\'a%5Cb.txt'


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
