"""A local stand-in for the part of the Hugging Face hub's HTTP API that huggingface_hub uses to
download a model (point HF_ENDPOINT at `server.url`). Read from huggingface_hub's own client
(hf_api.py model_info and list_repo_tree, file_download.py get_hf_file_metadata and http_get):

    GET  /api/models/{repo}[/revision/{rev}]?blobs=true   {"id", "sha", "siblings": [{"rfilename",
                                                          "size", "blobId", "lfs": {"sha256", "size",
                                                          "pointerSize"}}]}
    GET  /api/models/{repo}/tree/{rev}[/{path}]?recursive  [{"type", "path", "oid", "size", "lfs"}]
    POST /api/models/{repo}/paths-info/{rev}               the same entries for the paths asked
    HEAD /{repo}/resolve/{rev}/{file}                      X-Repo-Commit, ETag (the git blob id, or
                                                          the sha256 for LFS files), X-Linked-Etag and
                                                          X-Linked-Size (LFS), Content-Length
    GET  /{repo}/resolve/{rev}/{file}                      the bytes; "Range: bytes=N-" gives 206

Errors as the hub sends them: 404 with X-Error-Code RepoNotFound, RevisionNotFound or EntryNotFound.
Faults for the tests: `cut[file] = n` sends n bytes of the file's first GET, then drops the
connection; `corrupt.add(file)` serves that file with one byte changed (its listed checksums stay).
Every request is logged in `requests` as (method, path, Range header).
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

LFS_SUFFIXES = (".onnx", ".onnx_data", ".bin", ".safetensors", ".rknn", ".armnn")


@dataclass
class Repo:
    files: dict[str, bytes]
    commit: str = ""
    refs: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.commit:
            digest = hashlib.sha1()
            for name in sorted(self.files):
                digest.update(name.encode() + hashlib.sha1(self.files[name]).digest())
            self.commit = digest.hexdigest()
        self.refs.setdefault("main", self.commit)

    @classmethod
    def from_folder(cls, folder: Path) -> "Repo":
        files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
        return cls(files)


def blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def entry(path: str, data: bytes) -> dict:
    out = {"type": "file", "path": path, "oid": blob_id(data), "size": len(data)}
    if path.endswith(LFS_SUFFIXES):
        out["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
    return out


class HubServer:
    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.cut: dict[str, int] = {}
        self.corrupt: set[str] = set()
        self.requests: list[tuple[str, str, str | None]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                hub._handle(self, "GET")

            def do_HEAD(self) -> None:
                hub._handle(self, "HEAD")

            def do_POST(self) -> None:
                hub._handle(self, "POST")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "HubServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def add(self, repo_id: str, repo: Repo) -> Repo:
        self.repos[repo_id] = repo
        return repo

    def downloads(self, repo_id: str) -> list[str]:
        """The files of repo_id fetched with GET so far."""
        prefix = f"/{repo_id}/resolve/"
        return [p[len(prefix):].split("/", 1)[1] for m, p, _ in self.requests if m == "GET" and p.startswith(prefix)]

    # -- requests -------------------------------------------------------------------------------------

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        url = urlparse(h.path)
        path = unquote(url.path)
        self.requests.append((method, path, h.headers.get("Range")))
        body = b""
        if method == "POST":
            body = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "models"] and len(parts) >= 4:
            repo_id, rest = "/".join(parts[2:4]), parts[4:]
            repo = self.repos.get(repo_id)
            if repo is None:
                return self._error(h, 404, "RepoNotFound", f"Repository not found: {repo_id}")
            if not rest or rest[0] == "revision":
                rev = rest[1] if len(rest) > 1 else "main"
                commit = self._commit(repo, rev)
                if commit is None:
                    return self._error(h, 404, "RevisionNotFound", f"Invalid rev id: {rev}")
                blobs = parse_qs(url.query).get("blobs", ["false"])[0].lower() == "true"
                siblings = []
                for name, data in sorted(repo.files.items()):
                    s = {"rfilename": name}
                    if blobs:
                        e = entry(name, data)
                        s.update(size=len(data), blobId=e["oid"])
                        if "lfs" in e:
                            s["lfs"] = {"sha256": e["lfs"]["oid"], "size": len(data), "pointerSize": 134}
                    siblings.append(s)
                return self._json(h, method, {"_id": repo_id, "id": repo_id, "modelId": repo_id, "sha": commit,
                                              "private": False, "disabled": False, "gated": False, "tags": [],
                                              "downloads": 0, "likes": 0, "siblings": siblings,
                                              "lastModified": "2026-01-01T00:00:00.000Z"})
            if rest[0] in ("tree", "paths-info") and len(rest) >= 2:
                commit = self._commit(repo, rest[1])
                if commit is None:
                    return self._error(h, 404, "RevisionNotFound", f"Invalid rev id: {rest[1]}")
                if rest[0] == "paths-info":
                    asked = parse_qs(body.decode()).get("paths", [])
                    if not asked and body.startswith(b"{"):
                        asked = json.loads(body).get("paths", [])
                    items = [entry(p, repo.files[p]) for p in asked if p in repo.files]
                    return self._json(h, method, items)
                under = "/".join(rest[2:])
                recursive = parse_qs(url.query).get("recursive", ["false"])[0].lower() == "true"
                return self._json(h, method, self._tree(repo, under, recursive))
            return self._error(h, 404, None, "not found")
        if len(parts) >= 5 and parts[2] == "resolve":
            repo_id, rev, file = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
            repo = self.repos.get(repo_id)
            if repo is None:
                return self._error(h, 404, "RepoNotFound", f"Repository not found: {repo_id}")
            commit = self._commit(repo, rev)
            if commit is None:
                return self._error(h, 404, "RevisionNotFound", f"Invalid rev id: {rev}")
            if file not in repo.files:
                return self._error(h, 404, "EntryNotFound", f"{file} does not exist on {rev}", commit)
            return self._file(h, method, repo, commit, file)
        return self._error(h, 404, None, "not found")

    def _commit(self, repo: Repo, rev: str) -> str | None:
        if rev in repo.refs:
            return repo.refs[rev]
        return rev if rev == repo.commit else None

    def _tree(self, repo: Repo, under: str, recursive: bool) -> list[dict]:
        prefix = f"{under}/" if under else ""
        items, folders = [], set()
        for name, data in sorted(repo.files.items()):
            if not name.startswith(prefix):
                continue
            rest = name[len(prefix):]
            if "/" in rest and not recursive:
                folders.add(prefix + rest.split("/")[0])
                continue
            items.append(entry(name, data))
            if recursive:
                parts = rest.split("/")[:-1]
                for i in range(len(parts)):
                    folders.add(prefix + "/".join(parts[: i + 1]))
        items += [{"type": "directory", "path": f, "oid": blob_id(f.encode()), "size": 0} for f in sorted(folders)]
        return items

    def _file(self, h: BaseHTTPRequestHandler, method: str, repo: Repo, commit: str, file: str) -> None:
        data = repo.files[file]
        e = entry(file, data)
        served = data
        if file in self.corrupt and data:
            served = bytes([data[0] ^ 0xFF]) + data[1:]
        start = 0
        rng = h.headers.get("Range")
        if method == "GET" and rng and rng.startswith("bytes="):
            start = int(rng[6:].split("-")[0] or 0)
        h.send_response(206 if start else 200)
        h.send_header("X-Repo-Commit", commit)
        h.send_header("ETag", f'"{e["lfs"]["oid"] if "lfs" in e else e["oid"]}"')
        if "lfs" in e:
            h.send_header("X-Linked-Etag", f'"{e["lfs"]["oid"]}"')
            h.send_header("X-Linked-Size", str(len(data)))
        h.send_header("Accept-Ranges", "bytes")
        h.send_header("Content-Length", str(len(data) - start))
        if start:
            h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        h.end_headers()
        if method == "HEAD":
            return
        cut = self.cut.pop(file, None) if not start else None
        if cut is not None:  # part of the body, then the connection drops
            h.wfile.write(served[:cut])
            h.wfile.flush()
            h.close_connection = True
            import socket

            h.connection.shutdown(socket.SHUT_RDWR)
            return
        h.wfile.write(served[start:])

    def _json(self, h: BaseHTTPRequestHandler, method: str, payload) -> None:
        body = json.dumps(payload).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if method != "HEAD":
            h.wfile.write(body)

    def _error(self, h: BaseHTTPRequestHandler, status: int, code: str | None, message: str,
               commit: str | None = None) -> None:
        body = json.dumps({"error": message}).encode()
        h.send_response(status)
        if code:
            h.send_header("X-Error-Code", code)
            h.send_header("X-Error-Message", message)
        if commit:
            h.send_header("X-Repo-Commit", commit)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(body)


def default_repositories(root: Path) -> dict[str, Path]:
    """The catalogue's default models (English's and every other language's) under their real repository
    ids, as tiny towers in those repositories' layouts (tests/tiny_onnx.py), written under root."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import tiny_onnx
    from mmsearch.models import catalogue

    writers = {"immich-app/XLM-Roberta-Base-ViT-B-32__laion5b_s13b_b90k": tiny_onnx.write_immich_xlmr,
               "immich-app/ViT-B-32__laion2b-s34b-b79k": tiny_onnx.write_immich,
               "Xenova/clip-vit-base-patch32": tiny_onnx.write_transformers_js}
    out = {}
    for entry in (catalogue.default("en"), catalogue.default("zh"), catalogue.find("clip-vit-b-32")):
        assert entry is not None and entry.repo in writers, f"no tiny layout for {entry}"
        out[entry.repo] = writers[entry.repo](root / entry.name)
    return out


def serve_default_model(url_file: Path, repo_folder: Path) -> None:
    """For scripts/check-wheel.sh: the catalogue's default models (default_repositories) until killed;
    the URL goes to url_file."""
    import time

    with HubServer() as server:
        for repo_id, folder in default_repositories(repo_folder).items():
            server.add(repo_id, Repo.from_folder(folder))
        url_file.write_text(server.url)
        while True:
            time.sleep(3600)


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="Serve the default models' layouts (tiny weights) as the hub would.")
    ap.add_argument("--url-file", type=Path, required=True, help="where to write the server's URL once it listens")
    ap.add_argument("--repo-folder", type=Path, required=True, help="where to write the repository's files")
    args = ap.parse_args()
    serve_default_model(args.url_file, args.repo_folder)
