"""Structured logs through the app: a request id in each line and in the response (the lines
themselves: tests/unit/test_logs.py)."""

from __future__ import annotations

import io
import json

import httpx
import pytest

from service.core import logs
from service.core.models import SubscriberStatus, utcnow
from service.core.settings import Settings
from service.readers.tokens import Claims, Purpose
from service.runtime import Runtime
from tests.helpers import json_lines, new_subscription


@pytest.mark.usefixtures("restore_logging")
async def test_json_lines_carry_the_request_id(client: httpx.AsyncClient,
                                               settings: Settings) -> None:
    settings.log_format = "json"
    stream = io.StringIO()
    logs.configure(settings, stream)
    response = await client.get("/healthz", headers={"X-Request-ID": "proxy-id.42"})
    assert response.headers["x-request-id"] == "proxy-id.42"
    forged = await client.get("/healthz", headers={"X-Request-ID": "bad id; " * 10})
    minted = forged.headers["x-request-id"]
    assert len(minted) == 32
    assert minted != "bad id"
    await client.post("/subscribe", data={"email": "Reader.Name@Example.org"})
    access = [e for e in json_lines(stream) if e["logger"] == "service.access"]
    assert access[0]["request_id"] == "proxy-id.42"
    assert access[0]["route"] == "/healthz"
    assert access[0]["status"] == 200
    assert access[1]["request_id"] == minted
    assert access[2]["route"] == "/subscribe"
    assert access[2]["status"] == 303


@pytest.mark.usefixtures("restore_logging")
async def test_progress_never_reaches_the_logs(client: httpx.AsyncClient, runtime: Runtime,
                                              settings: Settings) -> None:
    """Which steps a reader did is personal data: the access line names the route's template,
    never the step or the reader's token, also when the step is refused."""
    settings.log_format = "json"
    stream = io.StringIO()
    logs.configure(settings, stream)
    reader, subscriber = new_subscription("reader@example.org", status=SubscriberStatus.CONFIRMED,
                                          confirmed_at=utcnow())
    async with runtime.db.transaction() as session:
        session.add(reader)
        await session.flush()
        session.add(subscriber)
    token = runtime.tokens.make(Purpose.REGIMEN, Claims(subscriber.public_id, 1))
    assert (await client.post(f"/r/{token}/done/lying-twist")).status_code == 303
    assert (await client.post(f"/r/{token}/done/no-such-step")).status_code == 404
    assert (await client.get(f"/r/{token}")).status_code == 200
    routes = [e["route"] for e in json_lines(stream) if e["logger"] == "service.access"]
    assert routes == ["/r/{token}/done/{step}", "/r/{token}/done/{step}", "/r/{token}"]
    # Read after json_lines flushed the handler: before, info lines were mostly still in its
    # buffer and this looked at nothing. The test's own client (httpx) logs the URLs it asks
    # for; in production that client is the reader's browser, whose requests we never log.
    lines = [line for line in stream.getvalue().splitlines()
             if json.loads(line)["logger"] != "httpx"]
    assert len(lines) >= 3
    for secret in ("lying-twist", "no-such-step", token, subscriber.public_id):
        assert not any(secret in line for line in lines)
