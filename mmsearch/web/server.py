"""`mmsearch serve`: the web app on uvicorn, bound to this machine unless asked otherwise; HTTPS with a
certificate and its key."""

from __future__ import annotations

import os
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from .. import InvalidArgument, MmsearchError
from .app import HostPolicy, WebSettings, is_loopback, create_app

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


def is_local_host(host: str) -> bool:
    return host.strip("[]").lower() == "localhost" or is_loopback(host.strip("[]"))


def settings_for(host: str, *, allow_remote: bool = False, allow_hosts: tuple[str, ...] = (),
                 **kwargs: Any) -> WebSettings:
    """The server's settings for a bind address: a host other than this machine's loopback needs
    allow_remote, and then every request needs the access token."""
    remote = not is_local_host(host)
    if remote and not allow_remote:
        raise InvalidArgument(
            f"--host {host} would make your photos and documents reachable from other machines; add "
            "--allow-remote to do that on purpose (every request then needs the access token printed at start)"
        )
    return WebSettings(hosts=HostPolicy.for_bind(host, allow_hosts), remote=remote, **kwargs)


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    # IPPROTO_TCP named: asyncio turns Nagle's algorithm off (TCP_NODELAY) only on connections of a socket
    # that says it is TCP; with Nagle on, each response after a connection's first waited ~40 ms for
    # the client's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as e:
        sock.close()
        if e.errno in (98, 48, 10048):  # EADDRINUSE on Linux, macOS, Windows
            raise MmsearchError(f"port {port} on {host} is already in use (another mmsearch serve?); "
                                "choose another with --port") from None
        raise MmsearchError(f"cannot listen on {host}:{port} ({e.strerror or e})") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


@dataclass(frozen=True)
class Tls:
    """A certificate (its chain, PEM) and its private key: the server speaks HTTPS."""

    cert: str
    key: str

    @classmethod
    def checked(cls, cert: str | os.PathLike[str] | None, key: str | os.PathLike[str] | None) -> "Tls | None":
        """Both or neither; each loaded once here, so a wrong file is said at start, naming it."""
        if cert is None and key is None:
            return None
        if cert is None or key is None:
            raise InvalidArgument("--tls-cert and --tls-key go together: the certificate and its private key")
        tls = cls(os.fspath(cert), os.fspath(key))
        for what, path in (("certificate", tls.cert), ("private key", tls.key)):
            if not os.path.isfile(path):
                raise InvalidArgument(f"{path}: no such file (the TLS {what})")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(tls.cert, tls.key)
        except (ssl.SSLError, OSError) as e:
            raise InvalidArgument(f"{tls.cert}, {tls.key}: not a certificate and its private key in PEM "
                                  f"({getattr(e, 'reason', None) or e})") from None
        return tls


def _server(app: Any, sock: socket.socket, tls: Tls | None = None) -> Any:
    import uvicorn

    config = uvicorn.Config(app, log_level="warning", access_log=False, proxy_headers=False, server_header=False,
                            lifespan="on", timeout_graceful_shutdown=2,  # open event streams end after 2 s
                            ssl_certfile=tls.cert if tls else None, ssl_keyfile=tls.key if tls else None)
    return uvicorn.Server(config)


def url_of(host: str, port: int, tls: bool = False) -> str:
    # A wildcard bind is reached by this machine's name (which the Host check answers to).
    shown = socket.gethostname() if host in ("0.0.0.0", "::") else host
    scheme = "https" if tls else "http"
    return f"{scheme}://[{shown}]:{port}/" if ":" in shown else f"{scheme}://{shown}:{port}/"


def serve(*, index_dir: str | os.PathLike[str] | None = None, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          open_browser: bool = False, allow_remote: bool = False, allow_hosts: tuple[str, ...] = (),
          model: str | None = None, max_upload_mb: float = 20, thumbnail_cache_mb: float = 512,
          tls_cert: str | os.PathLike[str] | None = None, tls_key: str | os.PathLike[str] | None = None,
          echo: Callable[[str], None] = print) -> None:
    """Serve until Ctrl-C; over HTTPS with a certificate and its key."""
    if max_upload_mb <= 0 or thumbnail_cache_mb <= 0:
        raise InvalidArgument("--max-upload-mb and --thumbnail-cache-mb must be above 0")
    tls = Tls.checked(tls_cert, tls_key)
    settings = settings_for(host, allow_remote=allow_remote, allow_hosts=allow_hosts, index_dir=index_dir,
                            model=model, max_upload_bytes=int(max_upload_mb * 2**20),
                            thumbnail_cache_bytes=int(thumbnail_cache_mb * 2**20))
    app = create_app(settings)
    engine = app.state.engine
    if engine.exists() and model is not None:
        engine.index()  # a --model that does not fit the index fails here, not on the first search
    sock = bind(host, port)
    port = sock.getsockname()[1]
    url = url_of(host, port, tls is not None)
    if settings.remote:
        wire = ("over HTTPS" if tls else "over plain HTTP: the token, your searches and your files can be read "
                "on the network (--tls-cert and --tls-key serve HTTPS)")
        echo(f"Warning: serving {engine.folder} to every machine that can reach this one on port {port}, {wire}.\n"
             f"Access token: {settings.token}\nOpen {url}?token={settings.token} (the token is asked once per browser)")
        url = f"{url}?token={settings.token}"
    else:
        echo(f"Serving {engine.folder} at {url} (Ctrl-C to stop)")
    if not engine.exists():
        echo("No index there yet: the page says how to make one.")
    server = _server(app, sock, tls)
    if open_browser:
        import webbrowser

        def opener() -> None:
            while not server.started and not server.should_exit:
                threading.Event().wait(0.05)
            if server.started:
                webbrowser.open(url)

        threading.Thread(target=opener, daemon=True).start()
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()


class BackgroundServer:
    """The app on a thread, on a free port of 127.0.0.1 (tests and benchmarks):

        with BackgroundServer(WebSettings(index_dir=...)) as srv:
            urlopen(srv.url + "api/status")
    """

    def __init__(self, settings: WebSettings | None = None, host: str = "127.0.0.1", port: int = 0,
                 tls: Tls | None = None):
        self.settings = settings or WebSettings()
        if self.settings.hosts == HostPolicy.for_bind(DEFAULT_HOST) and host != DEFAULT_HOST:
            self.settings = replace(self.settings, hosts=HostPolicy.for_bind(host))
        self.app = create_app(self.settings)
        self.sock = bind(host, port)
        self.port = self.sock.getsockname()[1]
        self.url = url_of(host, self.port, tls is not None)
        self._server = _server(self.app, self.sock, tls)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self.sock]}, daemon=True,
                                        name="mmsearch-web")

    @property
    def engine(self) -> Any:
        return self.app.state.engine

    def __enter__(self) -> "BackgroundServer":
        self._thread.start()
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the web server did not start")
            threading.Event().wait(0.02)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.should_exit = True
        self._thread.join(15)
        self.sock.close()
