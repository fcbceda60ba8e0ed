"""The reader's whole journey in real Chromium: from the blog post on another origin (with
JavaScript on, and off), through both mails, to the video and the shop page an exercise leads
to."""

from __future__ import annotations

from playwright.sync_api import Browser, Page, expect
from sqlalchemy import select

from service.core.models import Consent, Event, Subscriber
from service.readers.tokens import Purpose
from service.runtime import Runtime
from service.web.texts import TEXTS
from tests.browser.conftest import World, mail_link, open_tab, unexpected

MISTYPED = "reader@example"  # a browser accepts it; the service explains what is wrong


def recorded(world: World, address: str) -> tuple[list[str | None], list[tuple[str, str | None]]]:
    """The consent's source URLs and the counted events of one reader, oldest first."""

    async def read(runtime: Runtime) -> tuple[list[str | None], list[tuple[str, str | None]]]:
        async with runtime.db.transaction() as session:
            reader = await session.scalar(select(Subscriber).where(Subscriber.email == address))
            assert reader is not None
            sources = await session.scalars(select(Consent.source_url)
                                            .where(Consent.subscriber_id == reader.id))
            events = await session.execute(select(Event.kind, Event.exercise)
                                           .where(Event.subscriber_id == reader.id)
                                           .order_by(Event.id))
            return list(sources), [(kind.value, exercise) for kind, exercise in events]

    return world.app.call(read)


def same_holder(world: World, *urls: str) -> bool:
    tokens = world.app.runtime.tokens
    base = world.base_url + "/r/"
    # The link shown after the button carries ?via=page (service.web.links.VIA_PAGE).
    return len({tokens.read(Purpose.REGIMEN, url.removeprefix(base).split("?")[0])
                for url in urls}) == 1


def submit(page: Page, address: str) -> None:
    page.get_by_label(TEXTS.form.label).fill(address)
    page.get_by_role("button", name=TEXTS.form.button).click()


def confirm_and_follow_exercises(page: Page, world: World, address: str) -> None:
    """From the confirmation mail to the pages the exercises lead to, as the reader clicks."""
    page.goto(mail_link(world, address, "/confirm/"))
    expect(page.get_by_role("heading", level=1)).to_have_text(TEXTS.confirm.heading)
    page.get_by_role("button", name=TEXTS.confirm.button).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(TEXTS.confirmed.heading)
    regimen_url = mail_link(world, address, "/r/", count=2)
    shown = page.get_by_role("link", name=TEXTS.confirmed.button).get_attribute("href")
    # The same reader's regimen link; the two may be signed in different seconds.
    assert shown is not None
    assert same_holder(world, shown, regimen_url)

    page.goto(regimen_url)
    regimen = world.app.runtime.regimen
    exercises = regimen.exercises()
    expect(page.get_by_role("heading", level=1)).to_have_text(regimen.title)
    expect(page.locator(".unit").first.locator(".badge")).to_have_text(
        TEXTS.regimen.start_here_free)
    items = page.locator(".exercises > li")
    expect(items).to_have_count(len(exercises))
    for number, (item, exercise) in enumerate(zip(items.all(), exercises, strict=True), 1):
        expect(item.locator(".number")).to_have_text(str(number))
        expect(item.get_by_role("heading", level=3)).to_have_text(exercise.title)
        expect(item.get_by_role("link")).to_have_count(1)

    free = exercises[0]
    paid = next(exercise for exercise in exercises if not exercise.is_free)
    assert free.slug == "gentle-back-exercise"
    assert paid.program is not None
    page.get_by_role("link", name=TEXTS.regimen.watch).first.click()
    expect(page).to_have_url(regimen.destination(free))
    page.goto(regimen_url)
    program = regimen.programs[paid.program].name
    page.get_by_role("link", name=TEXTS.regimen.buy.format(program=program)).first.click()
    expect(page).to_have_url(regimen.destination(paid))

    sources, events = recorded(world, address)
    assert sources == [world.post_url]
    assert events == [("confirm_page_opened", None), ("regimen_opened", None),
                      ("exercise_clicked", free.slug), ("regimen_opened", None),
                      ("exercise_clicked", paid.slug)]


def test_with_javascript_the_reader_never_leaves_the_post(browser: Browser, world: World) -> None:
    context, tab = open_tab(browser)
    page = tab.page
    page.goto(world.post_url)
    submit(page, MISTYPED)
    expect(page.get_by_role("alert")).to_contain_text("doesn't look like an email address")
    submit(page, "js-reader@example.org")
    sent = page.get_by_role("status")
    expect(sent).to_be_visible()
    expect(sent).to_contain_text(TEXTS.form.sent_heading)
    expect(page.locator("form.regimen-signup")).to_be_hidden()
    assert page.url == world.post_url  # sent with fetch: no navigation, not even a fragment

    confirm_and_follow_exercises(page, world, "js-reader@example.org")
    assert unexpected(tab.errors) == []
    context.close()


def test_without_javascript_the_form_comes_back_to_the_post(
    browser: Browser, world: World,
) -> None:
    context, tab = open_tab(browser, javascript=False)
    page = tab.page
    page.goto(world.post_url)
    submit(page, MISTYPED)
    # The service's own page explains, with the form again; it still knows the post.
    expect(page).to_have_url(world.base_url + "/subscribe")
    expect(page.get_by_role("alert")).to_contain_text("doesn't look like an email address")
    submit(page, "plain-reader@example.org")
    expect(page).to_have_url(world.post_url + "#regimen-signup-sent")
    expect(page.locator("#regimen-signup-sent")).to_be_visible()
    expect(page.locator("#regimen-signup-sent")).to_contain_text(TEXTS.form.sent_heading)
    expect(page.locator("form.regimen-signup")).to_be_hidden()

    confirm_and_follow_exercises(page, world, "plain-reader@example.org")
    assert unexpected(tab.errors) == []
    context.close()
