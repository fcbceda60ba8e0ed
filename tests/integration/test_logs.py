"""Structured logs through the app: a request id in each line and in the response (the lines
themselves: tests/unit/test_logs.py)."""

from __future__ import annotations

import io

import httpx
import pytest

from service.core import logs
from service.core.settings import Settings
from tests.helpers import json_lines


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
