"""The web app: the page, its JSON endpoints over the library, thumbnails and "index now".

    GET  /                     the page (its per-session token in a meta tag)
    GET  /api/search           Index.search: q, k, type, under, after, before, mode, min_similarity -> SearchResult.to_dict()s
    POST /api/search/image     the same by an image sent as the request body (size-limited)
    GET  /api/similar          Index.similar: path (or item), k, type, under, after, before
    GET  /api/status           Index.status()
    GET  /api/item/ID          one item's file: name, folder, date, size (the larger view)
    GET  /api/recent           Index.recent: the newest photos by capture time (the start page)
    GET  /api/duplicates       Index.duplicates: threshold, identical -> DuplicateGroup.to_dict()s (with item ids)
    GET  /api/thumb/ID         its thumbnail (size=small|large), a JPEG
    GET  /api/file/ID          the indexed file itself (a byte range of it, for a video played from a moment)
    POST /api/reveal           show an item in its folder, in the file manager (local requests only)
    GET  /api/index            the state of "index now"; POST starts it, POST /api/index/cancel stops it
    GET  /api/index/events     that state as server-sent events, as it changes
    GET  /api/app              what the page needs first: the index's state and what to do about it

Every request passes `Guard` first: Host must be one this server answers to (DNS rebinding), actions
that change something need the session token, and a server reachable from other machines needs its
access token on every request.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import itertools
import json
import logging
import os
import secrets
import subprocess
import sys
import tempfile
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import (Index, InvalidArgument, MmsearchError, __version__, display_path, first_line, json_fields, location,
               private)
from .jobs import IndexJob, RunInProgress
from . import thumbs
from .thumbs import DEFAULT_CACHE_BYTES, SIZES, ThumbnailError, Thumbnails, has_thumbnail

log = logging.getLogger("mmsearch.web")

STATIC = Path(__file__).resolve().parent / "static"
TOKEN_HEADER = "x-mmsearch-token"
MAX_K = 1000
UPLOAD_DECODES = 2  # images to search by, decoded at the same time
# POSTs that only read: an image search sends its image in the body. Every other unsafe request changes
# something and needs the session token.
READ_ONLY_POSTS = frozenset({"/api/search/image"})
FILTER_PARAMS = ("k", "type", "under", "after", "before")
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


class WebError(MmsearchError):
    """A request the server cannot answer; `status` is its HTTP status, `state` what the page shows."""

    def __init__(self, message: str, status: int, state: str | None = None, *, close: bool = False):
        super().__init__(message)
        self.status = status
        self.state = state
        self.close = close  # the request's body is left unread: the connection cannot serve another


# -- settings --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HostPolicy:
    """The Host names this server answers to. A page on another site that rebinds its own name to this
    machine's address sends its own name as Host: refused."""

    names: frozenset[str]
    any_ip: bool = False  # a wildcard bind: any address of this machine, written as an IP

    @classmethod
    def for_bind(cls, host: str, extra: tuple[str, ...] = ()) -> "HostPolicy":
        host = _hostname(host)
        names = {host, *(_hostname(h) for h in extra)}
        if host in LOOPBACK_NAMES or is_loopback(host):
            names |= {"localhost"} | ({"127.0.0.1", "::1"} if host == "localhost" else set())
            return cls(frozenset(names))
        import socket

        names |= {"localhost", "127.0.0.1", "::1", _hostname(socket.gethostname()), _hostname(socket.getfqdn())}
        return cls(frozenset(names), any_ip=host in ("0.0.0.0", "::"))

    def allows(self, host_header: str | None) -> bool:
        if not host_header:
            return False
        name = _hostname(_strip_port(host_header))
        if name in self.names:
            return True
        if self.any_ip:
            try:
                ipaddress.ip_address(name)
                return True
            except ValueError:
                return False
        return False


def _strip_port(host: str) -> str:
    if host.startswith("["):  # [::1]:8765
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _hostname(name: str) -> str:
    return name.strip().strip("[]").rstrip(".").lower()


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


REVEAL_WAIT_S = 10.0


def open_in_file_manager(path: str) -> None:
    """Show a file in the desktop's file manager: selected where the platform can (macOS, Windows), its
    folder opened elsewhere (xdg-open opens folders, it cannot select). The opener is waited for (it
    hands the folder to the file manager and exits): a failure is reported, never a success where
    nothing could show it, and no exited opener is left unreaped."""
    if sys.platform == "darwin":
        cmd = ["open", "-R", path]
    elif sys.platform == "win32":
        cmd = ["explorer", f"/select,{path}"]
    else:
        cmd = ["xdg-open", os.path.dirname(path) or "."]
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True)
    except OSError as e:
        raise WebError(f"cannot open a file manager here ({cmd[0]}: {e.strerror or e})", 501) from None
    try:
        _, err = proc.communicate(timeout=REVEAL_WAIT_S)
    except subprocess.TimeoutExpired:
        # Still running (an opener that stays with the window it opened): reaped when it ends.
        threading.Thread(target=proc.communicate, name="mmsearch-reveal-reaper", daemon=True).start()
        return
    # explorer answers 1 even when it showed the file: its status says nothing there.
    if proc.returncode != 0 and sys.platform != "win32":
        said = (err or b"").decode(errors="replace").strip().splitlines()[:1]
        raise WebError(f"nothing on this machine could show the folder ({cmd[0]} exited with status "
                       f"{proc.returncode}{': ' + said[0][:200] if said else ''})", 501)


@dataclass(frozen=True)
class WebSettings:
    index_dir: str | os.PathLike[str] | None = None  # None: the default index
    model: str | None = None  # None: the one the index was built with
    hosts: HostPolicy = field(default_factory=lambda: HostPolicy.for_bind("127.0.0.1"))
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))  # new for each server
    remote: bool = False  # reachable from other machines: every request needs the token
    max_upload_bytes: int = 20 * 2**20
    thumbnail_cache_bytes: int = DEFAULT_CACHE_BYTES
    reveal: Callable[[str], None] | None = open_in_file_manager  # None: no "show in folder"
    index_observer: Callable[[str], None] | None = None  # passed to Index.index as `observe` (tracing)


# -- the index behind the app ----------------------------------------------------------------------


class Engine:
    """The index the app serves, opened when first needed: a server started before the first
    `mmsearch index` picks the index up once it exists, without a restart."""

    def __init__(self, settings: WebSettings):
        self.settings = settings
        self.folder = Index.folder_of(settings.index_dir)
        self.thumbs = Thumbnails(self.folder, settings.thumbnail_cache_bytes)
        self.job = IndexJob()
        self._index: Any = None
        self._lock = threading.Lock()

    def exists(self) -> bool:
        return (self.folder / "catalog.db").exists()

    def index(self) -> Any:
        with self._lock:
            if self._index is None:
                if not self.exists():
                    where = "" if self.settings.index_dir is None else f" --index {self.folder}"
                    raise WebError(f"No index at {self.folder} yet. Index a folder from a terminal, then reload "
                                   f"this page:\n  mmsearch index ~/Pictures{where}", 503, "no_index")
                # A folder this user cannot write, or another account's, is still searched (no "index now").
                self._index = Index(self.folder, model=self.settings.model,
                                    readonly=not private.may_write(self.folder))
            return self._index

    def model_problem(self) -> str | None:
        """Why searches by meaning cannot run (the index's model is not installed), or None."""
        try:
            self.index().bundle
        except WebError:
            raise
        except MmsearchError as e:
            return str(e)
        return None

    def ready(self) -> Any:
        """The index, with its model: what a search needs."""
        idx = self.index()
        problem = self.model_problem()
        if problem:
            raise WebError(problem, 503, "no_model")
        return idx

    def item(self, raw_id: str) -> Any:
        try:
            item_id = int(raw_id)
        except ValueError:
            raise InvalidArgument(f"an item id is a whole number (got {raw_id!r})") from None
        item = self.index().item(item_id)
        if item is None or item.status not in ("indexed", "indexing"):  # (a video's frames so far, too)
            raise WebError(f"no item {item_id} in this index (it may have been removed by a later index run)", 404)
        return item

    def close(self) -> None:
        self.job.stop()
        with self._lock:
            if self._index is not None:
                self._index.close()


# -- the guard -------------------------------------------------------------------------------------


class Guard:
    """Checks every request before the app sees it, and adds the headers that keep other sites out."""

    def __init__(self, app: ASGIApp, settings: WebSettings):
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        host = headers.get("host")
        refusal = self._refusal(scope, headers, host)
        if refusal is not None:
            await refusal(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                out = MutableHeaders(scope=message)
                out.setdefault("x-content-type-options", "nosniff")
                out.setdefault("referrer-policy", "no-referrer")
                out.setdefault("x-frame-options", "DENY")
                # Other sites may not even embed a thumbnail (an <img> there would tell its size).
                out.setdefault("cross-origin-resource-policy", "same-origin")
                if scope["path"].startswith("/static/"):
                    out.setdefault("cache-control", "no-cache")  # revalidated: a new version shows at once
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _refusal(self, scope: Scope, headers: Headers, host: str | None) -> Response | None:
        if not self.settings.hosts.allows(host):
            return PlainTextResponse(
                f"mmsearch serve does not answer to the host {host!r}: open it by the address it printed "
                "(requests for other names are refused, so that no web page can reach it under its own name)",
                403)
        token = self.settings.token
        if self.settings.remote and not self._has_access(scope, headers):
            query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
            given = query.get("token")
            if given and hmac.compare_digest(given.encode(), token.encode()) and scope["method"] == "GET":
                # The printed address: keep the token in a cookie, and drop it from the address bar.
                rest = urlencode([(k, v) for k, v in query.items() if k != "token"])
                response = RedirectResponse(scope["path"] + (f"?{rest}" if rest else ""), 303)
                response.set_cookie(_cookie_name(host), token, httponly=True, samesite="strict",
                                    secure=scope.get("scheme") == "https")
                return response
            return _json_error("this server is reachable from other machines and needs its access token: open "
                               "the address `mmsearch serve` printed (it ends in ?token=...)", 401)
        if scope["method"] not in ("GET", "HEAD", "OPTIONS"):
            origin = headers.get("origin")
            # "null" is an opaque origin (a sandboxed frame, a file:// page, a redirect across sites): no
            # page of this server sends it, so it is refused like any other site.
            if origin and (origin == "null" or urlsplit(origin).netloc != host):
                return _json_error(f"requests from {origin} are refused", 403)
            if scope["path"] not in READ_ONLY_POSTS:
                given = headers.get(TOKEN_HEADER, "")
                if not hmac.compare_digest(given.encode(), token.encode()):
                    return _json_error("this action needs the page's session token (header X-Mmsearch-Token); "
                                       "reload the page to get the current one", 403)
        return None

    def _has_access(self, scope: Scope, headers: Headers) -> bool:
        token = self.settings.token.encode()
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer ") and hmac.compare_digest(auth[7:].strip().encode(), token):
            return True
        cookie = _cookies(headers.get("cookie", "")).get(_cookie_name(headers.get("host")))
        return cookie is not None and hmac.compare_digest(cookie.encode(), token)


def _cookie_name(host: str | None) -> str:
    # Cookies are shared by every port of a host: one name per port keeps two servers apart.
    port = (host or "").rsplit(":", 1)[-1] if host and not host.endswith("]") and ":" in host else "80"
    return f"mmsearch_token_{port if port.isdigit() else '80'}"


def _cookies(header: str) -> dict[str, str]:
    out = {}
    for part in header.split(";"):
        name, _, value = part.strip().partition("=")
        if name:
            out[name] = value
    return out


# -- responses -------------------------------------------------------------------------------------


class Json(JSONResponse):
    def render(self, content: Any) -> bytes:
        # ASCII-escaped: a folder name with undecodable bytes still makes valid JSON.
        return json.dumps(content, separators=(",", ":")).encode("ascii")


def _json_error(message: str, status: int, state: str | None = None) -> Json:
    return Json({"error": message, **({"state": state} if state else {})}, status)


def error_response(exc: Exception) -> Response:
    if isinstance(exc, WebError):
        response = _json_error(str(exc), exc.status, exc.state)
        if exc.close:
            response.headers["connection"] = "close"
        return response
    if isinstance(exc, ThumbnailError):
        return _json_error(str(exc), exc.status)
    if isinstance(exc, InvalidArgument):
        return _json_error(str(exc), 400)
    if isinstance(exc, RunInProgress) or type(exc).__name__ == "IndexBusyError":
        return _json_error(str(exc), 409)
    if isinstance(exc, MmsearchError):
        return _json_error(str(exc), 400)
    log.exception("unexpected error", exc_info=exc)
    return _json_error(f"internal error: {first_line(exc)}", 500)


def _errors(endpoint: Callable[[Request], Any]) -> Callable[[Request], Any]:
    """A sync endpoint, run in the thread pool (the library blocks), its errors as JSON."""

    async def wrapped(request: Request) -> Response:
        try:
            return await run_in_threadpool(endpoint, request)
        except Exception as e:
            return error_response(e)

    return wrapped


# -- parameters ------------------------------------------------------------------------------------


def _params(request: Request, allowed: tuple[str, ...]) -> dict[str, str]:
    """The query's parameters, unknown ones refused (a typo should not be silently ignored); empty
    values count as absent (an empty form field)."""
    unknown = sorted(set(request.query_params) - set(allowed))
    if unknown:
        raise InvalidArgument(f"unknown parameter {unknown[0]!r}; this endpoint takes {', '.join(allowed)}")
    return {k: v for k, v in request.query_params.items() if v.strip()}


def _flag(p: dict[str, str], name: str) -> bool:
    raw = p.get(name, "false").lower()
    if raw not in ("1", "true", "yes", "0", "false", "no"):
        raise InvalidArgument(f"{name} is true or false (got {p[name]!r})")
    return raw in ("1", "true", "yes")


def _filters(p: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {"type": p.get("type", "all"), "under": p.get("under"), "after": p.get("after"),
                           "before": p.get("before")}
    raw = p.get("k", "10")
    try:
        k = int(raw)
    except ValueError:
        raise InvalidArgument(f"k must be a whole number (got {raw!r})") from None
    if k > MAX_K:
        raise InvalidArgument(f"k must be at most {MAX_K} (got {k})")
    out["k"] = k
    return out


# -- the app ---------------------------------------------------------------------------------------


def create_app(settings: WebSettings | None = None) -> Starlette:
    settings = settings or WebSettings()
    engine = Engine(settings)
    page = (STATIC / "index.html").read_text(encoding="utf-8").replace("{{token}}", settings.token)

    # Uploads decoded at once: each may decode up to QUERY_MAX_PIXELS (~120 MB and as much again while
    # it is converted), whatever the number of requests sent together.
    decoding = asyncio.Semaphore(UPLOAD_DECODES)

    def is_local(request: Request) -> bool:
        return request.client is not None and is_loopback(request.client.host)

    async def home(request: Request) -> Response:
        return Response(page, media_type="text/html; charset=utf-8", headers={
            "cache-control": "no-store",  # it holds the session token
            "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; media-src 'self'; "
                                       "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        })

    async def favicon(request: Request) -> Response:
        # The one resource a sandboxed file (an opaque origin) asks for by itself: the app's icon, no secret.
        return FileResponse(STATIC / "icon.svg", media_type="image/svg+xml",
                            headers={"cross-origin-resource-policy": "cross-origin"})

    def app_state(request: Request) -> Response:
        state, message, counts = "ready", None, None
        try:
            idx = engine.index()
            counts = idx.counts()
            problem = engine.model_problem()
            if problem:
                state, message = "no_model", problem
            elif not any(counts.get(k) for k in ("image", "document", "video", "errors")):
                state = "empty"
                message = (f"This index holds no files yet. Index a folder from a terminal:\n"
                           f"  mmsearch index ~/Pictures --index {engine.folder}")
        except WebError as e:
            state, message = e.state or "error", str(e)
        return Json({
            "version": __version__, "index": str(engine.folder), "state": state, "message": message,
            "counts": counts, "writable": os.access(engine.folder, os.W_OK),
            "can_reveal": settings.reveal is not None and is_local(request),
            "max_upload_bytes": settings.max_upload_bytes, "job": engine.job.snapshot()[1],
            "home": os.path.expanduser("~"),  # the page writes paths under it as ~/...
            "sep": os.sep,  # what separates folders in a path here (a "\\" in a name on Linux is a character)
        })

    def search(request: Request) -> Response:
        p = _params(request, ("q", *FILTER_PARAMS, "mode", "min_similarity"))
        filters = _filters(p)
        idx = engine.ready()
        hits = idx.search(request.query_params.get("q"), mode=p.get("mode", "hybrid"),
                          min_similarity=p.get("min_similarity"), **filters)
        return Json([h.to_dict() for h in hits])

    async def search_image(request: Request) -> Response:
        try:
            p = _params(request, FILTER_PARAMS)
            filters = _filters(p)
            data = await _read_body(request, settings.max_upload_bytes)
            idx = await run_in_threadpool(engine.ready)
            async with decoding:  # the uploads beyond it wait here, holding no thread
                hits = await run_in_threadpool(_search_upload, idx, data, filters)
            return Json([h.to_dict() for h in hits])
        except Exception as e:
            return error_response(e)

    def similar(request: Request) -> Response:
        p = _params(request, ("path", "item", *FILTER_PARAMS))
        filters = _filters(p)
        idx = engine.index()
        if ("path" in p) == ("item" in p):
            raise InvalidArgument("give the file to compare with: path=FILE (an indexed file) or item=ID")
        if "path" in p:
            return Json([h.to_dict() for h in idx.similar(p["path"], **filters)])
        it = engine.item(p["item"])  # a video's frame: like that moment
        return Json([h.to_dict() for h in idx.similar(it.fs_path, at=it.frame_s, **filters)])

    def status(request: Request) -> Response:
        _params(request, ())
        return Json(engine.index().status())

    def item(request: Request) -> Response:
        return Json(_item_json(engine.item(request.path_params["item_id"])))

    def recent(request: Request) -> Response:
        p = _params(request, ("k", "type"))
        k = _filters(p)["k"]
        return Json([_item_json(it) for it in engine.index().recent(k, type=p.get("type", "image"))])

    def duplicates(request: Request) -> Response:
        # Seconds on a large index (every picture's vector against every other): in the thread pool.
        p = _params(request, ("threshold", "identical"))
        threshold = None
        if "threshold" in p:
            try:
                threshold = float(p["threshold"])
            except ValueError:
                raise InvalidArgument(f"threshold must be a number, a cosine between -1 and 1 "
                                      f"(got {p['threshold']!r})") from None
        identical = _flag(p, "identical")
        groups = engine.index().duplicates(threshold=threshold, near=not identical)
        return Json([g.to_dict() for g in groups])

    def thumb(request: Request) -> Response:
        p = _params(request, ("size",))
        size = p.get("size", "small")
        if size not in SIZES:
            raise InvalidArgument(f"size must be one of {', '.join(SIZES)} (got {size!r})")
        it = engine.item(request.path_params["item_id"])
        made = engine.thumbs.get(it, size)
        etag = f'"{made.etag}"'
        headers = {"cache-control": "private, max-age=86400", "etag": etag}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        return Response(made.data, media_type="image/jpeg", headers=headers)

    def original(request: Request) -> Response:
        it = engine.item(request.path_params["item_id"])
        media = it.media_type or "application/octet-stream"
        name = os.path.basename(display_path(it.fs_path))
        # Sandboxed wherever the browser shows it: nothing in a served file runs as this server's page.
        headers = {"cache-control": "private, no-cache", "content-security-policy": "sandbox"}
        if media.startswith("text/"):
            # Shown as plain text, never run or rendered (a .md neither), in UTF-8 whatever it was
            # written in: decoded as indexing decoded it (a cp1252 file shows its accents).
            with thumbs.opened_as(it):
                text = engine.index().file_text(it)
                first = next(text, "")
            headers["content-disposition"] = _disposition("inline", name)
            return StreamingResponse((part.encode("utf-8") for part in itertools.chain([first], text)),
                                     media_type="text/plain; charset=utf-8", headers=headers)
        with thumbs.opened_as(it):
            f = engine.index().open_file(it)
        size = os.fstat(f.fileno()).st_size
        # A photo or a video is shown; a document the app does not draw itself (a PDF: its viewer would run
        # the PDF's script) is downloaded, to be opened by the user's own reader.
        shown = media.startswith(("image/", "video/"))
        headers["content-disposition"] = _disposition("inline" if shown else "attachment", name)
        headers["accept-ranges"] = "bytes"
        # A player asks for parts of a video (to start at a moment, to seek): the bytes of one range.
        try:
            span = _byte_range(request.headers.get("range"), size)
        except _Unsatisfiable:
            f.close()
            return Response(status_code=416, headers={**headers, "content-range": f"bytes */{size}"})
        if span is None:
            headers["content-length"] = str(size)
            return StreamingResponse(_blocks(f, size), media_type=media, headers=headers)
        start, end = span
        f.seek(start)
        headers["content-length"] = str(end - start + 1)
        headers["content-range"] = f"bytes {start}-{end}/{size}"
        return StreamingResponse(_blocks(f, end - start + 1), status_code=206, media_type=media, headers=headers)

    def reveal(request: Request) -> Response:
        p = _params(request, ("item",))
        if settings.reveal is None:
            raise WebError("showing files in their folder is turned off for this server", 501)
        if not is_local(request):
            raise WebError("a file is shown in its folder only on the machine that runs mmsearch serve", 403)
        it = engine.item(p.get("item", ""))
        thumbs.check_unchanged(it)
        settings.reveal(it.fs_path)
        return Json({"revealed": display_path(it.fs_path)})

    def index_state(request: Request) -> Response:
        return Json(engine.job.snapshot()[1])

    def index_start(request: Request) -> Response:
        idx = engine.index()
        if idx.readonly:
            raise WebError(f"{engine.folder}: this folder cannot be written by this user; index it from a "
                           "terminal as its owner", 403)
        problem = engine.model_problem()
        if problem:
            raise WebError(problem, 503, "no_model")
        return Json(engine.job.start(idx, observe=settings.index_observer), 202)

    def index_cancel(request: Request) -> Response:
        return Json(engine.job.cancel())

    async def index_events(request: Request) -> Response:
        async def stream() -> AsyncIterator[str]:
            last, quiet = -1, 0
            yield "retry: 2000\n\n"
            while True:
                version, state = engine.job.snapshot()
                if version != last:
                    last, quiet = version, 0
                    yield f"event: state\ndata: {json.dumps(state)}\n\n"
                elif quiet >= 150:  # every 15 s: a gone client is noticed when this write fails
                    quiet = 0
                    yield ": keep-alive\n\n"
                quiet += 1
                await asyncio.sleep(0.1)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"cache-control": "no-cache", "x-accel-buffering": "no"})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await run_in_threadpool(engine.close)

    routes = [
        Route("/", home),
        Route("/favicon.ico", favicon),
        Route("/api/app", _errors(app_state)),
        Route("/api/search", _errors(search)),
        Route("/api/search/image", search_image, methods=["POST"]),
        Route("/api/similar", _errors(similar)),
        Route("/api/status", _errors(status)),
        Route("/api/item/{item_id}", _errors(item)),
        Route("/api/recent", _errors(recent)),
        Route("/api/duplicates", _errors(duplicates)),
        Route("/api/thumb/{item_id}", _errors(thumb)),
        Route("/api/file/{item_id}", _errors(original)),
        Route("/api/reveal", _errors(reveal), methods=["POST"]),
        Route("/api/index", _errors(index_state), methods=["GET"]),
        Route("/api/index", _errors(index_start), methods=["POST"]),
        Route("/api/index/cancel", _errors(index_cancel), methods=["POST"]),
        Route("/api/index/events", index_events),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes, middleware=[Middleware(Guard, settings=settings)], lifespan=lifespan)
    app.state.engine = engine
    app.state.settings = settings
    return app


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, up to `limit` bytes. A body declared larger is refused before a byte of it is
    read, and one sent without a length (chunked) as soon as it passes the limit: the rest is never
    read, and the connection is closed after the answer."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(f"the image is {int(declared) / 2**20:.1f} MB", limit)
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > limit:
            raise _too_large("the image is larger", limit)
    if not data:
        raise InvalidArgument("send the image to search by as the request body (any format mmsearch indexes)")
    return bytes(data)


def _too_large(what: str, limit: int) -> WebError:
    return WebError(f"{what}; this server takes images up to {limit / 2**20:g} MB (mmsearch serve --max-upload-mb N)",
                    413, close=True)


def _item_json(it: Any) -> dict[str, Any]:
    """An item's file as the page shows it: name, folder, date, size (the larger view, the start page)."""
    shown = display_path(it.fs_path)
    date = datetime.fromtimestamp(it.time_s).astimezone().isoformat() if it.time_s is not None else None
    return {
        "item_id": it.item_id, "kind": it.kind, "page": it.page, "location": location(it.fs_path, it.page),
        "time_s": it.frame_s, **json_fields(it.fs_path),
        "name": os.path.basename(shown), "folder": os.path.dirname(shown), "size": it.size, "date": date,
        "taken_at": it.taken_at, "width": it.width, "height": it.height, "media_type": it.media_type,
        "thumbnail": has_thumbnail(it),
    }


def _disposition(kind: str, name: str) -> str:
    """A Content-Disposition naming the file: its name in ASCII where it is, else as RFC 5987 says."""
    ascii_name = name.encode("ascii", "replace").decode().replace('"', "'").replace("\\", "_")
    return f'{kind}; filename="{ascii_name}"' + (f"; filename*=utf-8''{quote(name)}" if ascii_name != name else "")


class _Unsatisfiable(Exception):
    """A byte range that lies past the file's end (or is malformed): 416."""


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The one range of a Range header (RFC 9110), as (first, last) byte; None where the whole file is
    sent: no header, one that is not about bytes, or several ranges (which a server may answer whole).
    Raises _Unsatisfiable where it cannot be served."""
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    try:
        if not dash:
            raise _Unsatisfiable
        if not first:  # the last N bytes
            n = int(last)
            if n <= 0 or size <= 0:
                raise _Unsatisfiable
            return max(0, size - n), size - 1
        a = int(first)
        b = int(last) if last else size - 1
    except ValueError:
        raise _Unsatisfiable from None
    if a < 0 or a >= size or b < a:
        raise _Unsatisfiable
    return a, min(b, size - 1)


def _blocks(f: IO[bytes], size: int) -> Iterator[bytes]:
    """At most `size` bytes of an opened file, block by block, the file closed after."""
    with f:
        left = size
        while left > 0:
            data = f.read(min(1 << 16, left))
            if not data:
                return
            left -= len(data)
            yield data


def _search_upload(idx: Any, data: bytes, filters: dict[str, Any]) -> Any:
    # The library searches by a file: the upload goes to a private temporary one, gone afterwards.
    with tempfile.TemporaryDirectory(prefix="mmsearch-upload-") as folder:
        path = os.path.join(folder, "image")
        with private.open_file(path, "wb") as f:
            f.write(data)
        try:
            return idx.search(image=path, **filters)
        except InvalidArgument as e:
            raise InvalidArgument(str(e).replace(path, "the uploaded image")) from None
        except MmsearchError as e:  # "PATH: not an image Pillow can read" names the upload instead
            raise MmsearchError(str(e).replace(path, "the uploaded image")) from None
