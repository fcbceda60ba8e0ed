"""Every page a reader (or the author) can meet, at phone and desktop width, light and dark:
a screenshot of each (into docs/screenshots/ with `make screenshots`), and axe-core finds no
serious or critical accessibility problem on any of them.

The tour's reader signs up on the blog post (whose snippet names no regimen: the default one),
then for the second shipped regimen on its hosted form, and confirms both with one button; on
their regimen page they mark exercises done, half way through Unit 1 and then all of it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from playwright.sync_api import Browser, Page, expect

from service.abuse.bots import MIN_FILL_SECONDS
from service.core.content import READ_THROUGH
from service.readers.tokens import Purpose
from service.web.texts import ERROR_TEXT, TEXTS, titles
from tests.browser.conftest import (
    World,
    axe_violations,
    mail_link,
    open_tab,
    regimen_mail_link,
    unexpected,
)
from tests.helpers import DEFAULT_REGIMEN, OTHER_REGIMEN, token_signed_at

AUTHORS_POST = "https://yourblog.blogspot.com/2014/01/your-post.html"
VARIANTS = {
    "phone": {"phone": True},
    "desktop": {"phone": False},
    "phone-dark": {"phone": True, "dark": True},
    "desktop-dark": {"phone": False, "dark": True},
}


def heading(page: Page, text: str) -> None:
    expect(page.get_by_role("heading", level=1)).to_have_text(text)


def mark_done(page: Page, step: str) -> None:
    """Press a step's Done button; the page's script updates it in place."""
    button = page.locator(f"li[id='{step}']").get_by_role("button")
    expect(button).to_have_text(TEXTS.regimen.mark_done)
    button.click()
    expect(button).to_have_text(TEXTS.regimen.marked_done)


def tour(page: Page, world: World, address: str) -> Iterator[str]:
    """Walk through every page, yielding each one's name while it is on screen."""
    base = world.base_url
    runtime = world.app.runtime
    default, other = runtime.catalog.get(DEFAULT_REGIMEN), runtime.catalog.get(OTHER_REGIMEN)
    assert default is not None
    assert other is not None
    page.goto(world.post_url)
    yield "blog-post"
    page.get_by_label(TEXTS.form.label).fill(address)
    page.get_by_role("button", name=TEXTS.form.button).click()
    expect(page.get_by_role("status")).to_be_visible()
    yield "blog-post-sent"

    page.goto(base + "/")
    heading(page, TEXTS.listing.heading.format(author=default.author))
    expect(page.get_by_role("heading", level=2)).to_have_text(
        [regimen.title for regimen in runtime.catalog.regimens.values()])
    yield "regimens"
    page.get_by_role("link", name=TEXTS.listing.button).nth(
        runtime.catalog.keys().index(DEFAULT_REGIMEN)).click()
    expect(page).to_have_url(f"{base}/{DEFAULT_REGIMEN}")
    heading(page, default.title)
    yield "signup"
    page.get_by_label(TEXTS.form.label).fill("reader@example")
    page.get_by_role("button", name=TEXTS.form.button).click()
    expect(page.get_by_role("alert")).to_be_visible()
    yield "signup-error"
    page.goto(base + "/check-inbox")
    heading(page, TEXTS.check_inbox.heading)
    yield "check-inbox"

    confirm_url = mail_link(world, address, "/confirm/")
    page.goto(confirm_url)
    heading(page, TEXTS.confirm.heading)
    expect(page.locator(".kicker")).to_have_text(default.title)
    yield "confirm"

    # The second regimen, on its own hosted form, before pressing the first one's button.
    page.goto(f"{base}/{OTHER_REGIMEN}")
    heading(page, other.title)
    yield "signup-neck-and-shoulders"
    page.get_by_label(TEXTS.form.label).fill(address)
    # As long as a person takes to type: a form sent back sooner is a bot's (whole seconds).
    page.wait_for_timeout((MIN_FILL_SECONDS + 1) * 1000)
    page.get_by_role("button", name=TEXTS.form.button).click()
    heading(page, TEXTS.check_inbox.heading)
    # No second confirmation mail within REGIMEN_MAILS_PER_ADDRESS (one per 5 minutes, whatever
    # the regimen): the first mail's button confirms this one too, and its page says so.
    page.goto(confirm_url)
    expect(page.locator(".also")).to_have_text(TEXTS.confirm.also.format(
        titles=titles([other.title])))
    yield "confirm-another-waiting"
    page.get_by_role("button", name=TEXTS.confirm.button).click()
    heading(page, TEXTS.confirmed.heading)
    expect(page.locator("a.button")).to_have_text(
        [TEXTS.confirmed.button_each.format(title=regimen.title) for regimen in (default, other)])
    yield "confirmed"
    page.goto(regimen_mail_link(world, address, default.title, "/r/", count=3))
    heading(page, default.title)
    yield "regimen"
    page.emulate_media(media="print")
    # On paper a link cannot be clicked: each action prints where it leads.
    first = default.exercises()[0]
    printed = page.locator(".action").first.evaluate("a => getComputedStyle(a, '::after').content")
    assert default.destination(first) in printed
    yield "regimen-print"
    page.emulate_media(media="screen")
    # Read through, and two of Unit 1's exercises done: the page shows where to go on.
    unit_1 = default.units[0]
    for step in [READ_THROUGH, *(exercise.slug for exercise in unit_1.exercises[:2])]:
        mark_done(page, step)
    expect(page.locator("#progress .continue")).to_have_text(
        f"{TEXTS.regimen.continue_with} {unit_1.exercises[2].title}")
    expect(page.locator("#progress .count").first).to_have_text(
        TEXTS.regimen.unit_count.format(done=2, total=len(unit_1.exercises)))
    yield "regimen-half-done"
    for exercise in unit_1.exercises[2:]:
        mark_done(page, exercise.slug)
    # As the reader finds it when they come back: with the author's next steps.
    page.reload()
    offered = page.locator("#progress .next-steps")
    expect(offered.get_by_role("heading")).to_have_text(
        TEXTS.regimen.next_steps.format(unit=unit_1.title))
    expect(offered.get_by_role("link")).to_have_text([step.title for step in unit_1.next_steps])
    yield "regimen-unit-1-done"
    # On paper, each next step writes out where it leads too.
    page.emulate_media(media="print")
    for link, step in zip(offered.get_by_role("link").all(), unit_1.next_steps, strict=True):
        printed = link.evaluate("a => getComputedStyle(a, '::after').content")
        assert (default.programs[step.program].url if step.program else str(step.url)) in printed
    page.emulate_media(media="screen")
    page.goto(regimen_mail_link(world, address, default.title, "/unsubscribe/", count=3))
    heading(page, TEXTS.unsubscribe.heading)
    expect(page.get_by_role("button")).to_have_text(
        [TEXTS.unsubscribe.button, TEXTS.unsubscribe.everything_button])
    yield "unsubscribe"
    page.get_by_role("button", name=TEXTS.unsubscribe.button).click()
    heading(page, TEXTS.unsubscribed.heading)
    yield "unsubscribed"
    # The regimen mail's "delete my data" link, last: afterwards the reader is gone.
    page.goto(regimen_mail_link(world, address, default.title, "/erase/", count=3))
    heading(page, TEXTS.erase.heading.format(author=runtime.regimen.author))
    yield "erase"
    page.get_by_role("button", name=TEXTS.erase.button).click()
    heading(page, TEXTS.erase.done_heading)
    yield "erased"

    claims = runtime.tokens.read(Purpose.CONFIRM, confirm_url.rsplit("/", 1)[1])
    old = token_signed_at(runtime.settings.secret_keys[0], Purpose.CONFIRM, claims,
                          datetime.now(UTC) - timedelta(days=8))
    page.goto(f"{base}/confirm/{old}")
    heading(page, TEXTS.expired.heading)
    yield "link-expired"
    page.goto(base + "/r/not-a-valid-link")
    heading(page, TEXTS.link.invalid_heading)
    yield "link-invalid"
    for path, status, name in [("/no-such-page", 404, "not-found"),
                               ("/_test/too-many", 429, "too-many-requests"),
                               ("/_test/crash", 500, "server-error")]:
        page.goto(base + path)
        heading(page, ERROR_TEXT[status][0])
        yield name
    # An address of the kind an author has (the real post's would put a random port on screen).
    page.goto(f"{base}/embed?source={quote(AUTHORS_POST)}")
    heading(page, TEXTS.author.heading)
    yield "author-embed"


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_page_reads_well_and_passes_axe(
    browser: Browser, world: World, variant: str, screenshots: Path,
) -> None:
    options: dict[str, Any] = VARIANTS[variant]
    context, tab = open_tab(browser, **options)
    problems: dict[str, list[str]] = {}
    seen = []
    for name in tour(tab.page, world, f"tour-{variant}@example.org"):
        seen.append(name)
        # Off every button: a hover left from the last click would make screenshots differ.
        tab.page.mouse.move(0, 0)
        tab.page.screenshot(path=screenshots / f"{name}-{variant}.png", full_page=True)
        problems[name] = axe_violations(tab.page)
    context.close()
    assert len(seen) == 24
    assert {name: found for name, found in problems.items() if found} == {}
    assert unexpected(tab.errors) == []
