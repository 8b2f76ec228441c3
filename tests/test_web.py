"""The web app's HTTP side (`mmsearch serve`), against a real server on a free port: the JSON endpoints
give what the library gives, thumbnails, "index now", and the guards of a server on the user's machine.
The page itself is tested in a browser: test_web_browser.py."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from engine_helpers import make_collection
from web_helpers import events, get, make_web_collection, request

if not os.environ.get("CI"):
    pytest.importorskip("starlette", reason="the web app needs its extra: pip install -e '.[web]'")
    pytest.importorskip("uvicorn", reason="the web app needs its extra: pip install -e '.[web]'")

from PIL import Image  # noqa: E402

from mmsearch import Index  # noqa: E402
from mmsearch.web import HostPolicy, WebSettings  # noqa: E402
from mmsearch.web.server import BackgroundServer, settings_for  # noqa: E402
from mmsearch.web.thumbs import SIZES, Thumbnails  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def collection(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    root = tmp_path_factory.mktemp("web") / "photos"
    return root, make_web_collection(root)


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory, collection, bundle) -> Path:
    folder = tmp_path_factory.mktemp("web-index") / "index"
    with Index(folder, model=bundle) as idx:
        report = idx.index([collection[0]])
    assert not report.errors
    return folder


@pytest.fixture(scope="module")
def server(index_dir):
    revealed: list[str] = []
    with BackgroundServer(WebSettings(index_dir=index_dir, reveal=revealed.append)) as srv:
        srv.revealed = revealed  # type: ignore[attr-defined]
        yield srv


@pytest.fixture(scope="module")
def library(index_dir):
    with Index(index_dir) as idx:
        yield idx


def token_of(srv) -> dict[str, str]:
    return {"X-Mmsearch-Token": srv.settings.token}


def image_item(library, path: Path) -> int:
    hits = library.search(image=path, k=20, type="image")
    found = [h.item_id for h in hits if h.path == str(path)]
    assert found, path
    return found[0]


# -- search, similar, status: what the library gives ---------------------------------------------


@pytest.mark.parametrize("query", [
    "q=harbour+boats&k=5",
    "q=lighthouse+orange&type=document&k=3",
    "q=red+blocks&type=image&k=4&min_similarity=-1",
    "q=greenhouse&mode=keyword",
    "q=harbour&after=2019-06-01&before=2020-06-01&k=20",
])
def test_search_returns_what_the_library_returns(server, library, query):
    from urllib.parse import parse_qs

    r = get(server.url, f"/api/search?{query}")
    assert r.status == 200 and r.headers["content-type"].startswith("application/json")
    p = {k: v[0] for k, v in parse_qs(query).items()}
    text = p.pop("q")
    if "k" in p:
        p["k"] = int(p["k"])
    expected = [h.to_dict() for h in library.search(text, **p)]
    assert r.json() == expected and expected


def test_search_json_is_what_query_json_prints(server, index_dir):
    # Keyword mode: no vectors, so the CLI's separate process ranks exactly as the server does.
    r = get(server.url, "/api/search?q=lighthouse+keeper&mode=keyword&k=5")
    cli = subprocess.run([sys.executable, "-m", "mmsearch", "query", "lighthouse keeper", "--mode", "keyword", "-k", "5",
                          "--index", str(index_dir), "--json"], capture_output=True, text=True, cwd=ROOT)
    assert cli.returncode == 0, cli.stderr
    assert r.json() == json.loads(cli.stdout) and r.json()


def test_filters_narrow_the_results(server, collection):
    root = collection[0]
    # By meaning (mode=vector: no relevance floor), so every picture matches "picture".
    photos = get(server.url, "/api/search?q=picture&type=image&k=50&mode=vector").json()
    assert photos and {h["kind"] for h in photos} == {"image"}
    under = get(server.url, "/api/search?" + _qs(q="picture", k=50, under=str(root / "sub"), mode="vector")).json()
    assert sorted(os.path.basename(h["path"]) for h in under) == ["img1.png", "img3.jpg", "img5.webp"]
    old = get(server.url, "/api/search?q=picture&type=image&before=2021-01-01&k=50&mode=vector").json()
    assert sorted(os.path.basename(h["path"]) for h in old) == ["img0.jpg", "img2.webp", "img4.png"]
    new = get(server.url, "/api/search?q=picture&type=image&after=2021-01-01&k=50&mode=vector").json()
    assert {os.path.basename(h["path"]) for h in new} == {"img1.png", "img3.jpg", "img5.webp", "rotated.jpg"}
    assert len(get(server.url, "/api/search?q=picture&k=2&mode=vector").json()) == 2


def _qs(**params) -> str:
    from urllib.parse import urlencode

    return urlencode(params)


@pytest.mark.parametrize("query, message", [
    ("q=x&k=abc", "k must be a whole number (got 'abc')"),
    ("q=x&k=0", "k must be at least 1"),
    ("q=x&k=5000", "k must be at most 1000"),
    ("q=x&type=photos", "type must be one of all, image, document, video (got 'photos')"),
    ("q=x&after=yesterday", "after: 'yesterday' is not a date"),
    ("q=x&mode=fast", "mode must be one of hybrid, vector, keyword"),
    ("q=+++", "the query is empty"),
    ("k=3", "give a text or an image"),
    ("q=x&folder=/tmp", "unknown parameter 'folder'"),
])
def test_bad_input_gets_400_and_the_reason(server, query, message):
    r = get(server.url, f"/api/search?{query}")
    assert r.status == 400 and message in r.json()["error"], r.body


def test_search_by_an_uploaded_image(server, collection, library):
    picture = collection[1]["img3.jpg"]
    r = request(server.url, "POST", "/api/search/image?type=image&k=3", body=picture.read_bytes(),
                headers={"Content-Type": "image/jpeg"})
    assert r.status == 200, r.body
    hits = r.json()
    assert hits[0]["path"] == str(picture) and hits[0]["match"] == "meaning" and hits[0]["similarity"] > 0.99
    assert hits == [h.to_dict() for h in library.search(image=picture, type="image", k=3)]


def test_an_upload_that_is_not_an_image_says_so_without_a_temporary_path(server):
    r = request(server.url, "POST", "/api/search/image", body=b"these are not pixels" * 10)
    assert r.status == 400
    error = r.json()["error"]
    assert error.startswith("the uploaded image: not an image") and "mmsearch-upload" not in error


def test_uploads_are_size_limited_with_a_clear_message(index_dir):
    with BackgroundServer(WebSettings(index_dir=index_dir, max_upload_bytes=50_000)) as srv:
        r = request(srv.url, "POST", "/api/search/image", body=b"\xff" * 120_000)
        assert r.status == 413
        assert "takes images up to 0.0476837 MB" in r.json()["error"] and "--max-upload-mb" in r.json()["error"]
        empty = request(srv.url, "POST", "/api/search/image", body=b"")
        assert empty.status == 400 and "request body" in empty.json()["error"]


def test_similar_by_path_or_item_is_the_library_similar(server, collection, library):
    picture = collection[1]["img0.jpg"]
    by_path = get(server.url, "/api/similar?" + _qs(path=str(picture), k=4))
    assert by_path.status == 200
    expected = [h.to_dict() for h in library.similar(picture, k=4)]
    assert by_path.json() == expected and str(picture) not in [h["path"] for h in expected]
    by_item = get(server.url, f"/api/similar?item={image_item(library, picture)}&k=4")
    assert by_item.json() == expected
    missing = get(server.url, "/api/similar?" + _qs(path="/nowhere/x.jpg"))
    assert missing.status == 400 and "not in this index" in missing.json()["error"]
    neither = get(server.url, "/api/similar?k=3")
    assert neither.status == 400 and "path=FILE" in neither.json()["error"]


def test_status_is_the_library_status(server, library):
    r = get(server.url, "/api/status")
    assert r.status == 200
    assert r.json() == json.loads(json.dumps(library.status()))
    assert r.json()["runs"][0]["status"] == "done"


# -- items, files and thumbnails -------------------------------------------------------------------


def test_item_details_and_the_file_itself(server, collection, library):
    pdf = collection[1]["lighthouse.pdf"]
    hit = library.search("lighthouse keeper", type="document", k=1, mode="keyword")[0]
    assert hit.path == str(pdf) and hit.page == 2
    d = get(server.url, f"/api/item/{hit.item_id}").json()
    assert (d["name"], d["folder"], d["page"], d["size"], d["kind"]) == (
        "lighthouse.pdf", str(pdf.parent), 2, pdf.stat().st_size, "document")
    assert d["date"].startswith("2020-01-0") and d["thumbnail"] is True
    f = get(server.url, f"/api/file/{hit.item_id}")
    assert f.status == 200 and f.body == pdf.read_bytes() and f.headers["content-type"] == "application/pdf"
    # A PDF is downloaded, not shown by the browser's viewer (which would run its script); see test_web_guard.
    assert f.headers["content-disposition"] == 'attachment; filename="lighthouse.pdf"'
    photo = get(server.url, f"/api/file/{image_item(library, collection[1]['img0.jpg'])}")
    assert photo.headers["content-disposition"] == 'inline; filename="img0.jpg"'
    assert photo.headers["content-security-policy"] == "sandbox"
    text = library.search("lemon cake", mode="keyword", k=1)[0]
    t = get(server.url, f"/api/file/{text.item_id}")
    assert t.headers["content-type"].startswith("text/plain") and t.headers["content-security-policy"] == "sandbox"


def test_recent_gives_the_newest_photos_first_by_their_date(server, library, collection):
    """The start page's photos: Index.recent, newest first by capture time (else modification time)."""
    recent = library.recent(20)
    dates = [os.path.getmtime(it.fs_path) for it in recent]
    assert [it.kind for it in recent] == ["image"] * 7 and dates == sorted(dates, reverse=True)
    assert {os.path.basename(it.path) for it in recent[-3:]} == {"img0.jpg", "img2.webp", "img4.png"}  # dated 2020
    served = get(server.url, "/api/recent?k=3").json()
    assert [d["item_id"] for d in served] == [it.item_id for it in recent[:3]] and served[0]["name"]
    assert [d["kind"] for d in get(server.url, "/api/recent?type=document").json()] == ["document"] * 4
    assert get(server.url, "/api/recent?type=video").json() == []  # (no video in this collection)
    assert get(server.url, "/api/recent?type=audio").status == 400


def test_duplicates_gives_the_groups_with_items_whose_thumbnails_and_files_are_served(tmp_path, bundle):
    """The duplicates view: a copy of a document (the same bytes) and a resized copy of a picture
    (near-identical), the library's groups with each file's item."""
    root = tmp_path / "photos"
    paths = {p.name: p for p in make_collection(root, n_images=6)}
    shutil.copy(paths["harbour.txt"], root / "harbour copy.txt")
    photo = paths["img0.jpg"]
    with Image.open(photo) as img:
        img.resize((img.width * 2, img.height * 2), Image.Resampling.LANCZOS).save(root / "img0 large.jpg", quality=95)
    with Index(tmp_path / "index", model=bundle) as idx:
        idx.index([root], ocr=False)
        expected = [g.to_dict() for g in idx.duplicates()]
    with BackgroundServer(WebSettings(index_dir=tmp_path / "index")) as srv:
        groups = get(srv.url, "/api/duplicates").json()
        assert groups == expected
        kinds = {g["kind"]: [os.path.basename(f["path"]) for f in g["files"]] for g in groups}
        assert kinds == {"near": ["img0 large.jpg", "img0.jpg"], "identical": ["harbour.txt", "harbour copy.txt"]}
        near = next(g for g in groups if g["kind"] == "near")
        assert near["gain_bytes"] == photo.stat().st_size and near["files"][0]["width"] == 192
        for g in groups:
            for f in g["files"]:
                served = get(srv.url, f"/api/file/{f['item_id']}")
                assert served.status == 200 and served.body == Path(f["path"]).read_bytes()
        for f in near["files"]:
            thumb = get(srv.url, f"/api/thumb/{f['item_id']}")
            assert thumb.status == 200 and thumb.headers["content-type"] == "image/jpeg"
        assert [g["kind"] for g in get(srv.url, "/api/duplicates?identical=true").json()] == ["identical"]
        assert [g["kind"] for g in get(srv.url, "/api/duplicates?threshold=1").json()] == ["identical"]
        for bad, says in (("threshold=high", "threshold must be a number"), ("threshold=3", "threshold"),
                          ("identical=maybe", "identical is true or false"), ("near=1", "unknown parameter")):
            r = get(srv.url, f"/api/duplicates?{bad}")
            assert r.status == 400 and says in r.json()["error"], (bad, r.json())
        assert get(srv.url, "/api/duplicates", host="evil.example").status == 403


def test_thumbnails_are_upright_jpegs_of_the_right_size_with_caching_headers(server, collection, library):
    item = image_item(library, collection[1]["rotated.jpg"])
    r = get(server.url, f"/api/thumb/{item}")
    assert r.status == 200 and r.headers["content-type"] == "image/jpeg"
    assert "max-age" in r.headers["cache-control"] and r.headers["etag"]
    img = Image.open(io.BytesIO(r.body))
    assert img.format == "JPEG" and img.size == (80, 120)  # no larger than the photo, turned upright
    top, bottom = img.getpixel((40, 10)), img.getpixel((40, 110))
    assert top[0] > 200 and top[2] < 60 and bottom[2] > 200 and bottom[0] < 60  # red on top, as the tag says
    again = get(server.url, f"/api/thumb/{item}", headers={"If-None-Match": r.headers["etag"]})
    assert again.status == 304 and not again.body


def test_a_large_photo_thumbnail_fits_its_box(tmp_path, bundle):
    big = tmp_path / "photos" / "big.jpg"
    big.parent.mkdir()
    Image.new("RGB", (3000, 2000), (10, 200, 30)).save(big, quality=90)
    with Index(tmp_path / "index", model=bundle) as idx:
        idx.index([big.parent])
        item = idx.search(image=big, k=1)[0].item_id
    with BackgroundServer(WebSettings(index_dir=tmp_path / "index")) as srv:
        for size, px in SIZES.items():
            img = Image.open(io.BytesIO(get(srv.url, f"/api/thumb/{item}?size={size}").body))
            assert img.size == (px, round(px * 2 / 3))
        assert get(srv.url, f"/api/thumb/{item}?size=huge").status == 400


def test_a_pdf_hit_gets_its_page_drawn_and_a_text_file_gets_no_thumbnail(server, library):
    hit = library.search("lighthouse keeper", type="document", k=1, mode="keyword")[0]
    r = get(server.url, f"/api/thumb/{hit.item_id}")
    img = Image.open(io.BytesIO(r.body))
    assert r.status == 200 and max(img.size) == SIZES["small"] and img.height > img.width  # an A4 page
    ink = int((np.asarray(img.convert("L")) < 128).sum())
    assert ink > 50  # the page's text was drawn, not a blank page
    text = library.search("lemon cake", mode="keyword", k=1)[0]
    none = get(server.url, f"/api/thumb/{text.item_id}")
    assert none.status == 404 and "no picture" in none.json()["error"]


def test_thumbnails_are_cached_in_the_index_folder_by_content_hash(server, collection, library, index_dir):
    picture = collection[1]["img2.webp"]
    item = image_item(library, picture)
    first = get(server.url, f"/api/thumb/{item}")
    row = library.catalog.file_by_path(str(picture))
    cached = list((index_dir / "thumbs").rglob(f"{row.content_hash}-p0-{SIZES['small']}.jpg"))
    assert len(cached) == 1 and cached[0].read_bytes() == first.body
    marker = io.BytesIO()
    Image.new("RGB", (7, 7), (1, 2, 3)).save(marker, "JPEG")
    cached[0].write_bytes(marker.getvalue())
    assert get(server.url, f"/api/thumb/{item}").body == marker.getvalue()  # served from the cache
    cached[0].unlink()


def test_many_requests_for_one_thumbnail_make_it_once(server, collection, library):
    item = image_item(library, collection[1]["img4.png"])
    thumbs = server.engine.thumbs
    made: list[int] = []
    real = thumbs._make
    gate = threading.Barrier(12)

    def counting(it, size):
        made.append(it.item_id)
        threading.Event().wait(0.3)  # a slow decode: the other requests arrive while it runs
        return real(it, size)

    thumbs._make = counting
    replies: list = []

    def fetch():
        gate.wait()
        replies.append(get(server.url, f"/api/thumb/{item}?size=large"))

    try:
        threads = [threading.Thread(target=fetch) for _ in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        thumbs._make = real
    assert len(replies) == 12 and all(r.status == 200 for r in replies)
    assert len({r.body for r in replies}) == 1 and made == [item]


def test_the_thumbnail_cache_stays_under_its_bound(tmp_path, library, collection):
    bound = 6_000
    thumbs = Thumbnails(tmp_path, max_bytes=bound)
    items = [library.catalog.item_file(image_item(library, collection[1][n]))
             for n in ("img0.jpg", "img1.png", "img2.webp", "img3.jpg", "img4.png", "img5.webp")]
    sizes = []
    for it in items:
        sizes.append(len(thumbs.get(it, "small").data))
        on_disk = sum(p.stat().st_size for p in (tmp_path / "thumbs").rglob("*.jpg"))
        assert on_disk <= bound
    assert sum(sizes) > bound  # the bound was reached, so something was dropped
    assert thumbs.get(items[-1], "small").data  # the newest is kept


def test_no_file_outside_the_index_is_served(server, index_dir):
    for path in ("/static/../catalog.db", "/static/%2e%2e/%2e%2e/catalog.db", "/static/..%2f..%2fcatalog.db",
                 "/api/file/999999", "/api/thumb/999999", "/catalog.db", "/api/file/..%2fcatalog.db"):
        r = get(server.url, path)
        assert r.status in (400, 404), (path, r.status)
        assert b"SQLite format" not in r.body
    assert get(server.url, "/api/item/abc").status == 400


def test_a_file_changed_since_it_was_indexed_is_not_served(tmp_path, bundle):
    root = tmp_path / "photos"
    paths = make_web_collection(root)
    with Index(tmp_path / "index", model=bundle) as idx:
        idx.index([root])
        item = idx.search(image=paths["img0.jpg"], k=1)[0].item_id
    Image.new("RGB", (50, 50), (9, 9, 9)).save(paths["img0.jpg"])  # another picture under the indexed name
    with BackgroundServer(WebSettings(index_dir=tmp_path / "index")) as srv:
        for path in (f"/api/file/{item}", f"/api/thumb/{item}"):
            r = get(srv.url, path)
            assert r.status == 409 and "changed since it was indexed" in r.json()["error"]
        paths["img0.jpg"].unlink()
        assert get(srv.url, f"/api/file/{item}").status == 404


# -- the guards ------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8765", "127.0.0.1.nip.io", "", "192.168.1.20"])
def test_a_request_for_another_host_is_refused(server, host):
    for path in ("/", "/api/status", "/api/thumb/1"):
        r = get(server.url, path, host=host)
        assert r.status == 403 and b"does not answer to the host" in r.body


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST:1234", "127.0.0.1"])
def test_the_names_of_this_machine_are_answered(server, host):
    assert get(server.url, "/api/status", host=host).status == 200


def test_actions_need_the_session_token(server, library, collection):
    item = image_item(library, collection[1]["img1.png"])
    for path in ("/api/index", "/api/index/cancel", f"/api/reveal?item={item}"):
        assert request(server.url, "POST", path).status == 403
        wrong = request(server.url, "POST", path, headers={"X-Mmsearch-Token": "guess"})
        assert wrong.status == 403 and "session token" in wrong.json()["error"]
    assert server.revealed == [] and not server.engine.job.running
    page = get(server.url, "/").body.decode()
    assert f'content="{server.settings.token}"' in page  # the page carries it, for its own requests
    ok = request(server.url, "POST", f"/api/reveal?item={item}", headers=token_of(server))
    assert ok.status == 200 and server.revealed == [str(collection[1]["img1.png"])]
    cross = request(server.url, "POST", f"/api/reveal?item={item}",
                    headers={**token_of(server), "Origin": "http://evil.example"})
    assert cross.status == 403 and len(server.revealed) == 1


def test_reveal_only_for_a_request_from_this_machine(server, library, collection):
    import asyncio

    item = image_item(library, collection[1]["img1.png"])
    sent: list = []

    async def call():
        scope = {"type": "http", "method": "POST", "path": "/api/reveal", "raw_path": b"/api/reveal",
                 "query_string": f"item={item}".encode(), "root_path": "", "scheme": "http", "http_version": "1.1",
                 "headers": [(b"host", b"127.0.0.1"), (b"x-mmsearch-token", server.settings.token.encode())],
                 "client": ("192.168.1.30", 50000), "server": ("127.0.0.1", server.port)}

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            sent.append(message)

        await server.app(scope, receive, send)

    before = list(server.revealed)
    asyncio.run(call())
    assert sent[0]["status"] == 403 and b"only on the machine" in sent[1]["body"]
    assert server.revealed == before


def test_the_page_and_its_assets_say_what_may_load(server):
    page = get(server.url, "/")
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "connect-src 'self'" in csp
    assert page.headers["cache-control"] == "no-store" and page.headers["x-frame-options"] == "DENY"
    for asset in ("/static/app.js", "/static/style.css", "/static/icon.svg"):
        r = get(server.url, asset)
        assert r.status == 200 and r.headers["cross-origin-resource-policy"] == "same-origin"
    # The icon a sandboxed file (an opaque origin) asks for by itself may load: the app's logo, no secret.
    assert get(server.url, "/favicon.ico").headers["cross-origin-resource-policy"] == "cross-origin"
    for name in ("index.html", "app.js", "style.css"):
        text = (ROOT / "mmsearch" / "web" / "static" / name).read_text()
        assert "http://" not in text.replace("http://www.w3.org", "") and "https://" not in text


def test_a_remote_bind_needs_the_explicit_flag_and_then_the_access_token(index_dir):
    with pytest.raises(Exception, match="--allow-remote"):
        settings_for("0.0.0.0")
    settings = settings_for("0.0.0.0", allow_remote=True, index_dir=index_dir)
    assert settings.remote and settings.hosts.any_ip
    with BackgroundServer(settings) as srv:  # listening on 127.0.0.1, answering as a wildcard bind would
        bare = get(srv.url, "/api/status")
        assert bare.status == 401 and "access token" in bare.json()["error"]
        assert get(srv.url, "/api/status", host="evil.example").status == 403
        wrong = get(srv.url, "/?token=guess")
        assert wrong.status == 401
        entry = get(srv.url, f"/?token={srv.settings.token}&q=boats")
        assert entry.status == 303 and entry.headers["location"] == "/?q=boats"
        cookie = entry.headers["set-cookie"].split(";")[0]
        assert "httponly" in entry.headers["set-cookie"].lower()
        assert get(srv.url, "/api/status", headers={"Cookie": cookie}).status == 200
        assert get(srv.url, "/api/status", headers={"Authorization": f"Bearer {srv.settings.token}"}).status == 200
        assert get(srv.url, "/api/status", host=f"10.0.0.7:{srv.port}", headers={"Cookie": cookie}).status == 200


def test_host_policy_of_a_loopback_bind():
    policy = HostPolicy.for_bind("127.0.0.1")
    assert policy.allows("127.0.0.1:8765") and policy.allows("localhost") and not policy.allows("[::1]:80")
    assert not policy.allows("10.0.0.7") and not policy.allows(None)
    assert HostPolicy.for_bind("::1").allows("[::1]:8765")
    assert HostPolicy.for_bind("127.0.0.1", ("photos.lan",)).allows("Photos.LAN:8765")


# -- states ------------------------------------------------------------------------------------------


def test_no_index_says_how_to_make_one_and_is_picked_up_once_made(tmp_path, bundle):
    folder = tmp_path / "index"
    with BackgroundServer(WebSettings(index_dir=folder)) as srv:
        app = get(srv.url, "/api/app").json()
        assert app["state"] == "no_index" and f"mmsearch index ~/Pictures --index {folder}" in app["message"]
        r = get(srv.url, "/api/search?q=boats")
        assert r.status == 503 and r.json()["state"] == "no_index"
        with Index(folder, model=bundle) as idx:
            pass
        assert get(srv.url, "/api/app").json()["state"] == "empty"
        root = tmp_path / "photos"
        make_web_collection(root)
        with Index(folder) as idx:
            idx.index([root])
        assert get(srv.url, "/api/app").json()["state"] == "ready"
        assert get(srv.url, "/api/search?q=boats").status == 200


def test_no_model_says_what_to_install(tmp_path, bundle):
    model = tmp_path / "toyclip-copy"
    shutil.copytree(bundle, model)
    root = tmp_path / "photos"
    make_web_collection(root)
    with Index(tmp_path / "index", model=model) as idx:
        idx.index([root])
    shutil.rmtree(model)
    with BackgroundServer(WebSettings(index_dir=tmp_path / "index")) as srv:
        app = get(srv.url, "/api/app").json()
        assert app["state"] == "no_model" and "is not installed" in app["message"] and "Install it with" in app["message"]
        r = get(srv.url, "/api/search?q=boats")
        assert r.status == 503 and r.json()["state"] == "no_model"
        assert get(srv.url, "/api/status").status == 200  # status needs no model
        assert request(srv.url, "POST", "/api/index", headers=token_of(srv)).status == 503


# -- index now ---------------------------------------------------------------------------------------


def test_index_now_streams_its_progress_to_the_end(tmp_path, bundle):
    root = tmp_path / "photos"
    make_web_collection(root)
    with Index(tmp_path / "index", model=bundle) as idx:
        idx.index([root])
    from engine_helpers import make_collection

    make_collection(root / "new", n_images=5, docs={}, first_seed=100)
    gate = threading.Event()

    def hold(step: str) -> None:
        if step == "encode":
            gate.wait(30)  # the first batch waits until the test has seen the run going

    settings = WebSettings(index_dir=tmp_path / "index", index_observer=hold)
    with BackgroundServer(settings) as srv:
        started = request(srv.url, "POST", "/api/index", headers=token_of(srv))
        assert started.status == 202 and started.json()["running"]
        again = request(srv.url, "POST", "/api/index", headers=token_of(srv))
        assert again.status == 409 and "already going on" in again.json()["error"]
        seen = events(srv.url, until=lambda s: s["phase"] == "encoding")
        assert seen[-1]["running"] and seen[-1]["total"] == 5
        assert get(srv.url, "/api/search?q=harbour").status == 200  # searches go on during the run
        gate.set()
        states = events(srv.url, until=lambda s: not s["running"])
        final = states[-1]
        assert final["phase"] == "done" and final["report"]["added"] == 5 and final["report"]["unchanged"] > 0
        assert get(srv.url, "/api/index").json()["report"] == final["report"]
        status = get(srv.url, "/api/status").json()
        assert status["counts"]["image"] == 12 and status["runs"][0]["summary"]["added"] == 5
        hits = get(srv.url, "/api/search?" + _qs(q="picture", under=str(root / "new"), k=10, mode="vector")).json()
        assert len(hits) == 5


def test_index_now_can_be_cancelled(tmp_path, bundle):
    root = tmp_path / "photos"
    make_web_collection(root)
    with Index(tmp_path / "index", model=bundle) as idx:
        idx.index([root])
    from engine_helpers import make_collection

    make_collection(root / "new", n_images=4, docs={}, first_seed=200)
    gate = threading.Event()
    settings = WebSettings(index_dir=tmp_path / "index", index_observer=lambda step: step == "encode" and gate.wait(30))
    with BackgroundServer(settings) as srv:
        assert request(srv.url, "POST", "/api/index", headers=token_of(srv)).status == 202
        events(srv.url, until=lambda s: s["phase"] == "encoding")
        cancelling = request(srv.url, "POST", "/api/index/cancel", headers=token_of(srv)).json()
        assert cancelling["cancelling"]
        gate.set()
        final = events(srv.url, until=lambda s: not s["running"])[-1]
        assert final["phase"] == "cancelled" and final["report"]["cancelled"]


def test_index_now_fails_at_once_while_another_process_writes(tmp_path, bundle):
    from filelock import FileLock

    root = tmp_path / "photos"
    make_web_collection(root)
    with Index(tmp_path / "index", model=bundle) as idx:
        idx.index([root])
    with BackgroundServer(WebSettings(index_dir=tmp_path / "index")) as srv:
        with FileLock(str(tmp_path / "index" / "index.lock")):
            assert request(srv.url, "POST", "/api/index", headers=token_of(srv)).status == 202
            final = events(srv.url, until=lambda s: not s["running"])[-1]
        assert final["phase"] == "error" and "another `mmsearch index` is writing" in final["error"]


# -- the command -------------------------------------------------------------------------------------


def test_serve_refuses_a_remote_host_without_the_flag():
    r = subprocess.run([sys.executable, "-m", "mmsearch", "serve", "--host", "0.0.0.0"], capture_output=True,
                       text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 2 and "--allow-remote" in r.stderr


def test_serve_prints_its_address_serves_and_stops_on_ctrl_c(index_dir):
    proc = subprocess.Popen([sys.executable, "-m", "mmsearch", "serve", "--index", str(index_dir), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        line = proc.stdout.readline()
        assert line.startswith(f"Serving {index_dir} at http://127.0.0.1:"), line + proc.stderr.read()
        url = line.split(" at ")[1].split(" ")[0]
        assert get(url, "/api/status").json()["index"] == str(index_dir)
        busy = subprocess.run([sys.executable, "-m", "mmsearch", "serve", "--index", str(index_dir), "--port",
                               url.rsplit(":", 1)[1].strip("/")], capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert busy.returncode == 1 and "already in use" in busy.stderr
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_the_listening_socket_says_it_is_tcp():
    # asyncio turns Nagle's algorithm off only for connections of a socket created as IPPROTO_TCP; without
    # it every response after a connection's first waits for the client's delayed ACK (~40 ms).
    import socket

    from mmsearch.web.server import bind

    sock = bind("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
    finally:
        sock.close()


def test_serve_on_a_remote_host_warns_and_prints_the_access_token(index_dir):
    # Listens on every address for a moment; the test only talks to 127.0.0.1.
    proc = subprocess.Popen([sys.executable, "-m", "mmsearch", "serve", "--index", str(index_dir), "--port", "0",
                             "--host", "0.0.0.0", "--allow-remote"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT)
    try:
        warning, token_line, open_line = (proc.stdout.readline() for _ in range(3))
        assert warning.startswith("Warning: serving") and "every machine that can reach this one" in warning
        token = token_line.removeprefix("Access token: ").strip()
        assert len(token) >= 24 and open_line.rstrip().endswith(f"?token={token} (the token is asked once per browser)")
        import re
        import socket

        assert open_line.startswith(f"Open http://{socket.gethostname()}:")
        port = re.search(r":(\d+)/", open_line).group(1)
        base = f"http://127.0.0.1:{port}/"
        assert get(base, "/api/status").status == 401
        assert get(base, "/api/status", headers={"Authorization": f"Bearer {token}"}).status == 200
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
