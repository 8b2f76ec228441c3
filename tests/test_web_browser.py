"""The web app's page in a real browser: the operating system's Chromium driven by Playwright.

Every test's page is watched: a request to anything but the server, or an error in the console, fails
it. CI installs Chromium (.ci/run) and these tests must run there; elsewhere they skip, saying how to
install it. `--update-screenshots` writes the README's screenshots into docs/images/.
"""

from __future__ import annotations

import base64
import os
import shutil
import threading
from pathlib import Path

import pytest

from web_helpers import PDF_PAGES, chromium_path, make_pdf, rotated_photo

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "docs" / "images"
OLD = 1_592_222_400  # 2020-06-15 12:00 UTC: the date filter's old pictures
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 20_000


def _need_browser() -> str:
    why = None
    try:
        import playwright.sync_api  # noqa: F401
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        why = f"{e.name} is not installed: pip install -e '.[dev,web]'"
    executable = chromium_path()
    if why is None and executable is None:
        why = "Chromium is not installed: apt-get install -y chromium (the tests drive /usr/bin/chromium)"
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"the browser tests must run in CI: {why}", pytrace=False)
        pytest.skip(why)
    assert executable is not None
    return executable


def make_world(root: Path, n: int = 30) -> None:
    """Toy pictures of coloured shapes (the committed toyclip knows them), their caption documents, a
    two-page PDF, an EXIF-rotated photo; the first third of the pictures dated 2020."""
    from benchmarks import toyworld

    rows = toyworld.generate(root, n, seed=11, max_size=1000)
    make_pdf(root / "docs" / "lighthouse.pdf", PDF_PAGES)
    rotated_photo(root / "images" / "rotated.jpg")
    for row in rows[: n // 3]:
        os.utime(root / row["path"], (OLD, OLD))


def build_index(tmp: Path, bundle: Path, n: int = 30, *, damaged: bool = False) -> tuple[Path, Path]:
    from mmsearch import Index

    root, folder = tmp / "Pictures", tmp / "index"
    make_world(root, n)
    if damaged:  # a file in error, for the status view
        (root / "images" / "damaged.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 64)
    with Index(folder, model=bundle) as idx:
        assert len(idx.index([root]).errors) == damaged
    return root, folder


@pytest.fixture(scope="module")
def chromium():
    executable = _need_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=FLAGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory, bundle, chromium):
    return build_index(tmp_path_factory.mktemp("browser"), bundle)


@pytest.fixture(scope="module")
def server(world):
    from mmsearch.web import WebSettings
    from mmsearch.web.server import BackgroundServer

    revealed: list[str] = []
    with BackgroundServer(WebSettings(index_dir=world[1], reveal=revealed.append)) as srv:
        srv.revealed = revealed  # type: ignore[attr-defined]
        yield srv


class Watched:
    """A page whose requests and console are recorded: check() fails on a request outside the server or
    an error logged."""

    def __init__(self, browser, base: str):
        self.base = base
        self.context = browser.new_context(viewport={"width": 1280, "height": 860}, locale="en-US")
        self.context.set_default_timeout(TIMEOUT_MS)
        self.page = self.context.new_page()
        self.outside: list[str] = []
        self.errors: list[str] = []
        self.requests = 0
        self.page.on("request", self._request)
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def _request(self, request) -> None:
        self.requests += 1
        # blob: is the dropped image's preview, made in the page from the file itself.
        if not (request.url.startswith(self.base) or request.url.startswith("blob:")):
            self.outside.append(request.url)

    def check(self) -> None:
        assert self.requests > 0
        assert not self.outside, f"requests outside the server: {self.outside}"
        assert not self.errors, f"console errors: {self.errors}"

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def page(chromium, server):
    watched = Watched(chromium, server.url)
    yield watched.page
    try:
        watched.check()
    finally:
        watched.close()


def search(page, base: str, text: str) -> None:
    page.goto(base)
    page.fill("#q", text)
    page.press("#q", "Enter")
    page.wait_for_selector("#grid .hit")


def thumbnails_render(page) -> int:
    """Waits until every thumbnail in the grid has loaded with a real size; returns how many."""
    page.wait_for_function("""() => {
        const imgs = [...document.querySelectorAll('#grid img')];
        return imgs.length > 0 && imgs.every((i) => i.complete && i.naturalWidth > 0 && i.naturalHeight > 0);
    }""")
    return page.locator("#grid img").count()


def names(page) -> list[str]:
    return [os.path.basename(t) for t in page.locator("#grid .hit").evaluate_all("els => els.map((e) => e.title)")]


# -- searching -------------------------------------------------------------------------------------


def test_search_by_words_shows_thumbnails_that_load(page, server, world):
    search(page, server.url, "a large red circle")
    assert thumbnails_render(page) >= 20
    assert page.locator("#grid .hit.photo").count() >= 20 and page.locator("#grid .hit.doc").count() >= 1
    assert "for “a large red circle”" in page.inner_text("#summary")
    assert page.url.endswith("/?q=a+large+red+circle")
    page.reload()  # the address holds the search
    page.wait_for_selector("#grid .hit")
    assert page.input_value("#q") == "a large red circle"


def test_search_by_a_dropped_image(page, server, world):
    picture = world[0] / "images" / "img_00004.jpg"
    if not picture.exists():
        picture = next((world[0] / "images").glob("img_*.jpg"))
    page.goto(server.url)
    page.evaluate("""([b64, name]) => {
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const dt = new DataTransfer();
        dt.items.add(new File([bytes], name, {type: "image/jpeg"}));
        for (const type of ["dragenter", "dragover", "drop"]) {
            document.querySelector("main").dispatchEvent(new DragEvent(type, {bubbles: true, cancelable: true, dataTransfer: dt}));
        }
    }""", [base64.b64encode(picture.read_bytes()).decode(), picture.name])
    page.wait_for_selector("#grid .hit")
    assert names(page)[0] == picture.name  # the picture itself comes first
    assert "like the image" in page.inner_text("#summary") and page.is_visible("#query-image")
    page.wait_for_function("() => document.querySelector('#query-image img').naturalWidth > 0")
    assert page.is_hidden("#drop-overlay")
    thumbnails_render(page)


def test_filters_for_type_folder_and_dates(page, server, world):
    root = world[0]
    search(page, server.url, "a small blue square")
    page.select_option("#f-type", "document")
    page.wait_for_function("() => document.querySelector('#grid .hit') && !document.querySelector('#grid .hit.photo')")
    assert page.locator("#grid .hit.doc").count() >= 3 and "type=document" in page.url
    page.select_option("#f-type", "all")
    page.wait_for_selector("#grid .hit.photo")
    page.fill("#f-under", str(root / "docs"))
    page.press("#f-under", "Enter")
    page.wait_for_function("() => !document.querySelector('#grid .hit.photo')")
    assert set(names(page)) <= {"notes.txt", "album.md", "report.pdf", "lighthouse.pdf"} and names(page)
    page.click("#f-clear")
    page.select_option("#f-type", "image")
    page.fill("#f-after", "2020-06-01")
    page.fill("#f-before", "2020-06-30")
    page.dispatch_event("#f-before", "change")
    page.wait_for_function("() => document.querySelectorAll('#grid .hit').length === 10")
    dated_2020 = {p.name for p in (root / "images").iterdir() if int(p.stat().st_mtime) == OLD}
    assert set(names(page)) == dated_2020
    page.click("#f-clear")
    page.wait_for_function("() => document.querySelectorAll('#grid .hit').length > 10")
    assert page.input_value("#f-after") == "" and page.input_value("#f-type") == "all"


def test_a_document_hit_opens_with_its_page_and_marked_words(page, server, world):
    search(page, server.url, "lighthouse keeper")
    card = page.locator("#grid .hit.doc", has_text="lighthouse.pdf").first
    assert "page 2" in card.inner_text()
    assert card.locator("mark").all_inner_texts()[:2] == ["lighthouse", "keeper"]
    card.click()
    dialog = page.locator("#viewer")
    assert dialog.is_visible() and page.inner_text("#v-name") == "lighthouse.pdf"
    assert page.inner_text("#v-page") == "2" and page.inner_text("#v-folder").endswith("Pictures/docs")
    page.wait_for_function("() => document.querySelector('#v-img').naturalWidth > 0")  # the page, drawn
    page.wait_for_function("() => document.querySelector('#v-size').textContent.includes('KB')")
    assert page.inner_text("#v-date")
    assert page.locator("#v-snippet mark").all_inner_texts()[:2] == ["lighthouse", "keeper"]
    page.click("#v-reveal")
    page.wait_for_function("() => document.querySelector('#v-message').textContent.includes('Shown')")
    assert server.revealed[-1] == str(world[0] / "docs" / "lighthouse.pdf")
    page.click("#v-similar")
    page.wait_for_function("() => document.querySelector('#summary').textContent.includes('like lighthouse.pdf')")
    assert not dialog.is_visible() and "lighthouse.pdf" not in names(page) and "like=" in page.url


def test_keyboard_moves_through_the_grid_and_the_larger_view(page, server, world):
    page.goto(server.url + "?type=image&q=a+shape")
    page.wait_for_selector("#grid .hit")
    thumbnails_render(page)
    page.locator("#grid .hit").first.focus()
    active = "() => Number(document.activeElement.dataset.index)"
    page.keyboard.press("ArrowRight")
    assert page.evaluate(active) == 1
    box1 = page.locator("#grid .hit").nth(1).bounding_box()
    page.keyboard.press("ArrowDown")
    below = page.evaluate(active)
    box = page.locator("#grid .hit").nth(below).bounding_box()
    assert box["y"] > box1["y"] and abs(box["x"] - box1["x"]) < 2  # straight down, one row
    page.keyboard.press("ArrowUp")
    assert page.evaluate(active) == 1
    page.keyboard.press("End")
    assert page.evaluate(active) == page.locator("#grid .hit").count() - 1
    page.keyboard.press("Home")
    assert page.evaluate(active) == 0
    page.keyboard.press("Enter")
    first, second = names(page)[:2]
    assert page.is_visible("#viewer") and page.inner_text("#v-name") == first
    page.wait_for_function("() => document.querySelector('#v-img').naturalWidth > 0")
    page.keyboard.press("ArrowRight")
    assert page.inner_text("#v-name") == second
    page.keyboard.press("Escape")
    page.wait_for_function(f"() => ({active})() === 1")  # back on the tile last shown
    assert page.is_hidden("#viewer")
    page.keyboard.press("/")
    assert page.evaluate("() => document.activeElement.id") == "q"


# -- the index's state and "index now" -------------------------------------------------------------


def test_index_now_shows_its_progress_until_done(chromium, tmp_path, bundle):
    from engine_helpers import make_collection
    from mmsearch.web import WebSettings
    from mmsearch.web.server import BackgroundServer

    root, folder = build_index(tmp_path, bundle, n=6)
    make_collection(root / "new", n_images=5, docs={}, first_seed=300)
    gate = threading.Event()
    settings = WebSettings(index_dir=folder, index_observer=lambda step: step == "encode" and gate.wait(30))
    with BackgroundServer(settings) as srv:
        watched = Watched(chromium, srv.url)
        page = watched.page
        try:
            page.goto(srv.url)
            page.click("#tab-status")
            page.wait_for_function("() => document.querySelector('#st-counts').textContent.includes('7')")
            page.click("#index-now")
            page.wait_for_function("() => document.querySelector('#progress-text').textContent.startsWith('Indexing 0 of 5')")
            assert page.is_visible("#progress-bar") and page.is_visible("#index-cancel") and page.is_disabled("#index-now")
            gate.set()
            page.wait_for_function("() => document.querySelector('#run-result').textContent.startsWith('Done')")
            assert "added 5" in page.inner_text("#run-result") and page.is_hidden("#progress")
            page.wait_for_function("() => document.querySelector('#st-counts').textContent.includes('12')")
            first_run = page.locator("#st-runs tbody tr").first.locator("td").all_inner_texts()
            assert first_run[1:3] == ["done", "5"]
            assert page.is_enabled("#index-now")
            watched.check()
        finally:
            gate.set()
            watched.close()


def test_without_an_index_the_page_says_what_to_do(chromium, tmp_path):
    from mmsearch.web import WebSettings
    from mmsearch.web.server import BackgroundServer

    with BackgroundServer(WebSettings(index_dir=tmp_path / "nothing")) as srv:
        watched = Watched(chromium, srv.url)
        try:
            watched.page.goto(srv.url)
            notice = watched.page.wait_for_selector("#notice:not([hidden])")
            assert "No index at" in notice.inner_text() and "mmsearch index ~/Pictures --index" in notice.inner_text()
            watched.check()
        finally:
            watched.close()


# -- the README's screenshots ---------------------------------------------------------------------


def test_screenshots_of_results_a_document_and_the_status(chromium, tmp_path, bundle, monkeypatch, request):
    from mmsearch.web import WebSettings
    from mmsearch.web.server import BackgroundServer

    monkeypatch.setenv("HOME", str(tmp_path))  # the page writes paths under the home folder as ~/...
    _, folder = build_index(tmp_path, bundle, n=40, damaged=True)
    out = SCREENSHOTS if request.config.getoption("--update-screenshots") else tmp_path / "shots"
    out.mkdir(parents=True, exist_ok=True)
    with BackgroundServer(WebSettings(index_dir=folder, reveal=lambda path: None)) as srv:
        watched = Watched(chromium, srv.url)
        page = watched.page
        try:
            page.goto(srv.url + "?q=a+red+star")
            page.wait_for_selector("#grid .hit")
            thumbnails_render(page)
            assert "~/Pictures" in page.locator("#grid .hit.doc .meta").first.inner_text()
            page.screenshot(path=str(out / "web-results.png"))
            page.goto(srv.url + "?q=lighthouse+keeper&type=document")
            page.locator("#grid .hit.doc", has_text="lighthouse.pdf").first.click()
            page.wait_for_function("() => document.querySelector('#v-img').naturalWidth > 0 && "
                                   "document.querySelector('#v-size').textContent")
            page.screenshot(path=str(out / "web-document.png"))
            page.goto(srv.url)
            page.click("#tab-status")
            page.wait_for_selector("#st-runs tbody tr")
            error = page.locator("#st-errors li").first
            assert error.locator(".path").inner_text() == "~/Pictures/images/damaged.jpg"
            assert error.locator(".reason").inner_text()  # the reason it could not be indexed
            page.screenshot(path=str(out / "web-status.png"))
            watched.check()
        finally:
            watched.close()
    import numpy as np
    from PIL import Image

    for name in ("web-results.png", "web-document.png", "web-status.png"):
        with Image.open(out / name) as img:
            assert img.size == (1280, 860) and len(np.unique(np.asarray(img.convert("L")))) > 8  # not blank
    if out == SCREENSHOTS:
        shutil.rmtree(tmp_path / "shots", ignore_errors=True)
