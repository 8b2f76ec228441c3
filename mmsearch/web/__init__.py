"""The local web app (`mmsearch serve`): search, thumbnails, the status of the index and "index now",
over the library. Needs the `web` extra (Starlette and uvicorn): `pip install 'mmsearch[web]'`.

    from mmsearch.web import WebSettings, create_app   # an ASGI app, for any ASGI server
    app = create_app(WebSettings(index_dir="~/.photos-index"))

The page is plain HTML, CSS and JavaScript shipped in the package (static/): nothing is built or
fetched from the internet.
"""

from __future__ import annotations

from .app import HostPolicy, WebSettings, create_app

__all__ = ["HostPolicy", "WebSettings", "create_app"]
