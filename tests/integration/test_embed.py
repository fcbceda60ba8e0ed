"""The blog form: back to the post after a form post (only to the author's blogs), the honeypot,
the JavaScript path's CORS, embed.js and the author's page."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from service.core.content import load_content
from service.core.database import Database
from service.core.lessons import promise
from service.core.models import Subscriber
from service.core.settings import Settings
from service.runtime import build_runtime
from service.web.embed import EMBED_JS, snippet
from service.web.texts import TEXTS
from tests.helpers import (
    BASE_URL,
    DEFAULT_REGIMEN,
    OTHER_REGIMEN,
    PROJECT_ROOT,
    MailSink,
    app_client,
    count_rows,
    served,
    shipped_single_file,
)

BLOG = "https://blog.example"
POST = f"{BLOG}/2014/01/sacro-iliac-joint-pain.html"


@pytest.fixture
async def blog_client(settings: Settings, db: Database, smtp: MailSink,
                      ) -> AsyncIterator[httpx.AsyncClient]:
    """The app as an author runs it once REGIMEN_ALLOWED_ORIGINS names their blog."""
    async with served(build_runtime(settings.model_copy(update={"allowed_origins": [BLOG]}))
                      ) as http:
        yield http


async def test_a_form_post_from_the_blog_returns_to_the_post(
    blog_client: httpx.AsyncClient, smtp: MailSink,
) -> None:
    answer = await blog_client.post("/subscribe", data={"email": "reader@example.org",
                                                        "source": POST + "#comments"})
    assert answer.status_code == 303
    assert answer.headers["location"] == POST + "#regimen-signup-sent"
    [mail] = await smtp.wait_for(1)
    assert mail["To"] == "reader@example.org"


@pytest.mark.parametrize("source", [
    "https://evil.example/phish",
    "https://blog.example.evil.example/post",
    "http://blog.example/post",  # another origin: the scheme differs
    "javascript:alert(1)//https://blog.example/",
    "//evil.example/post",
    "",
])
async def test_no_redirect_anywhere_else(blog_client: httpx.AsyncClient, source: str) -> None:
    answer = await blog_client.post("/subscribe", data={"email": "reader@example.org",
                                                        "source": source})
    assert answer.status_code == 303
    assert answer.headers["location"] == "/check-inbox"


async def test_without_allowed_origins_the_form_goes_to_the_hosted_page(
    client: httpx.AsyncClient,
) -> None:
    answer = await client.post("/subscribe", data={"email": "reader@example.org",
                                                   "source": POST})
    assert answer.headers["location"] == "/check-inbox"


async def test_the_honeypot_answers_as_usual_but_keeps_and_mails_nothing(
    blog_client: httpx.AsyncClient, db: Database, smtp: MailSink,
) -> None:
    human = {"email": "human@example.org", "source": POST, "website": ""}
    bot = {"email": "bot@example.org", "source": POST, "website": "https://spam.example"}
    answers = [await blog_client.post("/subscribe", data=fields) for fields in (human, bot)]
    assert [a.status_code for a in answers] == [303, 303]
    assert answers[0].headers["location"] == answers[1].headers["location"]
    json_answers = [await blog_client.post("/subscribe", json=fields) for fields in (human, bot)]
    assert [a.status_code for a in json_answers] == [202, 202]
    assert json_answers[0].json() == json_answers[1].json()
    await smtp.wait_for(2)
    assert {m["To"] for m in smtp.messages} == {"human@example.org"}
    async with db.transaction() as session:
        emails = list(await session.scalars(select(Subscriber.email)))
    assert emails == ["human@example.org"]


async def test_json_from_the_blog_passes_cors(blog_client: httpx.AsyncClient) -> None:
    preflight = await blog_client.options("/subscribe", headers={
        "origin": BLOG, "access-control-request-method": "POST",
        "access-control-request-headers": "content-type",
    })
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == BLOG
    answer = await blog_client.post("/subscribe", json={"email": "reader@example.org"},
                                    headers={"origin": BLOG})
    assert answer.status_code == 202
    assert answer.headers["access-control-allow-origin"] == BLOG


async def test_json_from_another_site_is_not_readable(
    blog_client: httpx.AsyncClient, db: Database,
) -> None:
    preflight = await blog_client.options("/subscribe", headers={
        "origin": "https://evil.example", "access-control-request-method": "POST",
        "access-control-request-headers": "content-type",
    })
    assert preflight.status_code == 400
    assert "access-control-allow-origin" not in preflight.headers
    assert await count_rows(db, Subscriber) == 0


async def test_embed_js_is_small_and_served_as_a_script(client: httpx.AsyncClient) -> None:
    answer = await client.get("/embed.js")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/javascript")
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.content == EMBED_JS.read_bytes()
    assert len(answer.content) < 5 * 1024


async def test_the_author_page_hands_out_the_snippet(
    blog_client: httpx.AsyncClient,
) -> None:
    page = await blog_client.get("/embed", params={"source": POST})
    assert page.status_code == 200
    assert "noindex" in page.headers["x-robots-tag"]
    # The snippet, escaped into the text box exactly as `regimen embed --regimen` prints it:
    # with several regimens offered, it names the one chosen (the default, unless asked).
    assert snippet(BASE_URL, POST, None, DEFAULT_REGIMEN, LESSONS_PROMISE) \
        in html.unescape(page.text)
    assert TEXTS.author.origin_allowed.format(origin=BLOG) in html.unescape(page.text)
    elsewhere = await blog_client.get("/embed", params={"source": "https://other.example/p"})
    assert TEXTS.author.origin_refused.format(origin="https://other.example") \
        in html.unescape(elsewhere.text)
    junk = await blog_client.get("/embed", params={"source": "javascript:alert(1)"})
    assert "javascript:" not in junk.text


# The shipped default regimen has lessons: its form says so (issue 16).
LESSONS_PROMISE = promise(load_content(PROJECT_ROOT / "content").default.lessons)


def test_the_snippet_promises_lessons_only_for_a_regimen_with_lessons() -> None:
    assert LESSONS_PROMISE
    assert LESSONS_PROMISE in snippet(BASE_URL, POST, None, DEFAULT_REGIMEN, LESSONS_PROMISE)
    assert "lessons" not in snippet(BASE_URL, POST, None, OTHER_REGIMEN)


def hidden_regimen(text: str) -> list[str]:
    return re.findall(r'<input type="hidden" name="regimen" value="([^"]*)">', text)


def test_the_snippet_names_its_regimen_only_when_asked() -> None:
    """`regimen embed` without --regimen prints what blogs already hold: no field, so the site's
    default regimen."""
    assert hidden_regimen(snippet(BASE_URL, POST)) == []
    assert hidden_regimen(snippet(BASE_URL, POST, None, OTHER_REGIMEN)) == [OTHER_REGIMEN]


async def test_the_author_chooses_the_snippets_regimen(blog_client: httpx.AsyncClient) -> None:
    page = await blog_client.get("/embed", params={"source": POST, "regimen": OTHER_REGIMEN})
    assert page.status_code == 200
    text = html.unescape(page.text)
    assert snippet(BASE_URL, POST, None, OTHER_REGIMEN) in text
    # The choice: every regimen offered, in the listing order, the one asked for selected.
    options = re.findall(r'<option value="([a-z0-9-]+)"( selected)?>', page.text)
    assert options == [(OTHER_REGIMEN, " selected"), (DEFAULT_REGIMEN, "")]  # listing order
    # One not offered is no snippet at all: it would only ever be refused.
    unknown = await blog_client.get("/embed", params={"source": POST, "regimen": "no-such"})
    assert unknown.status_code == 400
    assert "<textarea" not in unknown.text


async def test_a_snippet_with_its_regimen_signs_up_for_it(
    blog_client: httpx.AsyncClient, db: Database,
) -> None:
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">',
                             snippet(BASE_URL, POST, None, OTHER_REGIMEN)))
    answer = await blog_client.post("/subscribe", data={**fields, "email": "r@example.org"})
    assert answer.headers["location"] == POST + "#regimen-signup-sent"
    async with db.transaction() as session:
        assert list(await session.scalars(select(Subscriber.regimen))) == [OTHER_REGIMEN]


async def test_a_one_regimen_site_hands_out_a_snippet_without_the_field(
    settings: Settings, db: Database, tmp_path: Path,
) -> None:
    single = tmp_path / "back-pain.yaml"
    single.write_text(shipped_single_file())
    async with app_client(settings, content_path=single) as http:
        page = await http.get("/embed", params={"source": POST})
    assert page.status_code == 200
    assert "<select" not in page.text
    assert snippet(BASE_URL, POST, None, None, LESSONS_PROMISE) in html.unescape(page.text)
