"""`GET /metrics` for Prometheus.

Business numbers (signups, confirmations and mails by kind and outcome, each by regimen; the
outbox's depth and oldest age) are read from the database at scrape time, not counted in
memory: with several uvicorn workers and separate `regimen worker` processes an in-memory
counter would only know its own process, and the database already holds the truth. They are
reported as gauges of current totals: a count can go down when rows are purged (`regimen outbox
purge`) or readers erased, which a Prometheus counter must never do.

Request latency can only be measured in the process that served the request: a histogram
labelled by route template (never the raw path, which holds tokens). With several web workers
set PROMETHEUS_MULTIPROC_DIR (prometheus-client's own variable) to an empty directory shared
by them, and /metrics reports all of them together.
"""

from __future__ import annotations

import os
import secrets

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Histogram,
    generate_latest,
    multiprocess,
)

from service.core.models import utcnow
from service.funnel.metrics import Snapshot, database_metrics
from service.web.dependencies import (
    Refusal,
    RuntimeDep,
    count_wrong_password,
    not_locked_out,
)
from service.web.schemas import CRASHED, PLAIN, TEXT, WRONG_TOO_OFTEN

router = APIRouter(default_response_class=Response, responses=CRASHED)

REQUEST_SECONDS = Histogram(
    "regimen_http_request_duration_seconds", "Time to answer an HTTP request.",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


BEARER = HTTPBearer(auto_error=False, scheme_name="metrics",
                    description="Only when REGIMEN_METRICS_TOKEN is set: that token.")


def transport_name(mail_url: str) -> str:
    return mail_url.split(":", 1)[0]


async def metrics_token(request: Request, runtime: RuntimeDep,
                        bearer: HTTPAuthorizationCredentials | None = Depends(BEARER)) -> None:
    """With REGIMEN_METRICS_TOKEN set, only Prometheus (holding the token) may scrape."""
    expected = runtime.settings.metrics_token
    if not expected:
        return
    await not_locked_out(request, runtime)
    wrong = bearer is not None and not secrets.compare_digest(bearer.credentials.encode(),
                                                              expected.encode())
    if wrong:
        await count_wrong_password(request, runtime)
    if bearer is None or wrong:
        raise Refusal(Response("Scrape with the token in REGIMEN_METRICS_TOKEN.\n",
                               status_code=401, media_type="text/plain",
                               headers={"WWW-Authenticate": 'Bearer realm="metrics"'}))


@router.get("/metrics", summary="For Prometheus: business numbers and request latencies",
            dependencies=[Depends(metrics_token)],
            responses={200: {"description": "The Prometheus text format.",
                             "content": {PLAIN: {"schema": TEXT}}},
                       401: {"description": "REGIMEN_METRICS_TOKEN is set and the request's "
                                            "bearer token is wrong or missing.",
                             "content": {PLAIN: {"schema": TEXT}},
                             "headers": {"WWW-Authenticate": {"required": True,
                                                              "schema": TEXT}}},
                       429: WRONG_TOO_OFTEN})
async def metrics(runtime: RuntimeDep) -> Response:
    async with runtime.db.transaction() as session:
        families = await database_metrics(session, transport_name(runtime.settings.mail_url),
                                          utcnow(), runtime.catalog.keys())
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Snapshot(families))
    body = generate_latest(registry)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        shared = CollectorRegistry()
        multiprocess.MultiProcessCollector(shared)  # type: ignore[no-untyped-call]
        body += generate_latest(shared)
    else:
        body += generate_latest(REGISTRY)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
