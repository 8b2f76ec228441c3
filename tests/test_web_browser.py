"""The web app's page in a real browser: the operating system's Chromium driven by Playwright.

Every test's page is watched: a request to anything but the server, or an error in the console, fails
it. CI installs Chromium (.ci/run) and these tests must run there; elsewhere they skip, saying how to
install it. `--update-screenshots` writes the README's screenshots into docs/images/.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import threading
from pathlib import Path
from urllib.parse import urlencode

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


ZEBRA_DOCS = {"zoo.txt": "At the zoo the zebra stood by the fence, its stripes bright in the sun.",
              "crossing.md": "# Crossings\n\nA zebra crossing outside the school, painted white last spring."}
MENU = "Café au lait, crème brûlée and a naïve résumé for the façade’s déjà vu. " * 4  # written in cp1252


def make_world(root: Path, n: int = 30) -> None:
    """Toy pictures of coloured shapes (the committed toyclip knows them), a one-line caption document
    for each, a two-page PDF, an EXIF-rotated photo, two notes that hold the word "zebra", a note in
    cp1252 and one whose name holds a backslash; the first third of the pictures dated 2020."""
    from benchmarks import toyworld

    rows = toyworld.generate(root, n, seed=11, caption_docs=True, max_size=1000)
    make_pdf(root / "docs" / "lighthouse.pdf", PDF_PAGES)
    rotated_photo(root / "images" / "rotated.jpg")
    notes = root / "notes"
    notes.mkdir()
    for name, text in ZEBRA_DOCS.items():
        (notes / name).write_text(text, encoding="utf-8")
    (notes / "menu.txt").write_bytes(MENU.encode("cp1252"))
    (notes / "a\\b.txt").write_text("A name with a backslash in it: the lemon tart recipe.", encoding="utf-8")
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


def _ocr_installed() -> bool:
    from mmsearch import ocr

    return ocr.installed()


class Watched:
    """A page whose requests and console are recorded: check() fails on a request outside the server or
    an error logged."""

    def __init__(self, browser, base: str, width: int = 1280, height: int = 860):
        self.base = base
        self.context = browser.new_context(viewport={"width": width, "height": height}, locale="en-US")
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
    searched(page, f"for “{text}”")


def searched(page, said: str) -> None:
    """Waits for the results the summary says (the start page's photos are in the grid before them)."""
    page.wait_for_function("(said) => document.querySelector('#summary').textContent.includes(said)"
                           " && document.querySelector('#grid .hit') && !document.body.classList.contains('busy')", arg=said)


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
    assert page.url.endswith("/?q=a+large+red+circle")
    # Files found by meaning below the model's relevance floor wait until they are asked for.
    above_floor = page.locator("#grid .hit").count()
    assert page.is_visible("#less-alike")
    page.click("#less-alike")
    page.wait_for_function("(n) => document.querySelectorAll('#grid .hit').length > n"
                           " && !document.body.classList.contains('busy')", arg=above_floor)
    assert thumbnails_render(page) >= 10  # photos, and the pages of PDFs (caption documents have none)
    assert page.locator("#grid .hit.photo").count() >= 10 and page.locator("#grid .hit.doc").count() >= 1
    assert "for “a large red circle”" in page.inner_text("#summary")
    assert page.url.endswith("/?q=a+large+red+circle&all=1") and page.is_hidden("#less-alike")
    page.reload()  # the address holds the search
    searched(page, "for “a large red circle”")
    assert page.input_value("#q") == "a large red circle" and page.locator("#grid .hit").count() > above_floor


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
    searched(page, "like the image")
    assert names(page)[0] == picture.name  # the picture itself comes first
    assert page.is_visible("#query-card") and picture.name in page.inner_text("#query-card")
    page.wait_for_function("() => document.querySelector('#query-card img').naturalWidth > 0")
    assert page.is_hidden("#drop-overlay")
    thumbnails_render(page)


def test_filters_for_type_folder_and_dates(page, server, world):
    root = world[0]
    # With the files below the relevance floor too ("Show less alike results too"), so every filter has some.
    page.goto(server.url + "?q=a+small+blue+square&all=1")
    searched(page, "for “a small blue square”")
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
    searched(page, "like lighthouse.pdf")
    assert not dialog.is_visible() and "lighthouse.pdf" not in names(page) and "like=" in page.url
    # What the results are like is shown above them: its page drawn, its name and folder (issue item 4).
    card = page.locator("#query-card")
    assert card.is_visible() and card.locator(".what").inner_text() == "Like lighthouse.pdf"
    assert card.locator(".where").inner_text().startswith("page 2 · ")
    page.wait_for_function("() => document.querySelector('#query-card img').naturalWidth > 0")
    page.reload()  # from the address alone (?like=ID), the same
    searched(page, "like lighthouse.pdf")
    page.wait_for_function("() => document.querySelector('#query-card .what').textContent === 'Like lighthouse.pdf'")


def test_keyboard_moves_through_the_grid_and_the_larger_view(page, server, world):
    page.goto(server.url + "?type=image&q=a+shape&all=1")
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


# -- results a person can scan -----------------------------------------------------------------------


def test_photos_are_a_grid_of_their_own_and_documents_a_list_with_counts_that_jump(chromium, server):
    """Issue item 1: one-line caption documents no longer push the photos below the fold."""
    for width, height in ((1280, 860), (390, 844)):
        watched = Watched(chromium, server.url, width, height)
        page = watched.page
        try:
            search(page, server.url, "a small blue triangle")
            photos, docs = page.locator("#grid .hit.photo").count(), page.locator("#grid .hit.doc").count()
            assert photos and docs
            assert page.locator(".photos .hit.photo").count() == photos and page.locator(".docs .hit.doc").count() == docs
            summary = page.inner_text("#summary")
            assert summary == f"{photos} photo{'s' * (photos > 1)} and {docs} documents for “a small blue triangle”"
            if width == 1280:  # photos on the first screen, the documents beside them
                first_photo = page.locator("#grid .hit.photo").first.bounding_box()
                assert first_photo["y"] + first_photo["height"] / 2 < height
                related_doc = page.locator(".group-body.both .hit.doc").first.bounding_box()
                assert related_doc["x"] > first_photo["x"] + first_photo["width"]
            else:  # one column: the counts jump to each list
                page.locator("#summary button.jump", has_text="documents").click()
                page.wait_for_function("() => Math.abs(document.getElementById('documents').getBoundingClientRect().top"
                                       " - document.querySelector('.bar').getBoundingClientRect().height) < 120")
                page.locator("#summary button.jump", has_text="photos").click()
                page.wait_for_function("() => document.getElementById('photos').getBoundingClientRect().top < innerHeight")
            watched.check()
        finally:
            watched.close()


def test_the_files_that_hold_the_words_come_first_and_the_related_apart(page, server):
    """Issue item 2: "zebra" is in two notes; the rest is only alike."""
    search(page, server.url, "zebra")
    titles = page.locator(".group-title").all_inner_texts()
    assert titles[0] == "2 documents contain “zebra”"
    first = page.locator(".group").first
    assert sorted(os.path.basename(t) for t in first.locator(".hit").evaluate_all("els => els.map((e) => e.title)")) \
        == sorted(ZEBRA_DOCS)
    assert first.locator("mark").all_inner_texts() == ["zebra", "zebra"]
    page.click("#less-alike")  # the files alike in meaning, below the relevance floor too
    page.wait_for_function("() => document.querySelectorAll('.group').length === 2")
    assert page.locator(".group-title").all_inner_texts()[1].startswith("Related")
    assert page.locator(".group").nth(1).locator(".hit").count() > 0
    assert page.locator(".group").first.locator(".hit").count() == 2  # the two notes still first
    page.goto(server.url + "?q=okapi&all=1")  # in no file: all of it related, and said so
    searched(page, "for “okapi”")
    assert page.locator(".group-title").all_inner_texts()[0].startswith("No file contains “okapi”. Related")


def test_the_start_page_shows_the_counts_and_the_newest_photos(page, server, world):
    """Issue item 5."""
    from mmsearch import Index

    page.goto(server.url)
    searched(page, "This index holds")
    with Index(world[1]) as idx:
        counts = idx.counts()
        newest = [os.path.basename(i.path) for i in idx.recent(25)]
    assert page.inner_text("#summary").startswith(f"This index holds {counts['image']} photos and "
                                                  f"{counts['document']} documents.")
    assert page.locator(".group-title").all_inner_texts() == ["Recent photos"]
    assert names(page) == newest[:25][: len(names(page))] and len(names(page)) == min(25, counts["image"])
    thumbnails_render(page)


def test_an_empty_index_says_how_to_add_a_folder(chromium, tmp_path, bundle):
    from mmsearch import Index
    from mmsearch.web import WebSettings
    from mmsearch.web.server import BackgroundServer

    with Index(tmp_path / "index", model=bundle):
        pass
    with BackgroundServer(WebSettings(index_dir=tmp_path / "index")) as srv:
        watched = Watched(chromium, srv.url)
        try:
            watched.page.goto(srv.url)
            hint = watched.page.wait_for_selector("#home-hint:not([hidden])")
            assert watched.page.inner_text("#summary") == "This index holds no files yet."
            assert f"mmsearch index ~/Pictures --index {tmp_path / 'index'}" in hint.inner_text()
            watched.check()
        finally:
            watched.close()


@pytest.mark.parametrize("width", [320, 390, 430])
def test_a_phone_never_scrolls_sideways_and_folds_the_filters(chromium, server, width):
    """Issue item 6: at 390 px the form was 425 px wide, the Search button cut off, the table clipped."""
    watched = Watched(chromium, server.url, width, 740)
    page = watched.page
    fits = "() => document.documentElement.scrollWidth <= innerWidth"
    try:
        page.goto(server.url)
        searched(page, "This index holds")
        assert page.evaluate(fits)
        search_button = page.locator("#search-form button[type=submit]").bounding_box()
        assert search_button["x"] + search_button["width"] <= width
        search(page, server.url, "lighthouse keeper")
        assert page.evaluate(fits) and page.is_hidden("#filters")
        assert page.locator("#grid .hit").first.bounding_box()["y"] < 300  # results first, not the filters
        page.click("#filters-toggle")
        assert page.is_visible("#filters") and page.is_visible("#f-before") and page.evaluate(fits)
        before = page.locator("#f-before").bounding_box()
        assert before["x"] + before["width"] <= width
        page.locator("#grid .hit.doc", has_text="lighthouse.pdf").first.click()
        page.wait_for_function("() => document.querySelector('#v-size').textContent")
        assert page.evaluate(fits)
        page.keyboard.press("Escape")
        page.click("#tab-status")
        page.wait_for_selector("#st-runs tbody tr")
        assert page.evaluate(fits)
        cells = page.locator("#st-runs td").evaluate_all("tds => tds.map((td) => td.getBoundingClientRect().right)")
        assert cells and max(cells) <= width  # every run's numbers on the screen, none clipped
        watched.check()
    finally:
        watched.close()


def test_a_name_with_a_backslash_and_a_text_in_cp1252_show_as_they_are(page, server, world):
    """Issue item 8."""
    search(page, server.url, "lemon tart recipe")
    card = page.locator("#grid .hit.doc", has_text="lemon tart").first
    assert card.locator("h3").inner_text() == "a\\b.txt"
    assert card.locator(".meta").inner_text().endswith("Pictures/notes")
    card.click()
    assert page.inner_text("#v-name") == "a\\b.txt" and page.inner_text("#v-folder").endswith("Pictures/notes")
    page.keyboard.press("Escape")
    search(page, server.url, "crème brûlée")
    item = page.locator("#grid .hit.doc", has_text="menu.txt").first.get_attribute("data-item")
    page.goto(f"{server.url}api/file/{item}")  # "Open file"
    assert page.inner_text("body").strip() == MENU.strip() and "\ufffd" not in page.inner_text("body")


# -- duplicates ----------------------------------------------------------------------------------------


HOSTILE = '<img src=x onerror="alert(1)"> copy &amp; "quoted".png'


def test_the_duplicates_view_lists_the_groups_with_the_one_to_keep(chromium, tmp_path, bundle):
    """Issue 30 item 3: the groups, the most space to gain first, each file's thumbnail, name, folder,
    dimensions and size, the first marked keep; on a phone too; "No duplicates" once there are none."""
    from PIL import Image

    from engine_helpers import make_collection
    from mmsearch import Index
    from mmsearch.web import WebSettings
    from mmsearch.web.server import BackgroundServer

    root = tmp_path / "Pictures"
    paths = {p.name: p for p in make_collection(root, n_images=6)}
    copies = [root / "harbour copy.txt", root / HOSTILE, root / "img0 large.jpg"]
    shutil.copy(paths["harbour.txt"], copies[0])
    shutil.copy(paths["img1.png"], copies[1])
    with Image.open(paths["img0.jpg"]) as img:
        img.resize((img.width * 2, img.height * 2), Image.Resampling.LANCZOS).save(copies[2], quality=95)
    with Index(tmp_path / "index", model=bundle) as idx:
        idx.index([root], ocr=False)
        expected = idx.duplicates()
    assert [g.kind for g in expected] == ["near", "identical", "identical"]
    with BackgroundServer(WebSettings(index_dir=tmp_path / "index")) as srv:
        for width in (1280, 390):
            watched = Watched(chromium, srv.url, width, 844)
            page = watched.page
            try:
                page.goto(srv.url)
                page.click("#tab-duplicates")
                page.wait_for_selector("#dup-groups .dup-group")
                assert page.is_hidden("#results-view") and page.get_attribute("#tab-duplicates", "aria-pressed") == "true"
                assert page.inner_text("#dup-summary").startswith("3 groups · ")
                assert "Nothing is deleted" in page.inner_text("#duplicates-view")
                groups = page.locator("#dup-groups .dup-group")
                assert groups.count() == 3
                assert [k.lower() for k in page.locator(".dup-kind").all_inner_texts()] == \
                    ["near-identical", "same bytes", "same bytes"]
                for g, group in zip(expected, [groups.nth(i) for i in range(3)]):
                    files = group.locator(".dup-file")
                    assert files.count() == len(g.files)
                    assert group.locator(".name").all_inner_texts() == [os.path.basename(f.path) for f in g.files]
                    assert files.first.locator(".keep").inner_text().lower() == "keep"
                    assert group.locator(".keep").count() == 1
                    assert [a.get_attribute("href") for a in group.locator("a").all()] == \
                        [f"/api/file/{f.item_id}" for f in g.files]
                near = groups.first
                kept = near.locator(".dup-file").first
                assert re.fullmatch(r"192 × 144 · \d+(\.\d)? KB", kept.locator(".meta").nth(1).inner_text())
                assert near.locator(".folder").first.inner_text().endswith("Pictures")
                # the pictures' thumbnails load; the text file shows its kind
                page.wait_for_function("""() => {
                    const imgs = [...document.querySelectorAll('#dup-groups img')];
                    return imgs.length === 4 && imgs.every((i) => i.complete && i.naturalWidth > 0);
                }""")
                assert page.locator(".dup-thumb .ext").all_inner_texts() == ["TXT", "TXT"]
                # a hostile name is text, never markup
                assert HOSTILE in page.locator(".dup-group .name").all_inner_texts()
                assert page.locator("#dup-groups img").count() == 4
                assert page.evaluate("() => document.documentElement.scrollWidth <= innerWidth")
                page.check("#dup-identical")  # same bytes only
                page.wait_for_function("() => document.querySelectorAll('#dup-groups .dup-group').length === 2")
                watched.check()
            finally:
                watched.close()
        for p in copies:
            p.unlink()
        with Index(tmp_path / "index", model=bundle) as idx:
            idx.index([root], ocr=False)
        watched = Watched(chromium, srv.url, 390, 844)
        try:
            watched.page.goto(srv.url)
            watched.page.click("#tab-duplicates")
            watched.page.wait_for_function("() => document.querySelector('#dup-summary').textContent === 'No duplicates.'")
            assert watched.page.locator("#dup-groups > *").count() == 0
            watched.check()
        finally:
            watched.close()


# -- the index's state and "index now" -------------------------------------------------------------


def test_index_now_shows_its_progress_until_done(chromium, tmp_path, bundle):
    from engine_helpers import make_collection, sign
    from mmsearch.web import WebSettings
    from mmsearch.web.server import BackgroundServer

    root, folder = build_index(tmp_path, bundle, n=6)
    make_collection(root / "new", n_images=4, docs={}, first_seed=300)
    # A picture of words: read in full by the words step, after the vectors are saved.
    sign(["Bellavista Pizzeria", "Platform 9 3/4"], size=(640, 240), px=30).save(root / "new" / "sign.png")
    gate = threading.Event()
    settings = WebSettings(index_dir=folder, index_observer=lambda step: step == "encode" and gate.wait(30))
    with BackgroundServer(settings) as srv:
        watched = Watched(chromium, srv.url)
        page = watched.page
        try:
            page.goto(srv.url)
            page.click("#tab-status")
            page.wait_for_function("() => document.querySelector('#st-counts').textContent.includes('7')")
            # Every state the progress shows, as it shows it: its line, and whether its bar knows how far.
            page.evaluate("""() => {
                window.progressSeen = [];
                const note = () => {
                    const bar = document.getElementById('progress-bar');
                    if (!document.getElementById('progress').hidden) {
                        window.progressSeen.push([document.getElementById('progress-text').textContent, bar.position]);
                    }
                };
                new MutationObserver(note).observe(document.getElementById('progress'),
                                                   {subtree: true, childList: true, characterData: true, attributes: true});
            }""")
            page.click("#index-now")
            page.wait_for_function("() => /^Indexing \\d of 5 files/.test(document.querySelector('#progress-text').textContent)")
            assert page.is_visible("#progress-bar") and page.is_visible("#index-cancel") and page.is_disabled("#index-now")
            gate.set()
            page.wait_for_function("() => document.querySelector('#run-result').textContent.startsWith('Done')")
            # Issue item 7: every phase says how far it is, in words and on a bar that is never indeterminate.
            shown = page.evaluate("() => window.progressSeen")
            counted = re.compile(r"^((Starting|Scanning folders|Indexing|Reading the words in pictures) "
                                 r"[\d,]+ of ~?[\d,]+ files|Computing the documents' vectors [\d,]+ of ~?[\d,]+ chunks)"
                                 r"( · .+)?$")
            for text, position in shown:
                assert counted.match(text) or text == "Saving the index", text
                assert position >= 0, f"an indeterminate bar at {text!r}"
            phases = {text.split(" ")[0] for text, _ in shown}
            assert "Indexing" in phases
            if _ocr_installed():
                assert "Reading" in phases
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
            searched(page, "for “a red star”")
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
        phone = Watched(chromium, srv.url, 390, 844)
        try:
            phone.page.goto(srv.url + "?q=a+small+blue+triangle")
            searched(phone.page, "for “a small blue triangle”")
            thumbnails_render(phone.page)
            phone.page.screenshot(path=str(out / "web-phone.png"))
            phone.check()
        finally:
            phone.close()
    import numpy as np
    from PIL import Image

    for name, size in (("web-results.png", (1280, 860)), ("web-document.png", (1280, 860)),
                       ("web-status.png", (1280, 860)), ("web-phone.png", (390, 844))):
        with Image.open(out / name) as img:
            assert img.size == size and len(np.unique(np.asarray(img.convert("L")))) > 8  # not blank
    if out == SCREENSHOTS:
        shutil.rmtree(tmp_path / "shots", ignore_errors=True)


def test_a_video_moment_shows_its_frame_and_plays_from_that_moment(chromium, tmp_path, bundle):
    """A video's moment is a tile with its frame and time; its larger view plays the video from there
    (a media fragment over /api/file, which the browser reads in byte ranges)."""
    from benchmarks import toyvideos

    from mmsearch import Index
    from mmsearch.web import WebSettings
    from mmsearch.web.server import BackgroundServer

    root = tmp_path / "Videos"
    root.mkdir()
    scenes = toyvideos.scenes(3, seed=3)
    toyvideos.make(root / "walk.webm", [s for s, _ in scenes], codec="libvpx-vp9", seconds=4.0, fps=5)
    with Index(tmp_path / "index", model=bundle) as idx:
        assert not idx.index([root]).errors
    with BackgroundServer(WebSettings(index_dir=tmp_path / "index")) as srv:
        watched = Watched(chromium, srv.url)
        ranges: list[str] = []
        watched.page.on("request", lambda r: "/api/file/" in r.url and ranges.append(r.headers.get("range", "")))
        try:
            page = watched.page
            page.goto(srv.url)
            page.wait_for_function("() => document.querySelector('#summary').textContent.includes('1 video')")
            page.goto(srv.url + "?" + urlencode({"q": scenes[1][1], "all": "1"}))
            searched(page, "for “")
            tile = page.locator("#grid .hit.photo", has_text="walk.webm · 00:04").first
            assert tile.is_visible()
            page.wait_for_function("() => [...document.querySelectorAll('#grid img')].every((i) => i.naturalWidth > 0)")
            tile.click()
            page.wait_for_selector("#v-video", state="visible")
            assert page.is_hidden("#v-img") and page.inner_text("#v-time") == "00:04"
            assert page.get_attribute("#v-video", "src").endswith("#t=4")
            page.wait_for_function("() => { const v = document.querySelector('#v-video');"
                                   " return v.readyState >= 2 && Math.abs(v.currentTime - 4.0) < 0.5; }")
            assert any(r.startswith("bytes=") for r in ranges), ranges  # the browser asked for ranges
            page.keyboard.press("Escape")
            page.wait_for_function("() => document.querySelector('#v-video').paused")
            watched.check()
        finally:
            watched.close()
