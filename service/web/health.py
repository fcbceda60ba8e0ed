"""Liveness and readiness, for the load balancer and the orchestrator."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from pydantic import Field
from sqlalchemy import func, select

from service.core.models import WorkerHeartbeat, utcnow
from service.runtime import Runtime
from service.web.dependencies import RuntimeDep
from service.web.errors import RETRY_AFTER_OUTAGE
from service.web.schemas import CRASHED, Sent

router = APIRouter(responses=CRASHED)

HEARTBEAT_STALE = timedelta(seconds=60)
SIGNUP_FAILURE_NEWS = timedelta(seconds=30)
MIN_FREE_DISK = 1024 * 1024  # bytes


class Health(Sent):
    status: Literal["ok"]


class Checks(Sent):
    database: str = Field(description='"ok" or why not')
    signups: str = Field(description='"ok", or why a signup cannot be stored now')
    worker: str = Field(description='"ok" or when one was last seen')


class Ready(Sent):
    ready: Literal[True]
    checks: Checks


class NotReady(Sent):
    ready: Literal[False]
    checks: Checks


ALIVE = Health(status="ok")


@router.get("/healthz", summary="Liveness: the process answers", response_description="Alive.")
async def healthz() -> Health:
    return ALIVE


@router.get(
    "/readyz", summary="Readiness: a signup can be taken and a mail worker beat recently",
    description="Ready when the database answers, signups are being stored (no write refused "
                "in the last 30 s, room on SQLite's disk) and some worker has beaten in the "
                "last minute.",
    responses={200: {"description": "Ready.", "model": Ready},
               503: {"description": "Not ready; `checks` says what is missing.",
                     "model": NotReady,
                     "headers": {"Retry-After": {"required": True,
                                                 "schema": {"type": "integer"}}}}},
)
async def readyz(runtime: RuntimeDep) -> Response:
    checks = {"database": "ok", "signups": "ok", "worker": "ok"}
    try:
        async with runtime.db.transaction() as session:
            last_beat = await session.scalar(select(func.max(WorkerHeartbeat.beat_at)))
    except Exception as exc:
        checks["database"] = f"unreachable: {type(exc).__name__}"
        checks["worker"] = "unknown while the database is unreachable"
    else:
        if last_beat is None:
            checks["worker"] = "no worker has started"
        elif utcnow() - last_beat > HEARTBEAT_STALE:
            checks["worker"] = f"last seen {last_beat.isoformat()}"
    checks["signups"] = _signups_check(runtime)
    ready = all(value == "ok" for value in checks.values())
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503,
                        headers=None if ready else {"Retry-After": str(RETRY_AFTER_OUTAGE)})


def _signups_check(runtime: Runtime) -> str:
    """Whether a signup can be taken: a database that answers reads may still refuse every
    write (a full disk: issue 13)."""
    free = runtime.db.free_disk_bytes()
    if free is not None and free < MIN_FREE_DISK:
        return f"the disk holding the database is full ({free // 1024} KiB free)"
    failed = runtime.signups.failed
    # A failure is only news for a while: after that a signup is tried again, and readiness
    # must not keep a load balancer's traffic away forever because of one bad minute.
    if failed is not None and utcnow() - failed[0] < SIGNUP_FAILURE_NEWS:
        return f"failing since {failed[0].isoformat()}: {failed[1]}"
    return "ok"
