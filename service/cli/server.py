"""`regimen serve`, `regimen worker` and `regimen migrate`: running the service."""

from __future__ import annotations

import asyncio
import gc
import signal
from typing import Annotated, Any

import typer
import uvicorn

from service.cli import common
from service.core import logs
from service.core.content import ContentError, load_content
from service.core.migrations import migrate as run_migrations
from service.core.models import utcnow
from service.funnel import upkeep
from service.runtime import Runtime
from service.web.app import create_app


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    worker: Annotated[bool, typer.Option(help="Run the outbox worker inside the web process.")]
    = True,
    workers: Annotated[int, typer.Option(min=1, help="Web processes (more than 1 needs "
                                         "--no-worker; run `regimen worker` beside).")] = 1,
) -> None:
    """Serve the web app (and, unless --no-worker, send the outbox's mail)."""
    settings = common.settings()
    if workers > 1 and worker:
        common.fail("--workers above 1 needs --no-worker: run the mail worker as "
                    "`regimen worker`.")
    # Built here, in one process, so that a broken content file stops `serve` with its message
    # before any web process starts; with --workers each process builds its own.
    runtime = common.runtime(settings)
    logs.configure(settings)
    typer.echo(f"Serving {settings.base_url} (listening on http://{host}:{port}); "
               f"mail goes to {settings.mail_url.split('@')[-1]}")
    # log_config=None: keep the logging set up above (JSON in production, masked addresses).
    # proxy_headers=False: the app reads X-Forwarded-For itself, from trusted proxies only.
    options: dict[str, Any] = {"host": host, "port": port, "proxy_headers": False,
                               "log_level": "info", "log_config": None}
    if workers > 1:
        asyncio.run(runtime.aclose())
        uvicorn.run("service.web.asgi:web", factory=True, workers=workers, **options)
    else:
        web = create_app(runtime, run_worker=worker)
        # What exists by now lives as long as the process: keep it out of the collector's full
        # passes, which under load walked it all every second or so (88 ms a pass, a tenth of
        # the time, bench/signup.py).
        gc.freeze()
        uvicorn.run(web, **options)


def worker() -> None:
    """Send the outbox's mail until stopped (SIGTERM or Ctrl-C finishes the batch in hand)."""
    settings = common.settings()
    logs.configure(settings)

    async def work(runtime: Runtime) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await runtime.worker().run(stop)

    common.run(work, settings)


def migrate() -> None:
    """Create or update the database tables."""
    settings = common.settings()
    try:
        default = load_content(settings.content_path).default.key
    except ContentError as exc:
        common.fail(common.content_problems(exc), code=1)
    run_migrations(settings.database_url, default_regimen=default)
    # The author's daily figures (migration 0016 made their tables): count every closed day
    # not kept yet, which after that migration is all of them.
    bar = common.DaysBar("Counting the author's figures per day")

    async def work(runtime: Runtime) -> upkeep.Pass:
        try:
            return await upkeep.keep(runtime.db, list(runtime.catalog.regimens.values()),
                                     utcnow(), runtime.settings.scanner_window, None,
                                     every_regimen=True, counted=bar)
        finally:
            bar.close()

    counted = common.run(work, settings)
    typer.echo("Database is up to date."
               + (f" Counted the author's figures of {counted.counted} days." if counted.counted
                  else ""))
