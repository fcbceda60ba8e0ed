"""The pieces of /openapi.json that many routes share: the error page's JSON body, the answers
that most routes can give, and the request body of a route that reads its body itself.

Each route declares in `responses=` every status it can answer with; FastAPI builds the
description from that, and tests/integration/test_fuzz.py holds the running app to it with
schemathesis, so a route that starts answering differently fails the tests until its
declaration says so too.

A `"model"` in an answer is written under the route's own media type: routes that answer
pages declare `response_class=Response`, which has none, so the model is the JSON body.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

HTML = "text/html"
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"
JAVASCRIPT = "text/javascript"
PLAIN = "text/plain"

TEXT: dict[str, Any] = {"type": "string"}
Answer = dict[str, Any]  # one entry of a route's `responses=`
Answers = dict[int | str, Answer]  # a route's `responses=`


class Sent(BaseModel):
    """A JSON body the service sends: exactly these fields."""

    model_config = ConfigDict(extra="forbid")


class Error(Sent):
    """The error page, as JSON."""

    error: str
    detail: str


def page(description: str) -> Answer:
    return {"description": description, "content": {HTML: {"schema": TEXT}}}


def error(description: str) -> Answer:
    """The error page: HTML for browsers; JSON for a request sent as JSON or accepting only
    JSON (service.web.errors.wants_json)."""
    return {"description": description, "model": Error, "content": {HTML: {"schema": TEXT}}}


def see_other(description: str) -> Answer:
    return {"description": description, "headers": {
        "Location": {"required": True, "schema": {"type": "string", "format": "uri-reference"}},
    }}


BAD_LINK = error("The link is not one of ours: mistyped, cut short or tampered with.")
UNKNOWN_LINK = error("Nobody holds this link any more: the reader was erased or their links "
                     "were revoked. Also any path that is not a route, e.g. a token holding "
                     "a slash.")
TOO_MANY: Answer = {
    **error("Too many requests from this address: the 429 page; `Retry-After` says how many "
            "seconds to wait."),
    "headers": {"Retry-After": {"required": True, "schema": {"type": "integer", "minimum": 1}}},
}
WRONG_TOO_OFTEN: Answer = {
    **TOO_MANY,
    **error("Too many wrong passwords from this address lately "
            "(REGIMEN_AUTH_FAILURES_PER_IP): even the right one waits `Retry-After` seconds."),
}
# The middleware refuses any body over the limit, on every route that takes one.
TOO_LARGE = error("The request body is over REGIMEN_MAX_BODY_BYTES.")
# Every router's `responses=`: the catch-all handler turns any crash into the error page.
CRASHED: Answers = {
    500: error("Something went wrong on our side; the page says so, never a stack trace."),
    503: {**error("The database cannot be used just now (down, restarting, its disk full); "
                  "`Retry-After` says when to try again."),
          "headers": {"Retry-After": {"required": True,
                                      "schema": {"type": "integer", "minimum": 1}}}},
}


def request_body(model: type[BaseModel], *media_types: str,
                 required: bool = False) -> dict[str, Any]:
    """`openapi_extra` for a body the route reads itself, which FastAPI cannot see: the
    model's schema, with its nested models written out in place, since FastAPI puts in
    `components` only the models it sees."""
    schema = model.model_json_schema()
    nested = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, list):
            return [inline(item) for item in node]
        if not isinstance(node, dict):
            return node
        written = {key: inline(value) for key, value in node.items() if key != "$ref"}
        if "$ref" in node:
            return {**inline(nested[node["$ref"].rsplit("/", 1)[-1]]), **written}
        return written

    return {"requestBody": {"required": required, "content": {
        media_type: {"schema": inline(schema)} for media_type in media_types}}}
