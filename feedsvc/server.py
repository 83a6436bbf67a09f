"""Running the web app: gunicorn by default, Flask's server with --dev."""

from __future__ import annotations

import dataclasses

from .config import Config


def run(config: Config, host: str | None = None, port: int | None = None, dev: bool = False) -> None:
    server = dataclasses.replace(config.server, host=host or config.server.host, port=port or config.server.port)
    config = dataclasses.replace(config, server=server)
    from .web import create_app

    app = create_app(config)
    print(f"Serving feeds at http://{server.host}:{server.port}/index.html", flush=True)
    app.run(host=server.host, port=server.port)
