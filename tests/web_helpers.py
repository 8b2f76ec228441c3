"""What the web app's tests share: a small collection with a PDF and an EXIF-rotated photo, and a plain
HTTP client that can send any Host header (urllib cannot)."""

from __future__ import annotations

import http.client
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from PIL import Image

from engine_helpers import make_collection, set_mtime

PDF_PAGES = [
    "Harbour accounts for the spring quarter. Nets mended, two boats repainted.",
    "The lighthouse keeper painted the lantern room bright orange before the autumn storms.",
]
OLD = 1_577_880_000  # 2020-01-01 (UTC midday): the date filters' "old" files


def make_pdf(path: Path, pages: list[str]) -> None:
    from fpdf import FPDF  # fpdf2, in the dev extra

    pdf = FPDF()
    pdf.set_font("helvetica", size=14)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 9, text)
    pdf.output(str(path))


def rotated_photo(path: Path) -> None:
    """Stored 120x80, left half red and right half blue, tagged "turn 90 degrees clockwise" (EXIF
    orientation 6): upright it is 80x120, red on top."""
    img = Image.new("RGB", (120, 80), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 60, 80))
    exif = Image.Exif()
    exif[0x0112] = 6
    img.save(path, quality=95, exif=exif.tobytes())


def make_web_collection(root: Path) -> dict[str, Path]:
    """Six pictures (three under sub/), three text documents, a two-page PDF and a rotated photo. The
    pictures outside sub/ and the PDF are dated 2020; the rest keep today's date."""
    paths = make_collection(root, n_images=6)
    make_pdf(root / "docs" / "lighthouse.pdf", PDF_PAGES)
    rotated_photo(root / "rotated.jpg")
    for p in [*paths, root / "docs" / "lighthouse.pdf"]:
        if p.suffix in (".jpg", ".png", ".webp", ".pdf") and "sub" not in p.parts:
            set_mtime(p, OLD)
    return {p.name: p for p in [*paths, root / "docs" / "lighthouse.pdf", root / "rotated.jpg"]}


def flat_png(path: Path, width: int, height: int, rgb: tuple[int, int, int] = (40, 90, 160)) -> Path:
    """A one-colour RGB PNG of any size, written row by row (never whole in memory): 15,800 x 15,800 is
    ~730 KB on disk and ~750 MB decoded."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + bytes(rgb) * width
    z = zlib.compressobj(9)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)))
        data = b"".join(z.compress(row) for _ in range(height)) + z.flush()
        f.write(chunk(b"IDAT", data) + chunk(b"IEND", b""))
    return path


def peak_rss(pid: int) -> int:
    """The process's peak resident memory so far, in bytes (Linux: VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def request(base: str, method: str, path: str, *, headers: dict[str, str] | None = None,
            body: bytes | None = None, host: str | None = None) -> Reply:
    """One request to the server at `base` (http://127.0.0.1:PORT/); `host` replaces the Host header."""
    url = urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", host if host is not None else url.netloc)
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        r = conn.getresponse()
        return Reply(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    finally:
        conn.close()


def get(base: str, path: str, **kwargs: Any) -> Reply:
    return request(base, "GET", path, **kwargs)


def events(base: str, path: str = "/api/index/events", *, until: Any, limit: int = 2000) -> list[dict]:
    """The states an event stream sends, up to and including the first for which until(state) holds."""
    url = urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    out: list[dict] = []
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        assert r.status == 200 and r.getheader("content-type", "").startswith("text/event-stream")
        event = None
        while len(out) < limit:
            line = r.readline().decode()
            if not line:
                break
            line = line.rstrip("\n")
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:") and event == "state":
                out.append(json.loads(line[5:]))
                if until(out[-1]):
                    break
    finally:
        conn.close()
    return out


def chromium_path() -> str | None:
    for candidate in ("/usr/bin/chromium", "/usr/bin/chromium-browser"):
        if os.path.exists(candidate):
            return candidate
    return None
