"""The web app: serves the same documents `feedsvc build` writes.

A request is a dictionary lookup plus HTTP caching logic; feeds are rendered
when records change, never per request.
"""

from __future__ import annotations

from flask import Flask, Response, abort, request

from .config import Config, load_config
from .site import Build, build


def create_app(config: Config | None = None) -> Flask:
    """The Flask app for `config` (default: the config file `load_config` finds)."""
    config = config or load_config()
    app = Flask(__name__, static_folder=None)
    app.extensions["feedsvc"] = {"config": config, "build": build(config)}

    @app.get("/", defaults={"path": "index.html"})
    @app.get("/<path:path>")
    def document(path: str) -> Response:
        current: Build = app.extensions["feedsvc"]["build"]
        doc = current.documents.get(path)
        if doc is None:
            abort(404)
        resp = Response(doc.body, content_type=doc.media_type)
        if doc.last_modified:
            resp.last_modified = doc.last_modified
        resp.set_etag(_etag(doc.body))
        return resp.make_conditional(request)

    return app


def _etag(body: bytes) -> str:
    import hashlib

    return hashlib.sha256(body).hexdigest()[:32]
