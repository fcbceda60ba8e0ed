"""Schemathesis against the real app and database: whatever it is sent, no 5xx, and every
answer is one that the OpenAPI description documents: status code, content type, required
headers and JSON body. The description is the one FastAPI builds from what each route
declares (its `responses=`, models and `openapi_extra`; service/web/schemas.py)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from service.core.database import Database
from service.core.models import Reader, Subscriber, SubscriberStatus
from service.core.settings import Settings, load_settings
from service.delivery.transports import FileTransport
from service.readers.links import PATHS
from service.readers.tokens import Claims, Purpose, Tokens
from service.runtime import build_runtime
from service.web.app import create_app
from tests.helpers import (
    BASE_URL,
    DEFAULT_REGIMEN,
    OTHER_REGIMEN,
    PROJECT_ROOT,
    token_signed_at,
)

KEY = "fuzz-key-" + "f" * 40
BLOG = "https://yourblog.blogspot.com"
MAX_BODY = 1024
POSTMARK_SECRET = "postmark-secret-" + "p" * 32
MAILGUN_KEY = "mailgun-key-" + "m" * 32
ADMIN_PASSWORD = "admin-password-" + "a" * 32
PASSWORDS = {"/webhooks/postmark": POSTMARK_SECRET, "/admin": ADMIN_PASSWORD,
             "/admin/funnel.csv": ADMIN_PASSWORD, "/admin/progress.csv": ADMIN_PASSWORD,
             "/admin/lessons.csv": ADMIN_PASSWORD}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]
FUZZING = hypothesis.settings(
    max_examples=30,
    deadline=None,  # a per-example time limit is a wall-clock assertion
    database=None,  # nothing written into the repository
    # The app and its database are meant to live through all of an operation's examples: the
    # state they leave behind (a reader confirmed, then erased) is more to fuzz.
    suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture],
)
# The app runs no worker, so no heartbeat is ever written: "not ready" is its right answer.
CONFIG = schemathesis.Config.from_dict({
    "operations": [{
        "include-path": "/readyz",
        "checks": {"not_a_server_error": {"expected-statuses": ["2xx", "3xx", "4xx", "503"]}},
    }],
})


def describing_app() -> FastAPI:
    """The description depends only on the routes, so it can be read at import time (where
    schemathesis needs it) from an app that never opens its database."""
    settings = load_settings(_env_file=None, secret_keys=[KEY],
                             content_path=PROJECT_ROOT / "content")
    return create_app(build_runtime(settings), run_worker=False)


DESCRIBED = describing_app()
SCHEMA = schemathesis.openapi.from_dict(DESCRIBED.openapi(), config=CONFIG)

# Subscriptions the `app` fixture puts in the database, by public id, with their regimen; their
# links are mixed into the generated ones, or fuzzing would only ever meet the "not one of
# ours" page. One address holds two of them (confirm-all, stop-everything), and two are to a
# regimen the content no longer offers.
GONE = "withdrawn-regimen"
READERS = {
    "fuzz-pending": (SubscriberStatus.PENDING, "fuzz-a@example.org", DEFAULT_REGIMEN),
    "fuzz-confirmed": (SubscriberStatus.CONFIRMED, "fuzz-b@example.org", DEFAULT_REGIMEN),
    "fuzz-unsubscribed": (SubscriberStatus.UNSUBSCRIBED, "fuzz-c@example.org", DEFAULT_REGIMEN),
    "fuzz-pending-other": (SubscriberStatus.PENDING, "fuzz-a@example.org", OTHER_REGIMEN),
    "fuzz-pending-gone": (SubscriberStatus.PENDING, "fuzz-d@example.org", GONE),
    "fuzz-confirmed-gone": (SubscriberStatus.CONFIRMED, "fuzz-b@example.org", GONE),
}


def real_links() -> dict[Purpose, list[str]]:
    tokens = Tokens([KEY])
    links = {purpose: [tokens.make(purpose, Claims(public_id, 1)) for public_id in READERS]
             for purpose in Purpose}
    for purpose in Purpose:
        links[purpose].append(tokens.make(purpose, Claims("fuzz-confirmed", 0)))  # revoked
    links[Purpose.CONFIRM].append(token_signed_at(
        KEY, Purpose.CONFIRM, Claims("fuzz-pending", 1), datetime(2020, 1, 1, tzinfo=UTC)))
    return links


LINKS = real_links()
CATALOG = DESCRIBED.state.runtime.catalog
SLUGS = [exercise.slug for regimen in CATALOG.regimens.values()
         for exercise in regimen.exercises()]


@SCHEMA.hook
def flatmap_path_parameters(
    context: schemathesis.HookContext, path_parameters: dict[str, Any] | None,
) -> st.SearchStrategy[dict[str, Any] | None]:
    if not path_parameters:
        return st.just(path_parameters)
    assert context.operation is not None
    path = context.operation.path
    purpose = next((purpose for purpose, prefix in PATHS.items() if path.startswith(prefix)),
                   None)
    real = {"token": LINKS[purpose] if purpose else [], "slug": SLUGS,
            "key": [*CATALOG.keys(), GONE]}
    return st.fixed_dictionaries({
        name: st.sampled_from([generated, *real.get(name, [])])
        for name, generated in path_parameters.items()
    })


def basic_auth(password: str) -> str:
    return "Basic " + base64.b64encode(f"fuzz:{password}".encode()).decode()


def mailgun_signature(key: str) -> dict[str, str]:
    # Signed when drawn, and sent a moment later: well inside Mailgun's 15 minutes.
    timestamp, token = str(int(time.time())), "fuzz-token"
    digest = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    return {"timestamp": timestamp, "token": token, "signature": digest}


# Half the calls behind a password made with it, or fuzzing would only ever meet the 401.
@SCHEMA.hook
def flatmap_headers(context: schemathesis.HookContext,
                    headers: dict[str, Any] | None) -> st.SearchStrategy[dict[str, Any] | None]:
    assert context.operation is not None
    password = PASSWORDS.get(context.operation.path)
    if password is None:
        return st.just(headers)
    return st.sampled_from([headers, {**(headers or {}), "Authorization": basic_auth(password)}])


@SCHEMA.hook
def flatmap_body(context: schemathesis.HookContext, body: Any) -> st.SearchStrategy[Any]:
    assert context.operation is not None
    if context.operation.path != "/webhooks/mailgun" or not isinstance(body, dict):
        return st.just(body)
    return st.sampled_from([body, {**body, "signature": mailgun_signature(MAILGUN_KEY)}])


@pytest.fixture
async def app(settings: Settings, db: Database) -> FastAPI:
    async with db.transaction() as session:
        now = datetime.now(UTC)
        session.add_all([Reader(email=email)
                         for email in sorted({email for _, email, _ in READERS.values()})])
        await session.flush()
        session.add_all([
            Subscriber(public_id=public_id, email=email, regimen=regimen, status=status,
                       created_at=now,
                       confirmed_at=None if status is SubscriberStatus.PENDING else now,
                       unsubscribed_at=now if status is SubscriberStatus.UNSUBSCRIBED else None)
            for public_id, (status, email, regimen) in READERS.items()
        ])
    configured = settings.model_copy(update={
        "secret_keys": [KEY],
        # Webhooks and the cockpit on, so that their passwords are fuzzed, not a fixed 404.
        "webhook_secret": POSTMARK_SECRET,
        "mailgun_signing_key": MAILGUN_KEY,
        "admin_password": ADMIN_PASSWORD,
        "allowed_origins": [BLOG],
        # Small, so that fuzzed bodies can go over it and the 413 case stays readable.
        "max_body_bytes": MAX_BODY,
    })
    runtime = build_runtime(configured, transport=FileTransport(settings.data_dir / "mail"))
    return create_app(runtime, run_worker=False)


@SCHEMA.parametrize()
@FUZZING
def test_every_answer_is_documented_and_none_is_a_server_error(
    case: schemathesis.Case, app: FastAPI,
) -> None:
    case.call_and_validate(app=app, checks=CHECKS)


# Requests fuzzing is unlikely to make but anyone can send; each of them, when written, got
# a crash or an answer outside the description.
HOSTILE: dict[str, tuple[str, str, dict[str, Any]]] = {
    "postmark password not ASCII": (
        "POST", "/webhooks/postmark",
        {"headers": {"Authorization": "Basic \xe9t\xe9"}, "body": {}}),
    "mailgun timestamp too big for a float": (
        "POST", "/webhooks/mailgun",
        {"body": {"signature": {"timestamp": "9" * 400, "token": "t", "signature": "0" * 64}}}),
    "signup field named with a lone surrogate": (
        "POST", "/subscribe",
        {"body": {"email": "reader@example.org", "\udc80": "x"},
         "media_type": "application/json"}),
    "signup source with a lone surrogate": (
        "POST", "/subscribe",
        {"body": {"email": "reader@example.org", "source": "https://yourblog.blogspot.com/\ud800"},
         "media_type": "application/json"}),
    "signup regimen not text": (
        "POST", "/subscribe",
        {"body": {"email": "reader@example.org", "regimen": ["sacro-iliac"]},
         "media_type": "application/json"}),
    "signup regimen not offered, from a form": (
        "POST", "/subscribe",
        {"body": {"email": "reader@example.org", "regimen": "no-such-regimen"},
         "media_type": "application/x-www-form-urlencoded"}),
    "form over the size limit, with Content-Length": (
        "POST", "/subscribe",
        {"body": {"email": "reader@example.org", "source": "x" * MAX_BODY},
         "media_type": "application/x-www-form-urlencoded"}),
}


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_requests_are_answered_as_documented(app: FastAPI, name: str) -> None:
    method, path, fields = HOSTILE[name]
    case = SCHEMA[path][method].Case(**fields)
    case.call_and_validate(app=app, checks=CHECKS)


# What FastAPI writes for a route that declares nothing about an answer.
FASTAPI_DEFAULTS = {"Successful Response", "Validation Error", "Additional Response"}


def test_every_route_is_described() -> None:
    """Each route declares every answer it gives, with what it carries: nothing in the
    description is FastAPI's guess, and no route is left out of it."""
    paths = SCHEMA.raw_schema["paths"]
    described = set()
    for route in iter_route_contexts(DESCRIBED.routes):
        if not isinstance(route.original_route, APIRoute):
            continue
        # As OpenAPI writes it: without a path parameter's convertor (/{key:regimen_key}).
        path = route.path_format
        for method in route.methods or ():
            operation = paths[path][method.lower()]
            described.add((method.lower(), path))
            assert operation.get("summary"), (method, path)
            declared = {str(status) for status in route.responses}
            if route.status_code is None and "200" not in declared:
                declared.add("200")  # a JSON route's own answer, from its response model
            elif route.status_code is not None:
                assert str(route.status_code) in declared, (method, path)
            assert set(operation["responses"]) == declared, (method, path)
            assert "500" in declared, (method, path)
            for status, answer in operation["responses"].items():
                assert answer["description"] not in FASTAPI_DEFAULTS, (method, path, status)
                assert answer.get("content") or answer.get("headers"), (method, path, status)
            if method == "POST":
                assert "413" in declared, (method, path)
                assert operation["requestBody"]["content"], (method, path)
    assert described == {(method, path) for path, methods in paths.items() for method in methods}
    assert "HTTPValidationError" not in SCHEMA.raw_schema["components"]["schemas"]


def test_the_passwords_are_described_as_security() -> None:
    paths = SCHEMA.raw_schema["paths"]
    schemes = SCHEMA.raw_schema["components"]["securitySchemes"]
    for path in PASSWORDS:
        (operation,) = paths[path].values()
        (requirement,) = operation["security"]
        (name,) = requirement
        assert schemes[name]["type"] == "http"
        assert schemes[name]["scheme"] == "basic"
    assert {name for path, methods in paths.items() for operation in methods.values()
            for requirement in operation.get("security", []) for name in requirement
            } == set(schemes) == {"admin", "postmark", "metrics"}
    assert schemes["metrics"]["scheme"] == "bearer"


async def test_the_app_serves_the_description_that_is_fuzzed(app: FastAPI) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url=BASE_URL) as client:
        served = await client.get("/openapi.json")
    assert served.status_code == 200
    assert served.json() == SCHEMA.raw_schema
