"""The `regimen` command: serve, worker, migrate, content check, embed."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from typing import Annotated, NoReturn

import httpx
import typer
import uvicorn

from service.app import create_app
from service.config import ConfigError, Settings, load_settings
from service.content import ContentError, Regimen, load_regimen
from service.db import migrate as run_migrations
from service.embed import snippet
from service.runtime import Runtime, build_runtime

app = typer.Typer(help="Deliver a free exercise regimen to a blog's readers, with double opt-in.",
                  no_args_is_help=True, add_completion=False)
content_app = typer.Typer(help="The regimen content file.", no_args_is_help=True)
app.add_typer(content_app, name="content")


def _fail(message: str, code: int = 2) -> NoReturn:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        _fail(f"The configuration cannot be used:\n{exc}")


def _runtime(settings: Settings) -> Runtime:
    try:
        return build_runtime(settings)
    except ContentError as exc:
        _fail(_content_problems(exc), code=1)


def _content_problems(exc: ContentError) -> str:
    lines = "\n".join(f"  {problem}" for problem in exc.problems)
    return f"{exc.path} has problems:\n{lines}"


def _log_to_stderr() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    worker: Annotated[bool, typer.Option(help="Run the outbox worker inside the web process.")]
    = True,
) -> None:
    """Serve the web app (and, unless --no-worker, send the outbox's mail)."""
    settings = _settings()
    runtime = _runtime(settings)
    _log_to_stderr()
    typer.echo(f"Serving {settings.base_url} (listening on http://{host}:{port}); "
               f"mail goes to {settings.mail_url.split('@')[-1]}")
    uvicorn.run(create_app(runtime, run_worker=worker), host=host, port=port,
                proxy_headers=True, forwarded_allow_ips=settings.trusted_proxies,
                log_level="info")


@app.command(name="worker")
def run_worker() -> None:
    """Send the outbox's mail until stopped (SIGTERM or Ctrl-C finishes the batch in hand)."""
    runtime = _runtime(_settings())
    _log_to_stderr()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        try:
            await runtime.worker().run(stop)
        finally:
            await runtime.db.dispose()

    asyncio.run(main())


@app.command()
def migrate() -> None:
    """Create or update the database tables."""
    settings = _settings()
    run_migrations(settings.database_url)
    typer.echo("Database is up to date.")


@content_app.command("check")
def content_check(
    online: Annotated[bool, typer.Option(help="Also open every link and report broken ones.")]
    = False,
) -> None:
    """Validate the regimen file; list placeholder links still to replace."""
    settings = _settings()
    try:
        regimen = load_regimen(settings.content_path)
    except ContentError as exc:
        _fail(_content_problems(exc), code=1)
    count = len(regimen.exercises())
    typer.echo(f"{settings.content_path}: OK — {len(regimen.units)} units, {count} exercises.")
    examples = regimen.example_urls()
    if examples:
        typer.secho(f"{len(examples)} example addresses are still to be replaced:",
                    fg=typer.colors.YELLOW)
        for url in examples:
            typer.echo(f"  {url}")
    if online:
        broken = asyncio.run(_broken_links(regimen))
        for url, reason in broken:
            typer.secho(f"  broken: {url} ({reason})", fg=typer.colors.RED)
        if broken:
            raise typer.Exit(1)
        typer.echo("Every link answered.")


async def _broken_links(regimen: Regimen) -> list[tuple[str, str]]:
    urls = sorted({regimen.site_url, *(regimen.destination(e) for e in regimen.exercises())})
    async with httpx.AsyncClient(follow_redirects=True, timeout=15) as client:
        results = await asyncio.gather(*(_probe(client, url) for url in urls))
    return [(url, reason) for url, reason in zip(urls, results, strict=True) if reason]


async def _probe(client: httpx.AsyncClient, url: str) -> str:
    """Empty when the link works. Some sites refuse HEAD, so a refused HEAD is retried as GET."""
    try:
        response = await client.head(url)
        if response.status_code >= 400:
            response = await client.get(url)
    except httpx.HTTPError as exc:
        return type(exc).__name__
    return f"HTTP {response.status_code}" if response.status_code >= 400 else ""


@app.command()
def embed(
    source: Annotated[str, typer.Option(help="Address of the blog post the form goes into, "
                                        "recorded with each signup.")] = "",
) -> None:
    """Print the HTML form to paste into a blog post."""
    settings = _settings()
    typer.echo(snippet(settings.base_url, source), nl=False)


if __name__ == "__main__":
    app()
