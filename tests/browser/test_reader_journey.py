"""The reader's whole journey in real Chromium: from the blog post on another origin (with
JavaScript on, and off), through both mails, to the video and the shop page an exercise leads
to; then back to the regimen page over the following weeks, marking exercises done until Unit 1
is, and the author's next steps show."""

from __future__ import annotations

import re

from playwright.sync_api import Browser, BrowserContext, Page, expect
from sqlalchemy import select

from service.core.content import READ_THROUGH, Exercise, Regimen
from service.core.models import Consent, Event, Progress, Subscriber, SubscriberStatus, utcnow
from service.readers.tokens import Purpose
from service.runtime import Runtime
from service.web.regimen import AFTER_DONE
from service.web.texts import TEXTS
from tests.browser.conftest import World, mail_link, open_tab, unexpected
from tests.helpers import DEFAULT_REGIMEN, new_subscription

MISTYPED = "reader@example"  # a browser accepts it; the service explains what is wrong
WORDS = TEXTS.regimen


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
    # Reading it through comes first, as its own list before Unit 1; then the exercises.
    first_step = page.locator(".first-step > li")
    expect(first_step).to_have_count(1)
    expect(page.locator("ol.first-step + section.unit")).to_have_count(1)
    expect(first_step.get_by_role("heading", level=2)).to_have_text(WORDS.read_through)
    expect(first_step.get_by_role("button")).to_have_text(WORDS.mark_done)
    items = page.locator(".unit .exercises > li")
    expect(items).to_have_count(len(exercises))
    for number, (item, exercise) in enumerate(zip(items.all(), exercises, strict=True), 1):
        expect(item.locator(".number")).to_have_text(str(number))
        expect(item.get_by_role("heading", level=3)).to_have_text(exercise.title)
        expect(item.get_by_role("link")).to_have_count(1)
        expect(item.get_by_role("button")).to_have_text(WORDS.mark_done)

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


def shows_standing(page: Page, regimen: Regimen, following: Exercise | None,
                   done: list[int], lead: str = WORDS.continue_with) -> None:
    """The progress box at the top: the step to go on with (None: reading it through), linked
    to its place on the page, and each unit's count."""
    step, title = (READ_THROUGH, WORDS.read_through) if following is None else \
        (following.slug, following.title)
    box = page.locator("#progress")
    expect(box.locator(".continue")).to_have_text(f"{lead} {title}")
    expect(box.locator(".continue").get_by_role("link")).to_have_attribute("href", f"#{step}")
    expect(box.locator(".count")).to_have_text(
        [WORDS.unit_count.format(done=count, total=len(unit.exercises))
         for count, unit in zip(done, regimen.units, strict=True)])


def press(page: Page, step: str, title: str, following: Exercise, *, javascript: bool,
          done: bool = True) -> None:
    """Press a step's button as the reader does (marking it done, or, `done=False`, undoing
    it), and see the page answer."""
    item = page.locator(f"li[id='{step}']")
    button = item.get_by_role("button")
    expect(button).to_have_text(WORDS.mark_done if done else WORDS.marked_done)
    before = page.url
    if javascript:
        page.evaluate("() => { window.stillHere = true; }")
    button.click()
    expect(button).to_have_text(WORDS.marked_done if done else WORDS.mark_done)
    if done:
        expect(item).to_have_class(re.compile(r"\bis-done\b"))
    else:
        expect(item).not_to_have_class(re.compile(r"\bis-done\b"))
    if javascript:
        # Sent with fetch: the page says what changed, for screen readers too, and stays put
        # (no navigation, not even to a fragment).
        expect(page.get_by_role("status")).to_have_text(WORDS.status.format(
            title=title, state=WORDS.state_done if done else WORDS.state_not_done,
            next=f"{WORDS.continue_with} {following.title}"))
        assert page.url == before
        assert page.evaluate("() => window.stillHere") is True
    else:
        # A plain form: the service answers with the page again, at that step.
        expect(page).to_have_url(f"{before.split('#')[0].split('?')[0]}?{AFTER_DONE}#{step}")
        expect(item).to_be_in_viewport()


def steps_done(world: World, address: str) -> set[str]:
    """The steps the reader's subscription to the default regimen has marked done."""

    async def read(runtime: Runtime) -> set[str]:
        async with runtime.db.transaction() as session:
            reader = await session.scalar(select(Subscriber.id).where(
                Subscriber.email == address, Subscriber.regimen == DEFAULT_REGIMEN))
            assert reader is not None
            return set(await session.scalars(select(Progress.step)
                                             .where(Progress.subscriber_id == reader)))

    return world.app.call(read)


def another_readers_link(world: World, address: str) -> str:
    """The regimen link of another reader, confirmed a moment ago (set straight in the
    database: their own signup is not what is being tested)."""

    async def add(runtime: Runtime) -> str:
        now = utcnow()
        reader, subscriber = new_subscription(address, status=SubscriberStatus.CONFIRMED,
                                              confirmed_at=now, created_at=now)
        async with runtime.db.transaction() as session:
            session.add(reader)
            await session.flush()
            session.add(subscriber)
        return runtime.links.for_subscriber(Purpose.REGIMEN, subscriber)

    return world.app.call(add)


def keep_progress(page: Page, context: BrowserContext, world: World, address: str, *,
                  javascript: bool) -> None:
    """Back on the regimen page over the following weeks: reading it through, then Unit 1's
    exercises marked done (one of them undone on the way), until the author's next steps show;
    all of it kept with the link, none of it in the browser."""
    regimen_url = mail_link(world, address, "/r/", count=2)
    regimen = world.app.runtime.regimen
    unit_1, unit_2 = regimen.units[0], regimen.units[1]
    first, second, third = unit_1.exercises[:3]
    page.goto(regimen_url)
    shows_standing(page, regimen, None, [0, 0, 0], lead=WORDS.start_with)
    expect(page.locator(".is-done")).to_have_count(0)
    expect(page.locator(".next-steps")).to_have_count(0)

    press(page, READ_THROUGH, WORDS.read_through, first, javascript=javascript)
    shows_standing(page, regimen, first, [0, 0, 0])
    press(page, first.slug, first.title, second, javascript=javascript)
    press(page, second.slug, second.title, third, javascript=javascript)
    shows_standing(page, regimen, third, [2, 0, 0])

    # The mail's link again, days later: the page knows where the reader is.
    page.goto(regimen_url)
    shows_standing(page, regimen, third, [2, 0, 0])
    done = page.locator(".exercises > li.is-done")
    expect(done).to_have_count(3)
    assert [item.get_attribute("id") for item in done.all()] == \
        [READ_THROUGH, first.slug, second.slug]
    expect(done.get_by_role("button")).to_have_text([WORDS.marked_done] * 3)
    page.locator("#progress .continue").get_by_role("link").click()
    expect(page.locator(f"li[id='{third.slug}']")).to_be_in_viewport()

    # Pressed again, a button undoes: that exercise is where to go on again.
    press(page, second.slug, second.title, second, javascript=javascript, done=False)
    shows_standing(page, regimen, second, [1, 0, 0])

    # The rest of Unit 1, in order: its last one brings the author's next steps.
    rest = unit_1.exercises[1:]
    for exercise, following in zip(rest, [*rest[1:], unit_2.exercises[0]], strict=True):
        expect(page.locator(".next-steps")).to_have_count(0)
        press(page, exercise.slug, exercise.title, following, javascript=javascript)
    for _ in ("as pressed", "after a reload"):
        shows_standing(page, regimen, unit_2.exercises[0], [len(unit_1.exercises), 0, 0])
        expect(page.locator("#progress .unit-progress > li")).to_have_class(
            ["is-done", "", ""])
        offered = page.locator("#progress .next-steps")
        expect(offered.get_by_role("heading")).to_have_text(
            WORDS.next_steps.format(unit=unit_1.title))
        links = offered.get_by_role("link")
        expect(links).to_have_text([step.title for step in unit_1.next_steps])
        own = page.url.split("#")[0].split("?")[0].removeprefix(world.base_url)
        for link, step in zip(links.all(), unit_1.next_steps, strict=True):
            expect(link).to_have_attribute(
                "href", f"{own}/program/{step.program}" if step.program else str(step.url))
        page.goto(regimen_url)
    assert steps_done(world, address) == {READ_THROUGH, *(e.slug for e in unit_1.exercises)}

    program = next(step.program for step in unit_1.next_steps if step.program)
    page.get_by_role("link", name=next(step.title for step in unit_1.next_steps
                                       if step.program)).click()
    expect(page).to_have_url(regimen.programs[program].url)
    assert recorded(world, address)[1][-1] == ("program_clicked", program)

    # Nothing of it in the browser: no cookie, no storage that the next reader of this device
    # would inherit; and another reader's link, opened here, starts at the beginning.
    assert context.cookies() == []
    assert context.storage_state()["origins"] == []
    page.goto(another_readers_link(world, f"next-{address}"))
    shows_standing(page, regimen, None, [0, 0, 0], lead=WORDS.start_with)
    expect(page.locator(".is-done")).to_have_count(0)
    expect(page.locator(".next-steps")).to_have_count(0)
    expect(page.get_by_role("button", name=WORDS.marked_done)).to_have_count(0)


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
    keep_progress(page, context, world, "js-reader@example.org", javascript=True)
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
    keep_progress(page, context, world, "plain-reader@example.org", javascript=False)
    assert unexpected(tab.errors) == []
    context.close()
