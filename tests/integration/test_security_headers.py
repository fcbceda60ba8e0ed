"""Security headers on every response, including the error pages and a crash."""

from __future__ import annotations

import re

import httpx
from starlette.exceptions import HTTPException

from service.core.settings import Settings
from service.runtime import Runtime
from service.web.app import create_app
from service.web.security_headers import security_headers
from tests.helpers import BASE_URL, MailSink, links_in, path_of


async def reader_pages(client: httpx.AsyncClient, smtp: MailSink) -> dict[str, httpx.Response]:
    """Every kind of page a reader can meet, reached as a reader reaches it."""
    pages = {"regimens": await client.get("/"),
             "signup": await client.get("/neck-and-shoulders"),
             "bad address": await client.post("/subscribe", data={"email": "nope"}),
             "check inbox": await client.get("/check-inbox")}
    await client.post("/subscribe", data={"email": "reader@example.org"})
    [confirmation] = await smtp.wait_for(1)
    confirm = path_of(next(url for url in links_in(confirmation) if "/confirm/" in url))
    pages["confirm"] = await client.get(confirm)
    pages["confirmed"] = await client.post(confirm)
    regimen_mail = (await smtp.wait_for(2))[-1]
    regimen = path_of(next(url for url in links_in(regimen_mail) if "/r/" in url))
    unsubscribe = path_of(regimen_mail["List-Unsubscribe"].strip("<>"))
    pages["regimen"] = await client.get(regimen)
    pages["exercise link"] = await client.get(regimen + "/go/gentle-back-exercise")
    pages["marked done"] = await client.post(regimen + "/done/gentle-back-exercise")
    pages["marked done by script"] = await client.post(
        regimen + "/done/gentle-back-exercise", headers={"accept": "application/json"})
    pages["unsubscribe"] = await client.get(unsubscribe)
    pages["unsubscribed"] = await client.post(unsubscribe)
    pages["invalid link"] = await client.get("/r/not-a-token")
    pages["not found"] = await client.get("/no-such-page")
    pages["unknown exercise"] = await client.get(regimen + "/go/no-such-exercise")
    pages["author"] = await client.get("/embed")
    pages["stylesheet"] = await client.get("/static/style.css")
    pages["embed.js"] = await client.get("/embed.js")
    pages["regimen.js"] = await client.get("/static/regimen.js")
    return pages


PERSONAL = {"confirm", "confirmed", "regimen", "exercise link", "marked done",
            "marked done by script", "unsubscribe", "unsubscribed"}


async def test_every_response_carries_the_headers(
    client: httpx.AsyncClient, smtp: MailSink,
) -> None:
    pages = await reader_pages(client, smtp)
    for name, page in pages.items():
        policy = page.headers.get("content-security-policy", "")
        assert "frame-ancestors 'none'" in policy, name
        assert "unsafe-inline" not in policy, name
        assert "default-src 'none'" in policy, name
        assert page.headers["x-content-type-options"] == "nosniff", name
        assert page.headers["x-frame-options"] == "DENY", name
        assert page.headers["strict-transport-security"].startswith("max-age="), name
    for name in PERSONAL:
        page = pages[name]
        assert page.headers["referrer-policy"] == "no-referrer", name
        assert page.headers["cache-control"] == "no-store", name
        assert "noindex" in page.headers["x-robots-tag"], name
    assert pages["exercise link"].status_code == 303
    assert pages["unknown exercise"].status_code == 404


async def test_pages_need_no_inline_script_or_style(
    client: httpx.AsyncClient, smtp: MailSink,
) -> None:
    """The CSP forbids inline code; a page that relied on it would silently break."""
    for name, page in (await reader_pages(client, smtp)).items():
        if page.headers.get("content-type", "").startswith("text/html"):
            html = page.text
            assert not re.search(r"<script(?![^>]*\bsrc=)", html), name
            assert not re.search(r"<style|\sstyle=|\son[a-z]+=", html), name


def test_no_hsts_over_plain_http(settings: Settings) -> None:
    plain = settings.model_copy(update={"base_url": "http://127.0.0.1:8000"})
    assert "Strict-Transport-Security" not in security_headers(plain)
    assert "Strict-Transport-Security" in security_headers(settings)


def test_forms_may_post_to_the_allowed_blogs_only(settings: Settings) -> None:
    blogs = settings.model_copy(update={"allowed_origins": ["https://blog.example"]})
    policy = security_headers(blogs)["Content-Security-Policy"]
    assert "form-action 'self' https://blog.example;" in policy


async def test_too_many_requests_is_a_page(runtime: Runtime) -> None:
    """The page itself; when to send it is the rate limiter's business."""
    app = create_app(runtime, run_worker=False)

    # Two segments: a one-segment path is a regimen's own form (/{key}), added last.
    @app.get("/_test/limited")
    async def limited() -> None:
        raise HTTPException(429, headers={"Retry-After": "60"})

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url=BASE_URL) as http:
        page = await http.get("/_test/limited")
        as_json = await http.get("/_test/limited", headers={"accept": "application/json"})
    assert page.status_code == 429
    assert page.headers["retry-after"] == "60"
    assert "Too many tries" in page.text
    assert as_json.json()["error"] == "Too many tries"
