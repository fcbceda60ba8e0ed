"""`regimen content check` and `regimen embed`: the author's file and the blog snippet."""

from __future__ import annotations

import asyncio
from typing import Annotated

import httpx
import typer

from service.abuse.bots import Captcha
from service.cli import common
from service.core.content import ContentError, Regimen, load_regimen
from service.web.embed import snippet

content_app = typer.Typer(help="The regimen content file.", no_args_is_help=True)


@content_app.command("check")
def content_check(
    online: Annotated[bool, typer.Option(help="Also open every link and report broken ones.")]
    = False,
) -> None:
    """Validate the regimen file; list placeholder links still to replace."""
    settings = common.settings()
    try:
        regimen = load_regimen(settings.content_path)
    except ContentError as exc:
        common.fail(common.content_problems(exc), code=1)
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


def embed(
    source: Annotated[str, typer.Option(help="Address of the blog post the form goes into, "
                                        "recorded with each signup.")] = "",
) -> None:
    """Print the HTML form to paste into a blog post."""
    settings = common.settings()
    typer.echo(snippet(settings.base_url, source, Captcha.from_settings(settings)), nl=False)
