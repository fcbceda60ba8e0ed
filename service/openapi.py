"""The service's HTTP interface as an OpenAPI document, served at /openapi.json.

The routes read the raw request themselves (a form or JSON in, a page or JSON out), so FastAPI
can infer next to nothing about them. `OPERATIONS` says what each one takes and every answer it
can give; tests/test_fuzz.py holds the running app to it with schemathesis, so a route that
starts answering differently fails the tests until this description says so too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

JsonSchema = dict[str, Any]

ABOUT = ("Double opt-in delivery of a free exercise regimen to a blog's readers. Pages are "
         "HTML; a request sent as JSON, or accepting only JSON, gets its errors as JSON.")

HTML = "text/html"
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"
JAVASCRIPT = "text/javascript"
PLAIN = "text/plain"

TEXT: JsonSchema = {"type": "string"}


def ref(name: str) -> JsonSchema:
    return {"$ref": f"#/components/schemas/{name}"}


def closed(properties: dict[str, JsonSchema], required: list[str] | None = None,
           ) -> JsonSchema:
    """An object with exactly these properties: what the service itself sends."""
    return {"type": "object", "properties": properties,
            "required": list(properties) if required is None else required,
            "additionalProperties": False}


SCHEMAS: dict[str, JsonSchema] = {
    "Signup": {
        "type": "object",
        "required": ["email"],
        "properties": {
            "email": {"type": "string", "format": "email", "maxLength": 254,
                      "description": "The reader's address. Surrounding spaces are ignored; "
                                     "it is checked and stored lower-cased."},
            "source": {"type": "string", "format": "uri",
                       "description": "The blog post the form is in. Kept as consent evidence "
                                      "when it is an http(s) address; a form signup from a blog "
                                      "in REGIMEN_ALLOWED_ORIGINS is sent back to it."},
            "website": {"type": "string", "maxLength": 0,
                        "description": "Honeypot, hidden from people: leave it empty. When "
                                       "filled the answer is the same, but nothing is stored "
                                       "or mailed."},
            "started": {"type": "string",
                        "description": "The hosted form's signed time stamp (the blog snippet "
                                       "has none). One not ours, or too fresh to have been "
                                       "typed by a person, is treated like a filled honeypot."},
        },
        "description": "With a CAPTCHA configured, the provider's answer field comes too "
                       "(cf-turnstile-response or h-captcha-response).",
    },
    "Accepted": closed({"status": {"const": "accepted"}, "message": TEXT}),
    "FieldErrors": closed({"errors": closed({"email": TEXT})}),
    "Error": closed({"error": TEXT, "detail": TEXT}),
    "Health": closed({"status": {"const": "ok"}}),
    "Readiness": closed({
        "ready": {"type": "boolean"},
        "checks": closed({
            "database": {"type": "string", "description": '"ok" or why not'},
            "worker": {"type": "string", "description": '"ok" or when one was last seen'},
        }),
    }),
    "OneClickUnsubscribe": {
        "type": "object",
        "properties": {"List-Unsubscribe": {"const": "One-Click"}},
        "description": "RFC 8058 one-click unsubscribe; the body is not needed.",
    },
    "PostmarkEvent": {
        "type": "object",
        "description": "A Postmark bounce or spam-complaint webhook. A hard bounce or a "
                       "complaint suppresses the address; anything else is acknowledged and "
                       "ignored.",
        "properties": {
            "RecordType": {"type": "string", "examples": ["Bounce", "SpamComplaint"]},
            "Type": {"type": "string", "examples": ["HardBounce", "SoftBounce"]},
            "Email": {"type": "string", "format": "email"},
        },
    },
    "MailgunEvent": {
        "type": "object",
        "description": "A Mailgun webhook, signed with the webhook signing key. A permanent "
                       "failure or a complaint suppresses the address; anything else is "
                       "acknowledged and ignored.",
        "properties": {
            "signature": {
                "type": "object",
                "required": ["timestamp", "token", "signature"],
                "properties": {
                    "timestamp": {"type": "string", "pattern": "^[0-9]+$",
                                  "description": "Unix time; older than 15 minutes is a "
                                                 "replay."},
                    "token": TEXT,
                    "signature": {"type": "string", "pattern": "^[0-9a-f]{64}$",
                                  "description": "HMAC-SHA256 of timestamp + token."},
                },
            },
            "event-data": {
                "type": "object",
                "properties": {
                    "event": {"type": "string", "examples": ["failed", "complained"]},
                    "severity": {"type": "string", "examples": ["permanent", "temporary"]},
                    "recipient": {"type": "string", "format": "email"},
                },
            },
        },
        "required": ["signature"],
    },
    "WebhookAck": closed({"status": {"const": "ok"}}),
    "WebhookRefusal": closed({"error": {"enum": ["unauthorized", "not configured"]}}),
}


@dataclass(frozen=True)
class Answer:
    description: str
    content: dict[str, JsonSchema] = field(default_factory=dict)  # media type -> body schema
    headers: dict[str, JsonSchema] = field(default_factory=dict)  # required header -> schema

    def as_openapi(self) -> JsonSchema:
        described: JsonSchema = {"description": self.description}
        if self.content:
            described["content"] = {media: {"schema": schema}
                                    for media, schema in self.content.items()}
        if self.headers:
            described["headers"] = {name: {"required": True, "schema": schema}
                                    for name, schema in self.headers.items()}
        return described


def page(description: str) -> Answer:
    return Answer(description, {HTML: TEXT})


def error(description: str) -> Answer:
    """The error page: HTML for browsers; JSON for a request sent as JSON or accepting only
    JSON."""
    return Answer(description, {HTML: TEXT, JSON: ref("Error")})


def see_other(description: str) -> Answer:
    return Answer(description, headers={"Location": {"type": "string",
                                                     "format": "uri-reference"}})


BAD_LINK = error("The link is not one of ours: mistyped, cut short or tampered with.")
UNKNOWN_LINK = error("Nobody holds this link any more: the reader was erased or their links "
                     "were revoked. Also any path that is not a route, e.g. a token holding "
                     "a slash.")
TOO_MANY = Answer("Too many requests from this address: the 429 page; `Retry-After` says how "
                  "many seconds to wait.",
                  {HTML: TEXT, JSON: ref("Error")},
                  headers={"Retry-After": {"type": "integer", "minimum": 1}})
# Added by Operation.describe, whatever the route: the middleware refuses any body over the
# limit (413 on every operation that takes one) and the catch-all handler turns any crash
# into a page (500 on all).
TOO_LARGE = error("The request body is over REGIMEN_MAX_BODY_BYTES.")
CRASHED = error("Something went wrong on our side; the page says so, never a stack trace.")


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    summary: str
    answers: dict[int, Answer]
    description: str = ""
    body: dict[str, JsonSchema] = field(default_factory=dict)  # media type -> schema
    body_required: bool = False
    security: list[dict[str, list[str]]] = field(default_factory=list)
    headers: dict[str, JsonSchema] = field(default_factory=dict)  # optional request headers

    def describe(self, generated: JsonSchema) -> JsonSchema:
        """FastAPI's operation (path and query parameters) completed with what it cannot
        know."""
        answers = dict(self.answers)
        if self.body:
            answers.setdefault(413, TOO_LARGE)
        answers.setdefault(500, CRASHED)
        described: JsonSchema = {
            **generated,
            "summary": self.summary,
            "responses": {str(status): answer.as_openapi()
                          for status, answer in sorted(answers.items())},
        }
        if self.description:
            described["description"] = self.description
        parameters = [{**parameter, "description": PARAMETERS[parameter["name"]]}
                      if parameter["name"] in PARAMETERS else parameter
                      for parameter in generated.get("parameters", [])]
        parameters += [{"name": name, "in": "header", "required": False, "schema": schema}
                       for name, schema in self.headers.items()]
        if parameters:
            described["parameters"] = parameters
        if self.body:
            described["requestBody"] = {
                "required": self.body_required,
                "content": {media: {"schema": schema} for media, schema in self.body.items()},
            }
        if self.security:
            described["security"] = self.security
        return described


PARAMETERS = {
    "token": "The signed token from the reader's link (confirm, regimen, unsubscribe or "
             "erase: each route accepts only its own).",
    "slug": "An exercise of the regimen, as named in the content file.",
    "source": "The blog post's address, written into the snippet.",
    "days": "The period to report on, in days.",
}

TOKEN_PAGE_ANSWERS = {400: BAD_LINK, 404: UNKNOWN_LINK, 429: TOO_MANY}
ADMIN_REFUSALS = {
    400: error("`days` is not a whole number from 1 to 366."),
    401: Answer("The password is wrong or missing.", {PLAIN: TEXT},
                headers={"WWW-Authenticate": TEXT}),
    404: error("The cockpit is off."),
}

OPERATIONS = [
    Operation("get", "/", "The hosted signup form", {200: page("The signup form.")}),
    Operation(
        "post", "/subscribe", "Sign up for the regimen (double opt-in)",
        description="The same answer whether the address is new, waiting, confirmed or "
                    "unsubscribed, so nobody learns who is subscribed. A form post is "
                    "answered with pages and redirects, JSON with JSON.",
        body={FORM: ref("Signup"), JSON: ref("Signup")},
        body_required=True,
        answers={
            202: Answer("JSON: accepted; a confirmation mail is on its way if one is due.",
                        {JSON: ref("Accepted")}),
            303: see_other("Form: accepted; on to the blog post (when its blog is in "
                           "REGIMEN_ALLOWED_ORIGINS) or to /check-inbox."),
            400: Answer("Form: the address is not usable (malformed, a throw-away or mailless "
                        "domain, an unsolved CAPTCHA); the form again, saying why. Also a "
                        "form body that cannot be parsed (the error page).",
                        {HTML: TEXT, JSON: ref("Error")}),
            422: Answer("JSON: the address is not usable, as for 400 (or the body is not a "
                        "JSON object); `errors.email` says why.", {JSON: ref("FieldErrors")}),
            429: TOO_MANY,
        },
    ),
    Operation("get", "/check-inbox", "After a form signup: check your inbox",
              {200: page("What happens next.")}),
    Operation(
        "get", "/confirm/{token}", "The confirmation page, with its one button",
        description="Opening it changes nothing: mail scanners open every link.",
        answers={
            200: page("One button: Yes, send me the regimen."),
            **TOKEN_PAGE_ANSWERS,
            410: page("The link has expired; the page offers to send a new one."),
        },
    ),
    Operation(
        "post", "/confirm/{token}", "Confirm: record consent and queue the regimen mail",
        description="Pressing it again changes nothing.",
        answers={
            200: page("Confirmed; the page shows the regimen link."),
            **TOKEN_PAGE_ANSWERS,
            410: Answer("The link has expired (a page offering a new one), or the reader has "
                        "unsubscribed since (the error page).",
                        {HTML: TEXT, JSON: ref("Error")}),
        },
        # The page's button sends an empty form, so a POST may carry one.
        body={FORM: {"type": "object", "maxProperties": 0}},
    ),
    Operation(
        "post", "/confirm/{token}/resend", "Send a fresh confirmation for an expired link",
        description="The token's age is not checked here, only its signature.",
        answers={200: page("A new mail is on its way (if one is due)."),
                 **TOKEN_PAGE_ANSWERS},
        body={FORM: {"type": "object", "maxProperties": 0}},
    ),
    Operation("get", "/r/{token}", "The reader's regimen page",
              {200: page("The units in order, each exercise with its link."),
               **TOKEN_PAGE_ANSWERS}),
    Operation(
        "get", "/r/{token}/go/{slug}", "Follow an exercise's link (counted)",
        {303: see_other("On to the exercise's video or purchase page, an address from the "
                        "content file."),
         **TOKEN_PAGE_ANSWERS,
         404: error("No such exercise, or nobody holds this link any more.")},
    ),
    Operation("get", "/unsubscribe/{token}", "The unsubscribe page, with its button",
              {200: page("One button: unsubscribe."), **TOKEN_PAGE_ANSWERS}),
    Operation(
        "post", "/unsubscribe/{token}", "Unsubscribe (the page's button and RFC 8058 one-click)",
        description="No cookies needed and never a redirect, as RFC 8058 asks; not rate "
                    "limited, since mailbox providers send many readers' one-click "
                    "unsubscribes from a few addresses.",
        answers={200: page("Unsubscribed (again, if pressed twice)."),
                 400: BAD_LINK, 404: UNKNOWN_LINK},
        body={FORM: ref("OneClickUnsubscribe"), MULTIPART: ref("OneClickUnsubscribe")},
    ),
    Operation("get", "/erase/{token}", "The erase-my-data page, with its button",
              {200: page("One button: delete everything held about me."),
               **TOKEN_PAGE_ANSWERS}),
    Operation(
        "post", "/erase/{token}", "Erase everything held about the reader",
        description="Pressing it again, or for a reader already erased, answers the same.",
        answers={200: page("Deleted."), 400: BAD_LINK, 429: TOO_MANY,
                 404: error("Any path that is not a route, e.g. a token holding a slash.")},
        body={FORM: {"type": "object", "maxProperties": 0}},
    ),
    Operation("get", "/healthz", "Liveness: the process answers",
              {200: Answer("Alive.", {JSON: ref("Health")})}),
    Operation(
        "get", "/readyz", "Readiness: the database answers and a mail worker beat recently",
        {200: Answer("Ready.", {JSON: {"allOf": [ref("Readiness"),
                                                 {"properties": {"ready": {"const": True}}}]}}),
         503: Answer("Not ready; `checks` says what is missing.",
                     {JSON: {"allOf": [ref("Readiness"),
                                       {"properties": {"ready": {"const": False}}}]}})},
    ),
    Operation("get", "/embed", "For blog authors: the snippet to paste into a post",
              {200: page("The snippet, and whether the post's blog is set up."),
               400: error("`source` is over 2048 characters.")}),
    Operation(
        "get", "/embed.js", "The snippet's optional script",
        headers={"Range": {"type": "string", "examples": ["bytes=0-99"]}},
        answers={
            200: Answer("The script.", {JAVASCRIPT: TEXT}),
            206: Answer("The ranges asked for.", {JAVASCRIPT: TEXT, "multipart/byteranges": TEXT}),
            400: Answer("A malformed `Range` header.", {PLAIN: TEXT}),
            416: Answer("A `Range` outside the script.", {PLAIN: TEXT}),
        },
    ),
    Operation(
        "get", "/admin", "For the author: the funnel, sources, exercises and the outbox",
        description="Off (404) until REGIMEN_ADMIN_PASSWORD is set.",
        security=[{"admin": []}],
        answers={200: page("The cockpit for the last `days` days."), **ADMIN_REFUSALS},
    ),
    Operation(
        "get", "/admin/funnel.csv", "For the author: the daily funnel as CSV",
        description="Off (404) until REGIMEN_ADMIN_PASSWORD is set.",
        security=[{"admin": []}],
        answers={200: Answer("One row a day.", {"text/csv": TEXT},
                             headers={"Content-Disposition": TEXT}),
                 **ADMIN_REFUSALS},
    ),
    Operation("get", "/metrics", "For Prometheus: business numbers and request latencies",
              {200: Answer("The Prometheus text format.", {PLAIN: TEXT})}),
    Operation(
        "post", "/webhooks/postmark", "Postmark bounce and complaint notifications",
        description="Off (404) until REGIMEN_WEBHOOK_SECRET is set; that secret is the basic "
                    "auth password in the webhook URL given to Postmark.",
        body={JSON: ref("PostmarkEvent")},
        body_required=True,
        security=[{"postmark": []}],
        answers={
            200: Answer("Acknowledged, acted on or not.", {JSON: ref("WebhookAck")}),
            401: Answer("Not Postmark: the password is wrong or missing.",
                        {JSON: ref("WebhookRefusal")},
                        headers={"WWW-Authenticate": TEXT}),
            404: Answer("The endpoint is off.", {JSON: ref("WebhookRefusal")}),
        },
    ),
    Operation(
        "post", "/webhooks/mailgun", "Mailgun bounce and complaint notifications",
        description="Off (404) until REGIMEN_MAILGUN_SIGNING_KEY is set.",
        body={JSON: ref("MailgunEvent")},
        body_required=True,
        answers={
            200: Answer("Acknowledged, acted on or not.", {JSON: ref("WebhookAck")}),
            401: Answer("Not Mailgun: the signature is wrong, missing or too old.",
                        {JSON: ref("WebhookRefusal")}),
            404: Answer("The endpoint is off.", {JSON: ref("WebhookRefusal")}),
        },
    ),
]


def describe(generated: JsonSchema) -> JsonSchema:
    """Complete FastAPI's schema with `OPERATIONS`; routes it does not list stay as FastAPI
    made them (tests/test_fuzz.py checks that there are none)."""
    paths = generated.setdefault("paths", {})
    for operation in OPERATIONS:
        operations = paths.get(operation.path, {})
        if operation.method in operations:
            operations[operation.method] = operation.describe(operations[operation.method])
    components = generated.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas.update(SCHEMAS)
    # FastAPI documents a 422 for its validation errors, which this app answers with its 400
    # page instead; nothing described here refers to them.
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    components.setdefault("securitySchemes", {}).update({
        "postmark": {"type": "http", "scheme": "basic",
                     "description": "Any user name; the password is REGIMEN_WEBHOOK_SECRET."},
        "admin": {"type": "http", "scheme": "basic",
                  "description": "Any user name; the password is REGIMEN_ADMIN_PASSWORD."},
    })
    return generated


def install_openapi(app: FastAPI) -> None:
    """Serve the described schema at /openapi.json (built once, on first request)."""

    def openapi() -> JsonSchema:
        if app.openapi_schema is None:
            app.openapi_schema = describe(get_openapi(
                title=app.title, version=app.version, routes=app.routes, description=ABOUT))
        return app.openapi_schema

    # FastAPI's documented way to replace the schema: its /openapi.json route calls app.openapi.
    app.openapi = openapi  # type: ignore[method-assign]
