"""The reader's whole journey through the HTTP routes, with real mail and a real database."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
from sqlalchemy import func, select

from service.core.database import Database
from service.core.models import (
    Consent,
    Event,
    EventKind,
    MailKind,
    OutboxMessage,
    Subscriber,
    SubscriberStatus,
)
from service.core.settings import Settings
from service.readers.tokens import Purpose
from service.runtime import Runtime, build_runtime
from tests.helpers import (
    DEFAULT_REGIMEN,
    MailSink,
    links_in,
    path_of,
    served,
    shipped_content_in,
)

BLOG_POST = "https://blog.example/2014/sacro-iliac-joint-pain.html"


async def subscriber(db: Database, email: str) -> Subscriber:
    async with db.transaction() as session:
        found = await session.scalar(select(Subscriber).where(Subscriber.email == email))
    assert found is not None
    return found


async def queued_kinds(db: Database) -> list[MailKind]:
    async with db.transaction() as session:
        rows = await session.scalars(select(OutboxMessage.kind).order_by(OutboxMessage.id))
        return list(rows)


def exercise_links(page: str) -> list[tuple[str, str]]:
    """(slug, href) of each exercise on the regimen page, in page order."""
    return re.findall(r'<li value="\d+" id="([a-z0-9-]+)">.*?<a class="action \w+" href="([^"]+)"',
                      page, flags=re.S)


def same_reader(runtime: Runtime, *regimen_links: str) -> bool:
    """Links to one reader's regimen; signed in different seconds, they differ as text."""
    tokens = {path_of(link).removeprefix("/r/").split("?")[0] for link in regimen_links}
    return len({runtime.tokens.read(Purpose.REGIMEN, token) for token in tokens}) == 1


async def counted(db: Database) -> list[tuple[EventKind, str | None]]:
    async with db.transaction() as session:
        rows = await session.execute(select(Event.kind, Event.exercise).order_by(Event.id))
        return [(kind, exercise) for kind, exercise in rows]


async def test_whole_journey(
    client: httpx.AsyncClient, smtp: MailSink, db: Database, runtime: Runtime,
) -> None:
    answer = await client.post("/subscribe", data={"email": "Reader@Example.ORG",
                                                   "source": BLOG_POST})
    assert answer.status_code == 303
    assert answer.headers["location"] == "/check-inbox"
    assert "Check your inbox" in (await client.get("/check-inbox")).text

    [confirmation] = await smtp.wait_for(1)
    assert confirmation["To"] == "reader@example.org"
    assert "List-Unsubscribe" not in confirmation
    [confirm_url] = [url for url in links_in(confirmation) if "/confirm/" in url]
    html_part = confirmation.get_body(("html",))
    assert html_part is not None
    assert confirm_url in html_part.get_content()

    # Opening the link (as a mail scanner would) confirms nothing and queues nothing.
    page = await client.get(path_of(confirm_url))
    assert page.status_code == 200
    assert "Yes, send me the regimen" in page.text
    assert (await subscriber(db, "reader@example.org")).status is SubscriberStatus.PENDING
    assert await queued_kinds(db) == [MailKind.CONFIRM]

    confirmed = await client.post(path_of(confirm_url), headers={"user-agent": "ReaderPhone/1"})
    assert confirmed.status_code == 200
    [regimen_link] = re.findall(r'href="(https://regimen\.test/r/[^"]+)"', confirmed.text)
    reader = await subscriber(db, "reader@example.org")
    assert reader.status is SubscriberStatus.CONFIRMED

    async with db.transaction() as session:
        consent = await session.scalar(select(Consent).where(Consent.subscriber_id == reader.id))
    assert consent is not None
    assert consent.source_url == BLOG_POST
    assert consent.confirmed_at is not None
    assert consent.confirm_ip == "127.0.0.1"
    assert consent.confirm_user_agent == "ReaderPhone/1"

    # A second press shows the same success and sends nothing more.
    again = await client.post(path_of(confirm_url))
    assert again.status_code == 200
    [again_link] = re.findall(r'href="(https://regimen\.test/r/[^"]+)"', again.text)
    assert same_reader(runtime, regimen_link, again_link)
    assert await queued_kinds(db) == [MailKind.CONFIRM, MailKind.REGIMEN]

    _, regimen_mail = await smtp.wait_for(2)
    [mailed_link] = [url for url in links_in(regimen_mail) if "/r/" in url]
    assert same_reader(runtime, regimen_link, mailed_link)
    # The page's link is told apart from the mail's, which scanners open (service.funnel.events).
    assert regimen_link.endswith("?via=page")
    assert "?" not in mailed_link
    unsubscribe_header = regimen_mail["List-Unsubscribe"]
    assert re.fullmatch(r"<https://regimen\.test/unsubscribe/[^>]+>", unsubscribe_header)
    assert regimen_mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

    page = await client.get(path_of(regimen_link))
    assert page.status_code == 200
    # Seconds after the regimen mail left, yet counted: the page's link is no scanner's.
    assert (await subscriber(db, "reader@example.org")).regimen_opened_at is not None
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "noindex" in page.headers["x-robots-tag"]
    # Each exercise's link goes through the click counter to its video or purchase page.
    regimen_path = path_of(regimen_link).removesuffix("?via=page")
    slugs = [e.slug for e in runtime.regimen.exercises()]
    assert exercise_links(page.text) == [(slug, f"{regimen_path}/go/{slug}") for slug in slugs]
    assert slugs[0] == "gentle-back-exercise"
    for exercise in runtime.regimen.exercises():
        go = await client.get(f"{regimen_path}/go/{exercise.slug}")
        assert go.status_code == 303
        assert go.headers["location"] == runtime.regimen.destination(exercise)
        assert go.headers["referrer-policy"] == "no-referrer"
    assert await counted(db) == [
        (EventKind.CONFIRM_PAGE_OPENED, None),
        (EventKind.REGIMEN_OPENED, None),
        *((EventKind.EXERCISE_CLICKED, slug) for slug in slugs),
    ]

    # Scanners probe the unsubscribe address with HEAD: answered like GET, changing nothing.
    unsubscribe_url = unsubscribe_header.strip("<>")
    probed = await client.head(path_of(unsubscribe_url))
    assert probed.status_code == 200
    assert probed.headers["content-type"].startswith("text/html")
    assert (await subscriber(db, "reader@example.org")).status is SubscriberStatus.CONFIRMED

    # RFC 8058 one-click: a bare POST, no cookies, answered without a redirect.
    one_click = await client.post(
        path_of(unsubscribe_url), content="List-Unsubscribe=One-Click",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert one_click.status_code == 200
    assert (await subscriber(db, "reader@example.org")).status is SubscriberStatus.UNSUBSCRIBED
    assert len(smtp.messages) == 2
    # The regimen link keeps working: unsubscribing stops mail, not access.
    assert (await client.get(path_of(regimen_link))).status_code == 200


async def test_json_signup_is_accepted_and_mailed(
    client: httpx.AsyncClient, smtp: MailSink,
) -> None:
    answer = await client.post("/subscribe", json={"email": "json@example.org"})
    assert answer.status_code == 202
    assert answer.json()["status"] == "accepted"
    [mail] = await smtp.wait_for(1)
    assert mail["To"] == "json@example.org"


async def put_in_state(client: httpx.AsyncClient, smtp: MailSink, email: str,
                       state: SubscriberStatus) -> None:
    """Walk an address into `state` through the routes, as a reader would."""
    before = len(smtp.messages)
    await client.post("/subscribe", data={"email": email})
    confirmation = (await smtp.wait_for(before + 1))[-1]
    confirm_url = next(url for url in links_in(confirmation) if "/confirm/" in url)
    if state is SubscriberStatus.PENDING:
        return
    await client.post(path_of(confirm_url))
    regimen_mail = (await smtp.wait_for(before + 2))[-1]
    if state is SubscriberStatus.UNSUBSCRIBED:
        await client.post(path_of(regimen_mail["List-Unsubscribe"].strip("<>")))


def comparable(response: httpx.Response) -> tuple[int, tuple[tuple[str, str], ...], bytes]:
    # The date and the request id (service.core.logs) differ for every response, whoever asks.
    headers = tuple(sorted((k, v) for k, v in response.headers.items()
                           if k not in ("date", "x-request-id")))
    return response.status_code, headers, response.content


async def test_same_answer_for_every_state(
    client: httpx.AsyncClient, smtp: MailSink, db: Database,
) -> None:
    for state in (SubscriberStatus.PENDING, SubscriberStatus.CONFIRMED,
                  SubscriberStatus.UNSUBSCRIBED):
        await put_in_state(client, smtp, f"{state.value}@example.org", state)
    addresses = ["new@example.org", "pending@example.org", "confirmed@example.org",
                 "unsubscribed@example.org"]
    async with db.transaction() as session:
        before = await session.scalar(select(func.max(OutboxMessage.id)))

    form_answers = {comparable(await client.post("/subscribe", data={"email": a}))
                    for a in addresses}
    json_answers = {comparable(await client.post("/subscribe", json={"email": a}))
                    for a in addresses}
    assert len(form_answers) == 1
    assert len(json_answers) == 1

    async with db.transaction() as session:
        rows = (await session.execute(
            select(Subscriber.email, OutboxMessage.kind)
            .join(Subscriber, Subscriber.id == OutboxMessage.subscriber_id)
            .where(OutboxMessage.id > before).order_by(OutboxMessage.id)
        )).all()
    kinds = dict(rows)
    # Each address asked twice (form, JSON); what is queued depends on its state.
    assert len(rows) == 8
    assert kinds == {
        "new@example.org": MailKind.CONFIRM,
        "pending@example.org": MailKind.CONFIRM,
        "confirmed@example.org": MailKind.REGIMEN,
        "unsubscribed@example.org": MailKind.CONFIRM,
    }
    assert (await subscriber(db, "unsubscribed@example.org")).status is SubscriberStatus.PENDING


async def test_an_edited_regimen_is_served_and_mailed_without_a_restart(
    settings: Settings, smtp: MailSink, db: Database, tmp_path: Path,
) -> None:
    folder = shipped_content_in(tmp_path)
    content = folder / "regimens" / f"{DEFAULT_REGIMEN}.yaml"
    shipped = content.read_text()
    async with build_runtime(settings.model_copy(update={"content_path": folder})) as runtime:
        runtime.content.check_every = 0  # look at every request, instead of once a second
        async with served(runtime) as client:
            content.write_text(shipped.replace("The gentle back exercise",
                                               "The gentle back exercise, edited"))
            assert (await client.post("/subscribe", data={"email": "edit@example.org"})
                    ).status_code == 303
            [confirm_mail] = await smtp.wait_for(1)
            confirm = path_of(links_in(confirm_mail)[0])
            await client.post(confirm)
            [_, regimen_mail] = await smtp.wait_for(2)
            assert "The gentle back exercise, edited" in regimen_mail.get_body(
                ("plain",)).get_content()
            regimen = path_of(next(link for link in links_in(regimen_mail) if "/r/" in link))
            assert "The gentle back exercise, edited" in (await client.get(regimen)).text
            # A broken edit: the page keeps its content instead of failing.
            content.write_text(shipped.replace("units:", "unitz:"))
            page = await client.get(regimen)
            assert page.status_code == 200
            assert "The gentle back exercise, edited" in page.text
