"""Follow-up lessons as the author writes them in a regimen's file: when each goes out after the
reader confirmed, what it says (Markdown), and when it is left out.

    lessons:
      - key: how-it-should-feel        # its short name in statistics, once per regimen
        after: 2 days                  # whole days or weeks after the reader confirmed
        subject: How the gentle back exercise should feel
        about: gentle-back-exercise    # optional: skipped once the reader marked it done
        skip_if: {unit_done: 1}        # optional: skipped once the reader finished Unit 1
        body: |
          Markdown. [The gentle back exercise](exercise:gentle-back-exercise) links to its
          video through the reader's own counted link; [Free Your Back!](program:free_your_back)
          to the program's purchase page. {next_exercise}, {progress} and {regimen_link} are
          the reader's own, as they stand when the lesson is sent.

Delays are whole days because a lesson goes out at the hour of day the reader confirmed: a fair
stand-in for their waking hours, where one hour for everyone would wake half the world. A
lesson that links to a program (`program:`) pitches it: a reader who has already followed a
purchase link of every program it pitches is not sent it.
"""

from __future__ import annotations

import functools
import re
from datetime import timedelta
from typing import Annotated, Self

from markdown_it import MarkdownIt
from markdown_it.token import Token
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

# The reader's own values a body may name, as {name}.
VARIABLES = {
    "next_exercise": "a link to the reader's next exercise (the first not done)",
    "progress": "how many of the regimen's exercises the reader has marked done",
    "regimen_link": "a link to the reader's regimen page",
}
# Link schemes of a body, each turned into the reader's own counted link.
EXERCISE_SCHEME = "exercise:"
PROGRAM_SCHEME = "program:"

_VARIABLE = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")
_DELAY = re.compile(r"^\s*(\d+)\s*(day|days|week|weeks)\s*$")

# CommonMark without raw HTML: a lesson is sent as the service's own mail, in its layout.
markdown = MarkdownIt("commonmark", {"html": False})


def _days(value: object) -> object:
    """"2 days", "1 week" -> whole days; anything else is left for the error message."""
    if isinstance(value, str) and (found := _DELAY.match(value)):
        number, unit = int(found.group(1)), found.group(2)
        return number * 7 if unit.startswith("week") else number
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ValueError("write the delay as whole days or weeks after confirming, e.g. "
                     "\"2 days\" or \"1 week\" (a lesson goes out at the hour of day the "
                     "reader confirmed)")


Days = Annotated[int, BeforeValidator(_days), Field(ge=0, le=3650)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class SkipIf(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # The unit's number, from 1: the lesson is left out once every exercise of it is done.
    unit_done: int = Field(ge=1)


class Lesson(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    key: Annotated[str, Field(pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$", max_length=80)]
    after: Days
    subject: Text
    body: Text
    about: str | None = None
    skip_if: SkipIf | None = None

    @model_validator(mode="after")
    def _variables_known(self) -> Self:
        unknown = sorted({name for name in variables(self.body) if name not in VARIABLES})
        if unknown:
            raise ValueError(f"unknown variable(s) {', '.join('{' + n + '}' for n in unknown)} "
                             f"in body; known: {', '.join('{' + n + '}' for n in VARIABLES)}")
        return self

    @functools.cached_property
    def delay(self) -> timedelta:
        return timedelta(days=self.after)

    @functools.cached_property
    def _links(self) -> tuple[str, ...]:
        # Parsed once: the scheduler asks for each due reader.
        return tuple(str(token.attrs["href"]) for token in _inline_tokens(self.body)
                     if token.type == "link_open")

    def links(self) -> list[str]:
        """Every link target in the body, in order (`exercise:…`, `program:…` or addresses)."""
        return list(self._links)

    def exercises(self) -> list[str]:
        """The exercises the body links to, by slug."""
        return [href.removeprefix(EXERCISE_SCHEME) for href in self.links()
                if href.startswith(EXERCISE_SCHEME)]

    def programs(self) -> list[str]:
        """The programs the body links to (and so pitches), by key."""
        return [href.removeprefix(PROGRAM_SCHEME) for href in self.links()
                if href.startswith(PROGRAM_SCHEME)]


def variables(body: str) -> list[str]:
    """The {names} a body uses, in order; `{{` and `}}` are literal braces."""
    return [found.group(1).strip() for found in _VARIABLE.finditer(body)
            if found.group(1) is not None]


def fill(body: str, values: dict[str, str]) -> str:
    """The body with each {name} replaced by its value and `{{`, `}}` by single braces."""
    def replace(found: re.Match[str]) -> str:
        if found.group(1) is None:
            return found.group(0)[0]
        return values.get(found.group(1).strip(), found.group(0))

    return _VARIABLE.sub(replace, body)


def _inline_tokens(body: str) -> list[Token]:
    # Variables stand for links: the placeholder keeps the body's Markdown as written.
    tokens = markdown.parse(fill(body, dict.fromkeys(VARIABLES, "")))
    return [child for token in tokens if token.children for child in token.children]


_NUMBERS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


def promise(lessons: list[Lesson]) -> str:
    """What readers are told before they agree, on the form, the confirmation mail and the
    confirm page, in one plain line: e.g. "Then three short lessons by email over 12 days; stop
    them any time." Empty for a regimen without lessons. Its words are part of the consent's
    wording version: change them and new consents say so."""
    if not lessons:
        return ""
    count = len(lessons)
    number = _NUMBERS[count] if count < len(_NUMBERS) else str(count)
    days = max(lesson.after for lesson in lessons)
    what = "one short lesson" if count == 1 else f"{number} short lessons"
    when = f"in {days} day{'s' if days != 1 else ''}" if count == 1 else \
        f"over {days} days"
    return f"Then {what} by email {when}; stop them any time."
