"""Logging: one JSON object a line in production (REGIMEN_LOG_FORMAT), each with the id of the
request it belongs to, and email addresses masked in every line whatever the format.

The request id is the caller's `X-Request-ID` when it looks like one (a proxy's), otherwise a
new one; it is sent back in the response's `X-Request-ID`, so a reader's complaint, the proxy's
log and ours can be matched.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.config import Settings
from service.metrics import REQUEST_SECONDS

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
access_log = logging.getLogger("service.access")

ADDRESS = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)")
GIVEN_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
# LogRecord's own attributes; anything else on a record was passed with `extra=`.
STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def mask_addresses(text: str) -> str:
    return ADDRESS.sub(r"\1***@\2", text)


class MaskAddresses(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg, record.args = mask_addresses(message), None
        return True


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return mask_addresses(super().format(record))  # tracebacks too


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        current = request_id.get()
        if current:
            entry["request_id"] = current
        entry.update({k: v for k, v in vars(record).items() if k not in STANDARD})
        if record.exc_info:
            entry["exception"] = mask_addresses(self.formatException(record.exc_info))
        return json.dumps(entry, default=str)


def uses_json(settings: Settings) -> bool:
    return settings.log_format == "json" or (
        settings.log_format == "auto" and settings.env == "production")


def configure(settings: Settings, stream: Any = None) -> None:
    """Route every logger (uvicorn's too) through one masked handler on stderr."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(MaskAddresses())
    # Our access line names the route template and carries the request id; uvicorn's would
    # repeat it with the raw path, and raw paths hold readers' tokens.
    logging.getLogger("uvicorn.access").disabled = True
    if uses_json(settings):
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


class RequestContext:
    """Gives each request an id (in the logs and the `X-Request-ID` header), logs one access
    line and times it into the latency histogram (service.metrics): method, route template
    (never the raw path: it holds tokens), status, time."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        current = given if GIVEN_ID.fullmatch(given) else uuid.uuid4().hex
        token = request_id.set(current)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message).setdefault("X-Request-ID", current)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            method = scope["method"]
            route = getattr(scope.get("route"), "path", "unmatched")
            REQUEST_SECONDS.labels(method, route, str(status)).observe(seconds)
            access_log.info("%s %s %s", method, route, status, extra={
                "method": method, "route": route, "status": status,
                "duration_ms": round(seconds * 1000, 2)})
            request_id.reset(token)
