"""The web app built from the environment, for servers that start several worker processes:
`uvicorn --factory service.web.asgi:web --workers 4` (what `regimen serve --workers 4` runs).

Each process builds its own app; none runs the outbox worker (run `regimen worker` for that).
"""

from __future__ import annotations

import gc

from fastapi import FastAPI

from service.core import logs
from service.core.settings import load_settings
from service.runtime import build_runtime
from service.web.app import create_app


def web() -> FastAPI:
    settings = load_settings()
    logs.configure(settings)
    app = create_app(build_runtime(settings), run_worker=False)
    gc.freeze()  # as `regimen serve` does; see there
    return app
