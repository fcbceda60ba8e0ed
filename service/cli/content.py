"""`regimen content check` and `regimen embed`: the author's files and the blog snippet."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import httpx
import typer

from service.abuse.bots import Captcha
from service.cli import common
from service.core.content import Catalog, ContentError, is_example, load_content
from service.core.lessons import promise
from service.web.embed import snippet

content_app = typer.Typer(help="The regimen content: site.yaml and regimens/.",
                          no_args_is_help=True)


@content_app.command("check")
def content_check(
    online: Annotated[bool, typer.Option(help="Also open every link and report broken ones.")]
    = False,
) -> None:
    """Validate every content file; list placeholder links still to replace, file by file."""
    settings = common.settings()
    try:
        catalog = load_content(settings.content_path)
    except ContentError as exc:
        common.fail(common.content_problems(exc), code=1)
    by_file = _urls_by_file(catalog)
    for file, urls in by_file.items():
        keys = [key for key, source in catalog.sources.items() if source == file]
        if keys:
            regimen = catalog.regimens[keys[0]]
            typer.echo(f"{file}: OK — {len(regimen.units)} units, "
                       f"{len(regimen.exercises())} exercises.")
        else:
            typer.echo(f"{file}: OK — {_plural(len(catalog.regimens), 'regimen')}, "
                       f"served by default: {catalog.default.key}.")
        examples = sorted(url for url in urls if is_example(url))
        if examples:
            typer.secho(f"{_plural(len(examples), 'example address', 'example addresses')} "
                        f"{'is' if len(examples) == 1 else 'are'} still to be replaced:",
                        fg=typer.colors.YELLOW)
            for url in examples:
                typer.echo(f"  {url}")
    if online:
        broken = dict(asyncio.run(_broken_links(sorted(set().union(*by_file.values())))))
        for file, urls in by_file.items():
            if any(url in broken for url in urls):
                typer.echo(f"{file}:")
            for url in sorted(url for url in urls if url in broken):
                typer.secho(f"  broken: {url} ({broken[url]})", fg=typer.colors.RED)
        if broken:
            raise typer.Exit(1)
        typer.echo("Every link answered.")


def _urls_by_file(catalog: Catalog) -> dict[Path, set[str]]:
    """Every address, under the file that holds it: the site's, then each regimen's in listing
    order (for a single file, all under that file)."""
    by_file: dict[Path, set[str]] = {catalog.site_source: {catalog.default.site_url}}
    for key, regimen in catalog.regimens.items():
        by_file.setdefault(catalog.source(key), set()).update(regimen.own_urls())
    return by_file


def _plural(count: int, one: str, many: str = "") -> str:
    return f"{count} {one if count == 1 else (many or one + 's')}"


async def _broken_links(urls: list[str]) -> list[tuple[str, str]]:
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
    regimen: Annotated[str | None, typer.Option(help="The regimen the form delivers (its key); "
                                                "the site's default when not given.")] = None,
) -> None:
    """Print the HTML form to paste into a blog post."""
    settings = common.settings()
    try:
        catalog = load_content(settings.content_path)
    except ContentError as exc:
        common.fail(common.content_problems(exc), code=1)
    chosen = catalog.get(regimen) if regimen is not None else catalog.default
    if chosen is None:
        common.fail(f"No regimen {regimen!r}; the content has: " + ", ".join(catalog.keys()))
    typer.echo(snippet(settings.base_url, source, Captcha.from_settings(settings), regimen,
                       promise(chosen.lessons)), nl=False)
