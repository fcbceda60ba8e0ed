"""One service, many regimens, as the reader meets them over HTTP: the hosted pages (the list at
`/`, each regimen's own form at `/{key}`), signing up for a regimen by form or JSON, confirming
every regimen an address waits for with one button, stopping one regimen's mail or everything,
and the pages of a regimen the author has since removed."""

from __future__ import annotations

import asyncio
import html
import re
from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from service.core.database import Database
from service.core.models import MailKind, OutboxMessage, Reader, Subscriber, SubscriberStatus
from service.core.settings import Settings
from service.readers.tokens import Purpose
from service.runtime import Runtime, build_runtime
from service.web.app import create_app
from service.web.texts import TEXTS, titles
from tests.helpers import (
    BASE_URL,
    DEFAULT_REGIMEN,
    OTHER_REGIMEN,
    MailSink,
    app_client,
    count_rows,
    links_in,
    path_of,
    served,
    shipped_content_in,
    shipped_single_file,
)

BLOG_POST = "https://blog.example/2015/stiff-neck.html"


def text_of(response: httpx.Response) -> str:
    return html.unescape(response.text)


def hidden_regimen(page: str) -> list[str]:
    return re.findall(r'<input type="hidden" name="regimen" value="([^"]*)">', page)


def regimen_links(page: str) -> list[str]:
    return re.findall(r'href="(https://regimen\.test/r/[^"]+)"', page)


async def mail_to(smtp: MailSink, email: str, count: int) -> EmailMessage:
    """The `count`-th mail to `email`, once it has arrived."""
    return (await asyncio.to_thread(smtp.wait, count, 10.0, email))[count - 1]


def link(mail: EmailMessage, part: str) -> str:
    return path_of(next(url for url in links_in(mail) if part in url))


async def subscriptions(db: Database, email: str) -> dict[str, SubscriberStatus]:
    async with db.transaction() as session:
        rows = await session.execute(select(Subscriber.regimen, Subscriber.status)
                                     .where(Subscriber.email == email))
        return dict(rows.all())


async def held_by(runtime: Runtime, purpose: Purpose, path: str) -> str:
    """The regimen of the subscription a link names."""
    claims = runtime.tokens.read(purpose, path.rsplit("/", 1)[1].split("?")[0])
    async with runtime.db.transaction() as session:
        regimen = await session.scalar(select(Subscriber.regimen)
                                       .where(Subscriber.public_id == claims.public_id))
    assert regimen is not None
    return regimen


# The hosted pages.

async def test_the_front_page_lists_every_regimen_with_a_link_to_its_form(
    client: httpx.AsyncClient, runtime: Runtime,
) -> None:
    page = await client.get("/")
    assert page.status_code == 200
    text = text_of(page)
    catalog = runtime.catalog
    assert TEXTS.listing.heading.format(author=catalog.default.author) in text
    assert re.findall(r'<a class="button" href="/([a-z0-9-]+)"', page.text) == catalog.keys()
    for regimen in catalog.regimens.values():
        assert regimen.title in text
        assert regimen.intro in text
    # A list, not a form: each regimen's form is on its own page.
    assert "<form" not in page.text


@pytest.mark.parametrize("key", [DEFAULT_REGIMEN, OTHER_REGIMEN])
async def test_each_regimen_has_its_own_hosted_form(
    client: httpx.AsyncClient, runtime: Runtime, key: str,
) -> None:
    page = await client.get(f"/{key}")
    assert page.status_code == 200
    regimen = runtime.catalog.get(key)
    assert regimen is not None
    assert f"<h1>{regimen.title}</h1>" in text_of(page)
    assert hidden_regimen(page.text) == [key]
    assert 'action="/subscribe"' in page.text


async def test_a_one_regimen_site_shows_its_form_at_once(
    settings: Settings, db: Database, tmp_path: Path,
) -> None:
    single = tmp_path / "back-pain.yaml"
    single.write_text(shipped_single_file())
    async with app_client(settings, content_path=single) as http:
        page = await http.get("/")
        own = await http.get("/back-pain")
    assert page.status_code == 200
    assert '<form class="regimen-signup"' in page.text
    assert hidden_regimen(page.text) == ["back-pain"]
    assert "Self-relief regimen for sacro-iliac joint pain" in text_of(page)
    assert TEXTS.listing.button not in page.text
    assert own.status_code == 200
    assert hidden_regimen(own.text) == ["back-pain"]


async def test_an_unknown_regimen_page_is_not_found(client: httpx.AsyncClient) -> None:
    for path in ("/no-such-regimen", "/favicon.ico", "/Sacro-Iliac", "/sacro-iliac-"):
        page = await client.get(path)
        assert page.status_code == 404, path
        assert ERROR_404 in page.text


ERROR_404 = "Page not found"


@pytest.mark.parametrize(("path", "status", "kind"), [
    ("/healthz", 200, "application/json"),
    ("/readyz", 503, "application/json"),  # no worker in this app: not ready, but its answer
    ("/metrics", 200, "text/plain"),
    ("/admin", 404, "text/html"),
    ("/embed", 200, "text/html"),
    ("/embed.js", 200, "text/javascript"),
    ("/check-inbox", 200, "text/html"),
    ("/static/style.css", 200, "text/css"),
    ("/openapi.json", 200, "application/json"),
])
async def test_a_regimens_form_hides_no_other_route(
    settings: Settings, db: Database, path: str, status: int, kind: str,
) -> None:
    async with app_client(settings) as http:
        answer = await http.get(path)
    assert answer.status_code == status
    assert answer.headers["content-type"].startswith(kind)
    assert 'name="regimen"' not in answer.text or path == "/embed"


async def test_routes_declared_after_the_regimen_forms_are_not_reachable_by_one_segment(
    settings: Settings, db: Database,
) -> None:
    """Why tests add their own routes with two segments (/_test/…)."""
    async with build_runtime(settings) as runtime:
        app = create_app(runtime, run_worker=False)

        @app.get("/late")
        async def late() -> dict[str, str]:
            return {"late": "yes"}

        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url=BASE_URL) as http:
            assert (await http.get("/late")).status_code == 404


# Signing up for a regimen.

async def test_the_json_api_names_the_regimen(
    client: httpx.AsyncClient, smtp: MailSink, db: Database, runtime: Runtime,
) -> None:
    answer = await client.post("/subscribe", json={"email": "json@example.org",
                                                   "regimen": OTHER_REGIMEN})
    assert answer.status_code == 202
    assert await subscriptions(db, "json@example.org") == {OTHER_REGIMEN:
                                                           SubscriberStatus.PENDING}
    mail = await mail_to(smtp, "json@example.org", 1)
    other = runtime.catalog.get(OTHER_REGIMEN)
    assert other is not None
    assert other.title in mail.get_body(("plain",)).get_content()


async def test_a_form_without_the_field_signs_up_for_the_default(
    client: httpx.AsyncClient, db: Database,
) -> None:
    """Snippets pasted before there were several regimens carry no `regimen` field."""
    await client.post("/subscribe", data={"email": "old-snippet@example.org"})
    await client.post("/subscribe", json={"email": "old-script@example.org", "regimen": None})
    await client.post("/subscribe", data={"email": "empty@example.org", "regimen": ""})
    for email in ("old-snippet@example.org", "old-script@example.org", "empty@example.org"):
        assert await subscriptions(db, email) == {DEFAULT_REGIMEN: SubscriberStatus.PENDING}


async def test_one_address_subscribes_to_each_regimen_once(
    client: httpx.AsyncClient, db: Database,
) -> None:
    for regimen in (DEFAULT_REGIMEN, OTHER_REGIMEN, OTHER_REGIMEN):
        answer = await client.post("/subscribe", data={"email": "both@example.org",
                                                       "regimen": regimen})
        assert answer.headers["location"] == "/check-inbox"
    assert await subscriptions(db, "both@example.org") == {
        DEFAULT_REGIMEN: SubscriberStatus.PENDING, OTHER_REGIMEN: SubscriberStatus.PENDING}
    async with db.transaction() as session:
        assert await session.scalar(select(func.count()).select_from(Reader)) == 1


@pytest.mark.parametrize("regimen", ["no-such-regimen", "Sacro-Iliac", "../admin", "42"])
async def test_a_regimen_not_offered_is_refused_alike_by_form_and_json(
    client: httpx.AsyncClient, db: Database, regimen: str,
) -> None:
    page = await client.post("/subscribe", data={"email": "reader@example.org",
                                                  "regimen": regimen, "source": BLOG_POST})
    assert page.status_code == 400
    # The front page again, saying so: the list of what is offered.
    assert TEXTS.listing.unknown in text_of(page)
    assert 'role="alert"' in page.text
    assert re.findall(r'href="/([a-z0-9-]+)"', page.text) == [OTHER_REGIMEN, DEFAULT_REGIMEN]
    answer = await client.post("/subscribe", json={"email": "reader@example.org",
                                                   "regimen": regimen})
    assert answer.status_code == 422
    assert answer.json() == {"errors": {"regimen": TEXTS.listing.unknown}}
    assert await count_rows(db, Subscriber) == 0


async def test_a_regimen_that_is_not_text_is_refused(client: httpx.AsyncClient) -> None:
    for value in (42, ["sacro-iliac"], {"key": "sacro-iliac"}, True):
        answer = await client.post("/subscribe", json={"email": "reader@example.org",
                                                       "regimen": value})
        assert answer.status_code == 422, value
        assert "regimen" in answer.json()["errors"]


async def test_a_one_regimen_site_answers_an_unknown_regimen_with_its_form(
    settings: Settings, db: Database, tmp_path: Path,
) -> None:
    single = tmp_path / "back-pain.yaml"
    single.write_text(shipped_single_file())
    async with app_client(settings, content_path=single) as http:
        page = await http.post("/subscribe", data={"email": "reader@example.org",
                                                   "regimen": DEFAULT_REGIMEN,
                                                   "started": "first-showing"})
    assert page.status_code == 400
    assert TEXTS.listing.unknown in text_of(page)
    # The form of what is offered, with what the reader typed: one press signs up for it,
    # however quickly (the first showing's stamp, not a fresh one that would look like a bot).
    assert hidden_regimen(page.text) == ["back-pain"]
    assert 'value="reader@example.org"' in page.text
    assert 'name="started" value="first-showing"' in page.text
    assert await count_rows(db, Subscriber) == 0


async def test_a_refused_address_shows_the_regimens_own_form_again(
    client: httpx.AsyncClient, runtime: Runtime,
) -> None:
    page = await client.post("/subscribe", data={"email": "nope", "regimen": OTHER_REGIMEN})
    assert page.status_code == 400
    other = runtime.catalog.get(OTHER_REGIMEN)
    assert other is not None
    assert f"<h1>{other.title}</h1>" in text_of(page)
    assert hidden_regimen(page.text) == [OTHER_REGIMEN]


def comparable(response: httpx.Response) -> tuple[int, tuple[tuple[str, str], ...], bytes]:
    headers = tuple(sorted((k, v) for k, v in response.headers.items()
                           if k not in ("date", "x-request-id")))
    return response.status_code, headers, response.content


async def test_the_same_answer_for_every_state_of_every_regimen(
    client: httpx.AsyncClient, smtp: MailSink, db: Database,
) -> None:
    # One address confirmed for the default regimen, and unsubscribed from it on another.
    await client.post("/subscribe", data={"email": "known@example.org"})
    await press_confirm(client, link(await mail_to(smtp, "known@example.org", 1), "/confirm/"))
    await mail_to(smtp, "known@example.org", 2)
    await client.post("/subscribe", data={"email": "left@example.org",
                                          "regimen": OTHER_REGIMEN})
    await press_confirm(client, link(await mail_to(smtp, "left@example.org", 1), "/confirm/"))
    regimen_mail = await mail_to(smtp, "left@example.org", 2)
    await client.post(path_of(regimen_mail["List-Unsubscribe"].strip("<>")))
    assert await subscriptions(db, "left@example.org") == {
        OTHER_REGIMEN: SubscriberStatus.UNSUBSCRIBED}

    asked = [(email, regimen) for email in ("known@example.org", "left@example.org",
                                            "new@example.org")
             for regimen in (DEFAULT_REGIMEN, OTHER_REGIMEN)]
    form = {comparable(await client.post("/subscribe", data={"email": e, "regimen": r}))
            for e, r in asked}
    json = {comparable(await client.post("/subscribe", json={"email": e, "regimen": r}))
            for e, r in asked}
    assert len(form) == 1
    assert len(json) == 1


async def press_confirm(client: httpx.AsyncClient, path: str) -> httpx.Response:
    """Press the confirmation page's button as a browser does: with the form's fields."""
    page = await client.get(path)
    shown = re.search(r'name="also" value="([^"]*)"', page.text)
    return await client.post(path, data={"also": shown[1]} if shown else {})


# Confirming.

async def test_one_button_confirms_every_regimen_the_address_waits_for(
    client: httpx.AsyncClient, smtp: MailSink, db: Database, runtime: Runtime,
) -> None:
    email = "both@example.org"
    await client.post("/subscribe", data={"email": email, "regimen": DEFAULT_REGIMEN})
    first = link(await mail_to(smtp, email, 1), "/confirm/")
    await client.post("/subscribe", json={"email": email, "regimen": OTHER_REGIMEN})
    await mail_to(smtp, email, 2)
    default, other = runtime.catalog.get(DEFAULT_REGIMEN), runtime.catalog.get(OTHER_REGIMEN)
    assert default is not None
    assert other is not None

    page = await client.get(first)
    text = text_of(page)
    # About the link's regimen, saying in one line what else the button confirms.
    assert default.title in text
    assert TEXTS.confirm.also.format(titles=titles([other.title])) in text
    assert text.count("<button") == 1
    assert await subscriptions(db, email) == {DEFAULT_REGIMEN: SubscriberStatus.PENDING,
                                              OTHER_REGIMEN: SubscriberStatus.PENDING}

    confirmed = await press_confirm(client, first)
    assert confirmed.status_code == 200
    assert await subscriptions(db, email) == {DEFAULT_REGIMEN: SubscriberStatus.CONFIRMED,
                                              OTHER_REGIMEN: SubscriberStatus.CONFIRMED}
    # A link to each regimen just confirmed, the button's own first; each opens its regimen.
    shown = regimen_links(confirmed.text)
    assert [await held_by(runtime, Purpose.REGIMEN, path_of(url)) for url in shown] == \
        [DEFAULT_REGIMEN, OTHER_REGIMEN]
    assert TEXTS.confirmed.button_each.format(title=other.title) in text_of(confirmed)
    for url, regimen in zip(shown, (default, other), strict=True):
        opened = await client.get(path_of(url))
        assert f"<h1>{regimen.title}</h1>" in text_of(opened)
    async with db.transaction() as session:
        kinds = list(await session.scalars(select(OutboxMessage.kind)
                                           .order_by(OutboxMessage.id)))
    assert kinds == [MailKind.CONFIRM, MailKind.CONFIRM, MailKind.REGIMEN, MailKind.REGIMEN]

    # Nothing waits any more: the page says nothing more, and pressing again shows one link.
    assert TEXTS.confirm.also.split("{")[0] not in text_of(await client.get(first))
    again = await client.post(first)
    assert len(regimen_links(again.text)) == 1
    assert TEXTS.confirmed.button in again.text


async def test_a_confirm_page_with_nothing_else_waiting_says_nothing_more(
    client: httpx.AsyncClient, smtp: MailSink, runtime: Runtime,
) -> None:
    await client.post("/subscribe", data={"email": "one@example.org",
                                          "regimen": OTHER_REGIMEN})
    page = await client.get(link(await mail_to(smtp, "one@example.org", 1), "/confirm/"))
    other = runtime.catalog.get(OTHER_REGIMEN)
    assert other is not None
    assert other.title in text_of(page)
    assert TEXTS.confirm.also.split("{")[0] not in text_of(page)


# Unsubscribing.

async def confirmed_for_both(client: httpx.AsyncClient, smtp: MailSink,
                             email: str) -> dict[str, str]:
    """The unsubscribe link of each of the address's two regimens, both confirmed."""
    await client.post("/subscribe", data={"email": email, "regimen": DEFAULT_REGIMEN})
    await client.post("/subscribe", data={"email": email, "regimen": OTHER_REGIMEN})
    # Both confirmation mails out first: one still queued when its regimen is confirmed is
    # dropped by the worker (stale), and the count below would not be reached.
    await mail_to(smtp, email, 2)
    await press_confirm(client, link(await mail_to(smtp, email, 1), "/confirm/"))
    mails = [await mail_to(smtp, email, count) for count in (3, 4)]
    links = [path_of(mail["List-Unsubscribe"].strip("<>")) for mail in mails]
    # Each regimen mail is about its own regimen: tell them apart by their subjects.
    return {DEFAULT_REGIMEN if "sacro-iliac" in mail["Subject"] else OTHER_REGIMEN: path
            for mail, path in zip(mails, links, strict=True)}


async def test_one_click_stops_only_that_regimen(
    client: httpx.AsyncClient, smtp: MailSink, db: Database, runtime: Runtime,
) -> None:
    links = await confirmed_for_both(client, smtp, "both@example.org")
    assert {await held_by(runtime, Purpose.UNSUBSCRIBE, path): key
            for key, path in links.items()} == {key: key for key in links}
    page = await client.get(links[OTHER_REGIMEN])
    other = runtime.catalog.get(OTHER_REGIMEN)
    assert other is not None
    assert other.title in text_of(page)
    assert TEXTS.unsubscribe.everything_button in page.text
    one_click = await client.post(links[OTHER_REGIMEN], content="List-Unsubscribe=One-Click",
                                  headers={"content-type": "application/x-www-form-urlencoded"})
    assert one_click.status_code == 200
    assert TEXTS.unsubscribed.lead in text_of(one_click)
    assert await subscriptions(db, "both@example.org") == {
        DEFAULT_REGIMEN: SubscriberStatus.CONFIRMED, OTHER_REGIMEN: SubscriberStatus.UNSUBSCRIBED}
    # Nothing else is mailed any more but the default regimen: no second button there.
    assert TEXTS.unsubscribe.everything_button not in (
        await client.get(links[DEFAULT_REGIMEN])).text


@pytest.mark.parametrize("encoding", ["form", "multipart"])
async def test_stop_everything_stops_every_regimen_of_the_address(
    client: httpx.AsyncClient, smtp: MailSink, db: Database, runtime: Runtime, encoding: str,
) -> None:
    links = await confirmed_for_both(client, smtp, f"{encoding}@example.org")
    await client.post("/subscribe", data={"email": "bystander@example.org"})
    page = await client.get(links[DEFAULT_REGIMEN])
    [everything] = re.findall(r'<form method="post" action="([^"]+)">\s*<input type="hidden" '
                              r'name="everything" value="1">', page.text)
    assert everything == links[DEFAULT_REGIMEN]
    if encoding == "form":
        done = await client.post(everything, data={"everything": "1"})
    else:
        done = await client.post(everything, data={"everything": "1"},
                                 files={"unused": ("a.txt", b"x")})
    assert done.status_code == 200
    assert TEXTS.unsubscribed.lead_everything.format(author=runtime.regimen.author) \
        in text_of(done)
    assert await subscriptions(db, f"{encoding}@example.org") == {
        DEFAULT_REGIMEN: SubscriberStatus.UNSUBSCRIBED,
        OTHER_REGIMEN: SubscriberStatus.UNSUBSCRIBED}
    assert await subscriptions(db, "bystander@example.org") == {
        DEFAULT_REGIMEN: SubscriberStatus.PENDING}


async def test_a_reader_with_one_regimen_sees_one_button(
    client: httpx.AsyncClient, smtp: MailSink,
) -> None:
    await client.post("/subscribe", data={"email": "one@example.org"})
    await press_confirm(client, link(await mail_to(smtp, "one@example.org", 1), "/confirm/"))
    page = await client.get(link(await mail_to(smtp, "one@example.org", 2), "/unsubscribe/"))
    assert page.status_code == 200
    assert page.text.count("<button") == 1
    assert TEXTS.unsubscribe.everything_button not in page.text


async def test_erasing_erases_every_regimen_of_the_address(
    client: httpx.AsyncClient, smtp: MailSink, db: Database,
) -> None:
    await confirmed_for_both(client, smtp, "gone@example.org")
    erase = link(await mail_to(smtp, "gone@example.org", 3), "/erase/")
    assert (await client.post(erase)).status_code == 200
    assert await subscriptions(db, "gone@example.org") == {}
    async with db.transaction() as session:
        assert await session.scalar(select(Reader).where(Reader.email == "gone@example.org")) \
            is None


# A regimen's own pages.

async def test_the_regimen_page_and_its_links_are_the_subscriptions_own(
    client: httpx.AsyncClient, smtp: MailSink, runtime: Runtime,
) -> None:
    await client.post("/subscribe", data={"email": "neck@example.org",
                                          "regimen": OTHER_REGIMEN})
    await press_confirm(client, link(await mail_to(smtp, "neck@example.org", 1), "/confirm/"))
    page_path = link(await mail_to(smtp, "neck@example.org", 2), "/r/")
    page = await client.get(page_path)
    other, default = runtime.catalog.get(OTHER_REGIMEN), runtime.catalog.default
    assert other is not None
    assert f"<h1>{other.title}</h1>" in text_of(page)
    assert other.intro in text_of(page)
    assert default.title not in text_of(page)
    for exercise in other.exercises():
        go = await client.get(f"{page_path}/go/{exercise.slug}")
        assert go.status_code == 303
        assert go.headers["location"] == other.destination(exercise)
    # Another regimen's exercise is none of this one's.
    assert (await client.get(f"{page_path}/go/gentle-back-exercise")).status_code == 404


@pytest.fixture
async def editable(settings: Settings, db: Database, smtp: MailSink,
                   tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Path, Runtime]]:
    """The app (with its worker) on a copy of the shipped content that the test may edit,
    looked at on every request."""
    folder = shipped_content_in(tmp_path)
    async with build_runtime(settings.model_copy(update={"content_path": folder})) as runtime:
        runtime.content.check_every = 0
        async with served(runtime) as http:
            yield http, folder, runtime


async def test_a_removed_regimen_says_so_and_can_still_be_left(
    editable: tuple[httpx.AsyncClient, Path, Runtime], smtp: MailSink, db: Database,
) -> None:
    client, folder, runtime = editable
    await client.post("/subscribe", data={"email": "neck@example.org",
                                          "regimen": OTHER_REGIMEN})
    await press_confirm(client, link(await mail_to(smtp, "neck@example.org", 1), "/confirm/"))
    regimen_mail = await mail_to(smtp, "neck@example.org", 2)
    await client.post("/subscribe", data={"email": "late@example.org",
                                          "regimen": OTHER_REGIMEN})
    confirm = link(await mail_to(smtp, "late@example.org", 1), "/confirm/")
    title = runtime.catalog.get(OTHER_REGIMEN).title  # type: ignore[union-attr]

    (folder / "regimens" / f"{OTHER_REGIMEN}.yaml").unlink()

    page_path = link(regimen_mail, "/r/")
    for path in (page_path, f"{page_path}/go/lying-head-turn", confirm):
        gone = await client.get(path)
        assert gone.status_code == 410, path
        assert TEXTS.link.gone_heading in text_of(gone)
        assert gone.headers["referrer-policy"] == "no-referrer"
    as_json = await client.get(page_path, headers={"accept": "application/json"})
    assert as_json.json() == {"error": TEXTS.link.gone_heading, "detail": TEXTS.link.gone_text}
    assert (await client.post(confirm)).status_code == 410
    assert await subscriptions(db, "late@example.org") == {
        OTHER_REGIMEN: SubscriberStatus.PENDING}

    # Leaving still works, in the site's words.
    unsubscribe = path_of(regimen_mail["List-Unsubscribe"].strip("<>"))
    page = await client.get(unsubscribe)
    assert page.status_code == 200
    assert title not in text_of(page)
    assert (await client.post(unsubscribe)).status_code == 200
    assert await subscriptions(db, "neck@example.org") == {
        OTHER_REGIMEN: SubscriberStatus.UNSUBSCRIBED}

    # And nobody can sign up for it any more.
    assert (await client.get(f"/{OTHER_REGIMEN}")).status_code == 404
    refused = await client.post("/subscribe", json={"email": "new@example.org",
                                                    "regimen": OTHER_REGIMEN})
    assert refused.status_code == 422
    # The list has one regimen left: the front page is its form.
    assert hidden_regimen((await client.get("/")).text) == [DEFAULT_REGIMEN]
