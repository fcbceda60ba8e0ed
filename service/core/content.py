"""The regimen content file: YAML in, a validated `Regimen` out, or errors that name the field
and the line so the author can fix the file without reading Python."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Self
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from service.core.urls import is_web_address

Slug = Annotated[str, Field(pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$", max_length=80)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


def _http_url(value: str) -> str:
    if not is_web_address(value):
        raise ValueError("must be a full web address starting with https://")
    return value


Url = Annotated[str, AfterValidator(_http_url)]

# Hosts the shipped example uses, so `regimen content check` can list what is left to replace.
EXAMPLE_HOSTS = ("example.com", "example.org", "example.net")


class ContentError(Exception):
    """The content file cannot be used; `problems` lists each as 'line N: field: message'."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        super().__init__(f"{path}: " + "; ".join(problems))
        self.path = path
        self.problems = problems


Loc = tuple[int | str, ...]


class _Misplaced(ValueError):
    """Problems the whole file shows but that belong to particular fields: pydantic would report
    them at the top level, so each keeps its own location to lead the author to its line."""

    def __init__(self, problems: list[tuple[Loc, str]]) -> None:
        super().__init__("; ".join(message for _, message in problems))
        self.problems = problems


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Program(_Strict):
    name: Text
    url: Url


class Exercise(_Strict):
    slug: Slug
    title: Text
    note: Text
    video_url: Url | None = None
    program: str | None = None

    @model_validator(mode="after")
    def _exactly_one_destination(self) -> Self:
        if (self.video_url is None) == (self.program is None):
            raise ValueError("give exactly one of video_url (a free video) or program "
                             "(the key of the program that holds it)")
        return self

    @property
    def is_free(self) -> bool:
        return self.video_url is not None


class Unit(_Strict):
    title: Text
    note: str = ""
    exercises: list[Exercise] = Field(min_length=1)


class Regimen(_Strict):
    title: Text
    author: Text
    site_name: Text
    site_url: Url
    intro: Text
    # A place to keep every URL together; exercises refer to them with YAML aliases.
    links: dict[str, Url] = Field(default_factory=dict)
    programs: dict[str, Program] = Field(default_factory=dict)
    units: list[Unit] = Field(min_length=1)

    @model_validator(mode="after")
    def _references_resolve(self) -> Self:
        problems: list[tuple[Loc, str]] = []
        seen: set[str] = set()
        for u, unit in enumerate(self.units):
            for e, exercise in enumerate(unit.exercises):
                where = ("units", u, "exercises", e)
                if exercise.slug in seen:
                    problems.append(((*where, "slug"),
                                     f"exercise slug {exercise.slug!r} is used twice"))
                seen.add(exercise.slug)
                if exercise.program is not None and exercise.program not in self.programs:
                    problems.append(((*where, "program"),
                                     f"program {exercise.program!r} is not under programs:"))
        if problems:
            raise _Misplaced(problems)
        return self

    def exercises(self) -> list[Exercise]:
        return [exercise for unit in self.units for exercise in unit.exercises]

    def destination(self, exercise: Exercise) -> str:
        """Where the exercise's one link leads: its free video or its program's purchase page."""
        if exercise.video_url is not None:
            return exercise.video_url
        assert exercise.program is not None
        return self.programs[exercise.program].url

    def example_urls(self) -> list[str]:
        urls = [self.site_url, *(program.url for program in self.programs.values())]
        urls += [self.destination(exercise) for exercise in self.exercises()]
        return sorted({url for url in urls if urlsplit(url).hostname in EXAMPLE_HOSTS})


def load_regimen(path: Path) -> Regimen:
    try:
        source = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ContentError(path, [f"cannot read the file: {exc.strerror}"]) from None
    except UnicodeDecodeError as exc:
        # An editor that saved in Latin-1 or Windows-1252: say so, not a crash.
        raise ContentError(path, [f"byte {exc.start}: not UTF-8; save the file as UTF-8"]) \
            from None
    try:
        node = yaml.compose(source, Loader=yaml.SafeLoader)
        data = yaml.safe_load(source)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise ContentError(path, [f"{where}not valid YAML: {getattr(exc, 'problem', exc)}"]) \
            from None
    try:
        return Regimen.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            cause = error.get("ctx", {}).get("error")
            located = cause.problems if isinstance(cause, _Misplaced) else \
                [(error["loc"], error["msg"].removeprefix("Value error, "))]
            for loc, message in located:
                field = ".".join(str(part) for part in loc) or "(top level)"
                problems.append(f"line {_line_of(node, loc)}: {field}: {message}")
        raise ContentError(path, problems) from None


def _line_of(node: yaml.Node | None, loc: Loc) -> int:
    """Follow a pydantic error location through the YAML tree to the nearest line."""
    line = node.start_mark.line + 1 if node is not None else 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            node = next((value for key, value in node.value if key.value == part), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) \
                and part < len(node.value):
            node = node.value[part]
        else:
            break
        if node is None:
            break
        line = node.start_mark.line + 1
    return line
