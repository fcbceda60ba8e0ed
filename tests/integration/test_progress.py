"""The reader's progress on their regimen page, over HTTP: the Done buttons with and without the
page's script, "continue with", each unit's count, the author's next steps once a unit is done,
and what must never happen (a GET marking anything, another reader's link, bad input)."""

from __future__ import annotations

import html
import json
import re
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select

from service.core.content import READ_THROUGH
from service.core.database import Database
from service.core.models import Event, EventKind, Progress, Reader, SubscriberStatus, utcnow
from service.readers import privacy
from service.readers.tokens import Purpose
from service.runtime import Runtime
from service.web.regimen import AFTER_DONE
from service.web.texts import TEXTS
from tests.helpers import DEFAULT_REGIMEN, OTHER_REGIMEN, count_rows, new_subscription

WORDS = TEXTS.regimen
JSON = {"accept": "application/json"}


async def regimen_link(runtime: Runtime, email: str = "reader@example.org",
                       regimen: str = DEFAULT_REGIMEN, confirmed: bool = True) -> str:
    """The path of the regimen page of a new subscription (confirmed unless told otherwise)."""
    now = utcnow()
    reader, subscriber = new_subscription(
        email, regimen, status=SubscriberStatus.CONFIRMED if confirmed
        else SubscriberStatus.PENDING, confirmed_at=now if confirmed else None,
        created_at=now - timedelta(days=3))
    async with runtime.db.transaction() as session:
        if await session.scalar(select(Reader.id).where(Reader.email == email)) is None:
            session.add(reader)
            await session.flush()
        session.add(subscriber)
    return runtime.links.for_subscriber(Purpose.REGIMEN, subscriber).removeprefix(
        runtime.settings.base_url)


def text_of(page: httpx.Response) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", page.text))


def continue_line(page: httpx.Response) -> str:
    found = re.search(r'<p class="continue">(.*?)</p>', page.text, re.S)
    assert found is not None
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", found.group(1))).split())


def unit_counts(page: httpx.Response) -> list[str]:
    return [html.unescape(count) for count in re.findall(r'<span class="count">([^<]*)</span>',
                                                         page.text)]


def button_of(page: httpx.Response, step: str) -> tuple[str, str]:
    """A step's form on the page: the value its hidden field sends, and its button's label."""
    found = re.search(rf'action="[^"]*/done/{step}">\s*<input type="hidden" name="done" '
                      rf'value="([01])">\s*<button[^>]*>([^<]*)</button>', page.text)
    assert found is not None, step
    return found.group(1), html.unescape(found.group(2))


async def steps_done(db: Database) -> set[str]:
    async with db.transaction() as session:
        return set(await session.scalars(select(Progress.step)))


@pytest.mark.parametrize("key", [DEFAULT_REGIMEN, OTHER_REGIMEN])
async def test_a_first_visit_starts_with_reading_it_through(
    client: httpx.AsyncClient, runtime: Runtime, key: str,
) -> None:
    page = await client.get(await regimen_link(runtime, regimen=key))
    regimen = runtime.catalog.regimens[key]
    assert page.status_code == 200
    assert continue_line(page) == f"{WORDS.start_with} {WORDS.read_through}"
    assert f'href="#{READ_THROUGH}"' in page.text
    assert unit_counts(page) == [WORDS.unit_count.format(done=0, total=len(unit.exercises))
                                 for unit in regimen.units]
    # One button per step: reading it through first, then each exercise in order.
    steps = re.findall(r'action="[^"]*/done/([a-z0-9-]+)"', page.text)
    assert steps == [READ_THROUGH, *(exercise.slug for exercise in regimen.exercises())]
    assert {button_of(page, step) for step in steps} == {("1", WORDS.mark_done)}
    assert '<script src="/static/regimen.js" defer></script>' in page.text


async def test_done_without_the_script_comes_back_to_the_step_and_moves_on(
    client: httpx.AsyncClient, runtime: Runtime, db: Database,
) -> None:
    page = await regimen_link(runtime)
    pressed = await client.post(f"{page}/done/{READ_THROUGH}", data={"done": "1"})
    assert pressed.status_code == 303
    assert pressed.headers["location"] == f"{page}?{AFTER_DONE}#{READ_THROUGH}"
    assert pressed.headers["cache-control"] == "no-store"
    after = await client.get(page)
    assert continue_line(after) == f"{WORDS.continue_with} The gentle back exercise"
    assert button_of(after, READ_THROUGH) == ("0", WORDS.marked_done)

    await client.post(f"{page}/done/gentle-back-exercise", data={"done": "1"})
    after = await client.get(page)
    assert continue_line(after) == \
        f"{WORDS.continue_with} Self-appraisal: find your working side"
    assert unit_counts(after)[0] == WORDS.unit_count.format(done=1, total=5)
    assert 'id="gentle-back-exercise" class="is-done"' in after.text
    assert await steps_done(db) == {READ_THROUGH, "gentle-back-exercise"}


async def test_pressing_again_undoes_and_twice_changes_nothing_more(
    client: httpx.AsyncClient, runtime: Runtime, db: Database,
) -> None:
    page = await regimen_link(runtime)
    for _ in range(2):
        assert (await client.post(f"{page}/done/arch-and-flatten",
                                  data={"done": "1"})).status_code == 303
    assert await count_rows(db, Progress) == 1
    # The button of a step done sends done=0; a bare press (no field) toggles.
    await client.post(f"{page}/done/arch-and-flatten", data={"done": "0"})
    await client.post(f"{page}/done/arch-and-flatten", data={"done": "0"})
    assert await steps_done(db) == set()
    await client.post(f"{page}/done/arch-and-flatten")
    assert await steps_done(db) == {"arch-and-flatten"}
    await client.post(f"{page}/done/arch-and-flatten")
    assert await steps_done(db) == set()


async def test_the_script_gets_the_new_state_and_the_box_to_show(
    client: httpx.AsyncClient, runtime: Runtime,
) -> None:
    page = await regimen_link(runtime)
    await client.post(f"{page}/done/{READ_THROUGH}", data={"done": "1"})
    answer = await client.post(f"{page}/done/gentle-back-exercise", data={"done": "1"},
                               headers=JSON)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["cache-control"] == "no-store"
    state = answer.json()
    assert (state["step"], state["done"], state["button"]) == \
        ("gentle-back-exercise", True, WORDS.marked_done)
    summary = html.unescape(state["summary"])
    assert f"{WORDS.continue_with} <a href=\"#sacrum-self-appraisal\">" in summary
    assert WORDS.unit_count.format(done=1, total=5) in summary
    assert state["status"] == WORDS.status.format(
        title="The gentle back exercise", state=WORDS.state_done,
        next=f"{WORDS.continue_with} Self-appraisal: find your working side")
    # The box is the page's own, as a reload would show it.
    reloaded = await client.get(page)
    assert state["summary"].strip() in reloaded.text


async def test_unit_1_done_offers_the_authors_next_steps(
    client: httpx.AsyncClient, runtime: Runtime, db: Database,
) -> None:
    page = await regimen_link(runtime)
    unit_1 = runtime.catalog.regimens[DEFAULT_REGIMEN].units[0]
    for exercise in unit_1.exercises[:-1]:
        await client.post(f"{page}/done/{exercise.slug}", data={"done": "1"})
    heading = WORDS.next_steps.format(unit=unit_1.title)
    assert heading not in text_of(await client.get(page))
    await client.post(f"{page}/done/{unit_1.exercises[-1].slug}", data={"done": "1"})
    after = await client.get(page)
    assert heading in text_of(after)
    assert unit_counts(after)[0] == WORDS.unit_count.format(done=5, total=5)
    # Reading it through is not done yet: that is still where to go on.
    assert continue_line(after) == f"{WORDS.continue_with} {WORDS.read_through}"
    assert f'href="{page}/program/free_your_back"' in after.text
    assert 'href="https://example.com/replace-me/consultation"' in after.text

    followed = await client.get(f"{page}/program/free_your_back")
    assert followed.status_code == 303
    assert followed.headers["location"] == \
        "https://example.com/replace-me/programs/free-your-back"
    async with db.transaction() as session:
        clicks = list(await session.execute(select(Event.kind, Event.exercise)
                                            .where(Event.kind == EventKind.PROGRAM_CLICKED)))
    assert clicks == [(EventKind.PROGRAM_CLICKED, "free_your_back")]
    assert (await client.get(f"{page}/program/no-such-program")).status_code == 404


async def test_opening_pages_never_marks_anything(
    client: httpx.AsyncClient, runtime: Runtime, db: Database,
) -> None:
    """Mail scanners open every link, with GET and HEAD; only a button press changes progress."""
    page = await regimen_link(runtime)
    assert (await client.get(page)).status_code == 200
    assert (await client.head(page)).status_code == 405
    assert (await client.get(f"{page}/done/gentle-back-exercise")).status_code == 405
    assert (await client.get(f"{page}/go/gentle-back-exercise")).status_code == 303
    assert await count_rows(db, Progress) == 0


async def test_bad_presses_get_a_clear_answer_and_change_nothing(
    client: httpx.AsyncClient, runtime: Runtime, db: Database,
) -> None:
    page = await regimen_link(runtime)
    pending = await regimen_link(runtime, "pending@example.org", confirmed=False)
    token = page.rsplit("/", 1)[1]
    # A character in the middle of the signature (the last one may carry unused bits).
    middle = len(token) - 10
    tampered = f"/r/{token[:middle]}{'A' if token[middle] != 'A' else 'B'}{token[middle + 1:]}"
    answers = {
        "unknown step": await client.post(f"{page}/done/no-such-exercise"),
        "another regimen's exercise": await client.post(f"{page}/done/lying-head-turn"),
        "tampered token": await client.post(f"{tampered}/done/gentle-back-exercise"),
        "not a token": await client.post("/r/garbage/done/gentle-back-exercise"),
        "not confirmed": await client.post(f"{pending}/done/gentle-back-exercise"),
        "odd value": await client.post(f"{page}/done/gentle-back-exercise",
                                       data={"done": "yes"}),
        "odd value by script": await client.post(f"{page}/done/gentle-back-exercise",
                                                 data={"done": "2"}, headers=JSON),
    }
    assert {name: answer.status_code for name, answer in answers.items()} == {
        "unknown step": 404, "another regimen's exercise": 404, "tampered token": 400,
        "not a token": 400, "not confirmed": 404, "odd value": 400, "odd value by script": 400}
    for name, answer in answers.items():
        assert "Traceback" not in answer.text, name
    assert answers["odd value by script"].json()["error"]
    assert await count_rows(db, Progress) == 0


async def test_a_regimen_the_author_removed_says_so_when_pressed(
    client: httpx.AsyncClient, runtime: Runtime,
) -> None:
    page = await regimen_link(runtime, regimen="retired-regimen")
    answer = await client.post(f"{page}/done/gentle-back-exercise")
    assert answer.status_code == 410
    assert TEXTS.link.gone_heading in html.unescape(answer.text)


async def test_each_link_keeps_its_own_progress(
    client: httpx.AsyncClient, runtime: Runtime,
) -> None:
    """Two readers of one device (or one reader's two regimens) never share progress: the link
    is the key, and nothing is kept in the browser."""
    mine = await regimen_link(runtime, "one@example.org")
    theirs = await regimen_link(runtime, "two@example.org")
    other_regimen = await regimen_link(runtime, "one@example.org", regimen=OTHER_REGIMEN)
    pressed = await client.post(f"{mine}/done/{READ_THROUGH}")
    assert "set-cookie" not in pressed.headers
    assert continue_line(await client.get(theirs)) == \
        f"{WORDS.start_with} {WORDS.read_through}"
    assert continue_line(await client.get(other_regimen)) == \
        f"{WORDS.start_with} {WORDS.read_through}"
    assert continue_line(await client.get(mine)) == \
        f"{WORDS.continue_with} The gentle back exercise"


async def test_progress_is_exported_and_erased_with_the_reader(
    client: httpx.AsyncClient, runtime: Runtime, db: Database,
) -> None:
    page = await regimen_link(runtime)
    await client.post(f"{page}/done/{READ_THROUGH}")
    await client.post(f"{page}/done/lying-twist")
    async with db.transaction() as session:
        held = await privacy.export(session, "reader@example.org")
    assert held is not None
    [subscription] = held["subscriptions"]
    assert {step["step"] for step in subscription["progress"]} == {READ_THROUGH, "lying-twist"}
    assert all(step["done_at"] for step in subscription["progress"])
    json.dumps(held)  # plain JSON-ready data
    async with db.transaction() as session:
        await privacy.erase(session, "reader@example.org", runtime.settings.secret_keys[0],
                            utcnow())
    assert await count_rows(db, Progress) == 0


async def test_the_page_after_a_press_is_not_another_opening(
    client: httpx.AsyncClient, runtime: Runtime, db: Database,
) -> None:
    """Without the script each press comes back to the page: the reader never left it, so the
    author's count of regimen openings does not grow with every press."""
    page = await regimen_link(runtime)

    async def openings() -> int:
        async with db.transaction() as session:
            return len(list(await session.scalars(
                select(Event.id).where(Event.kind == EventKind.REGIMEN_OPENED))))

    await client.get(page)
    assert await openings() == 1
    for step in (READ_THROUGH, "gentle-back-exercise", "sacrum-self-appraisal"):
        pressed = await client.post(f"{page}/done/{step}")
        assert (await client.get(pressed.headers["location"].split("#")[0])).status_code == 200
    assert await openings() == 1
