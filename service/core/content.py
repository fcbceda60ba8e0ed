"""The regimen content: YAML in, a validated `Catalog` of regimens out, or errors that name the
file, the line and the field so the author can fix them without reading Python.

The content is either a folder (the usual case, many regimens)

    content/site.yaml              author, site_name, site_url; optional default and order
    content/regimens/<key>.yaml    one regimen each; the file's name is its key

or a single regimen file holding the site fields too (a one-regimen site, the older format).
A regimen's key is its short name in links and statistics, so it is a slug: lowercase letters,
digits and hyphens.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Self, TypeVar
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from service.core.lessons import Lesson
from service.core.urls import is_web_address

KEY_PATTERN = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"
KEY_MAX_LENGTH = 80
Slug = Annotated[str, Field(pattern=KEY_PATTERN, max_length=KEY_MAX_LENGTH)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
ProgramKey = Annotated[str, StringConstraints(min_length=1, max_length=KEY_MAX_LENGTH)]

# The regimen page's first step, before any exercise, as the post asks: read it all through
# once. Marked done like an exercise, so no exercise may take its name.
READ_THROUGH = "read-it-through"

# The folder's layout.
SITE_FILE = "site.yaml"
REGIMENS_DIR = "regimens"
SUFFIXES = (".yaml", ".yml")
SITE_FIELDS = ("author", "site_name", "site_url")


def _http_url(value: str) -> str:
    if not is_web_address(value):
        raise ValueError("must be a full web address starting with https://")
    return value


Url = Annotated[str, AfterValidator(_http_url)]

# Hosts the shipped example uses, so `regimen content check` can list what is left to replace.
EXAMPLE_HOSTS = ("example.com", "example.org", "example.net")


def is_example(url: str) -> bool:
    """Whether `url` is a placeholder still to be replaced."""
    return urlsplit(url).hostname in EXAMPLE_HOSTS


# The service's own pages at /<name>: a regimen with one of these keys could never show its
# hosted form at /<key>.
TAKEN_KEYS = frozenset({"admin", "check-inbox", "confirm", "embed", "erase", "healthz", "metrics",
                        "r", "readyz", "static", "subscribe", "unsubscribe", "webhooks"})


def is_key(text: str) -> bool:
    """Whether `text` can be a regimen's key (and so its file's name, without .yaml)."""
    return (len(text) <= KEY_MAX_LENGTH and re.fullmatch(KEY_PATTERN, text) is not None
            and text not in TAKEN_KEYS)


class ContentError(Exception):
    """The content cannot be used; `problems` lists each as 'line N: field: message', led by
    the file's path within the folder when `path` is a folder ('regimens/back.yaml: line N:
    ...')."""

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


class NextStep(_Strict):
    """What the reader is offered once they have done every exercise of a unit: a program
    (by its key under `programs:`, linked to its purchase page) or any page (`url`, e.g. a
    consultation)."""

    title: Text
    note: str = ""
    url: Url | None = None
    program: str | None = None

    @model_validator(mode="after")
    def _exactly_one_destination(self) -> Self:
        if (self.url is None) == (self.program is None):
            raise ValueError("give exactly one of url (any page) or program (the key of a "
                             "program under programs:)")
        return self


class Unit(_Strict):
    title: Text
    note: str = ""
    exercises: list[Exercise] = Field(min_length=1)
    # Shown on the regimen page once the reader has marked every exercise of the unit done.
    next_steps: list[NextStep] = Field(default_factory=list)


class _Site(_Strict):
    """The site-wide part: the same for every regimen."""

    author: Text
    site_name: Text
    site_url: Url


class _SiteFile(_Site):
    """site.yaml. `default` and `order` name regimens by key; the keys there are (given in the
    validation context as "keys") are those of the files in regimens/."""

    default: str | None = None
    order: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _keys_exist(self, info: ValidationInfo) -> Self:
        keys = (info.context or {}).get("keys")
        if not keys:  # no regimen files: said once, elsewhere
            return self
        problems: list[tuple[Loc, str]] = []
        if self.default is not None and self.default not in keys:
            problems.append((("default",), _no_file(self.default)))
        seen: set[str] = set()
        for index, key in enumerate(self.order):
            if key not in keys:
                problems.append((("order", index), _no_file(key)))
            elif key in seen:
                problems.append((("order", index), f"{key!r} is listed twice"))
            seen.add(key)
        if problems:
            raise _Misplaced(problems)
        return self


def _no_file(key: str) -> str:
    return f"no regimen has the key {key!r} (there is no file {REGIMENS_DIR}/{key}.yaml)"


class _Body(_Strict):
    """A regimen file in regimens/: the regimen without the site-wide part."""

    title: Text
    intro: Text
    # A place to keep every URL together; exercises refer to them with YAML aliases.
    links: dict[str, Url] = Field(default_factory=dict)
    # A program's key names it in links and statistics (stored with each click on it).
    programs: dict[ProgramKey, Program] = Field(default_factory=dict)
    units: list[Unit] = Field(min_length=1)
    # Follow-up mails after confirmation (service.core.lessons).
    lessons: list[Lesson] = Field(default_factory=list)

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
                elif exercise.slug == READ_THROUGH:
                    problems.append(((*where, "slug"),
                                     f"{READ_THROUGH!r} names the page's first step (reading "
                                     "the regimen through); give the exercise another slug"))
                seen.add(exercise.slug)
                if exercise.program is not None and exercise.program not in self.programs:
                    problems.append(((*where, "program"),
                                     f"program {exercise.program!r} is not under programs:"))
            for n, step in enumerate(unit.next_steps):
                if step.program is not None and step.program not in self.programs:
                    problems.append((("units", u, "next_steps", n, "program"),
                                     f"program {step.program!r} is not under programs:"))
        problems += self._lesson_problems(seen)
        if problems:
            raise _Misplaced(problems)
        return self


    def _lesson_problems(self, slugs: set[str]) -> list[tuple[Loc, str]]:
        problems: list[tuple[Loc, str]] = []
        keys: set[str] = set()
        for n, lesson in enumerate(self.lessons):
            where = ("lessons", n)
            if lesson.key in keys:
                problems.append(((*where, "key"), f"lesson key {lesson.key!r} is used twice"))
            keys.add(lesson.key)
            if lesson.about is not None and lesson.about not in slugs:
                problems.append(((*where, "about"), f"no exercise has the slug {lesson.about!r}"))
            if lesson.skip_if is not None and lesson.skip_if.unit_done > len(self.units):
                problems.append(((*where, "skip_if", "unit_done"),
                                 f"there is no unit {lesson.skip_if.unit_done} (the regimen "
                                 f"has {len(self.units)})"))
            for slug in lesson.exercises():
                if slug not in slugs:
                    problems.append(((*where, "body"), f"links to exercise:{slug}, but no "
                                                       "exercise has that slug"))
            for href in lesson.links():
                if not (href.startswith(("exercise:", "program:")) or is_web_address(href)):
                    problems.append(((*where, "body"), f"links to {href!r}: a link is "
                                     "exercise:SLUG, program:KEY or a full web address "
                                     "starting with https://"))
            for key in lesson.programs():
                if key not in self.programs:
                    problems.append(((*where, "body"), f"links to program:{key}, but "
                                                       f"{key!r} is not under programs:"))
        return problems


class _OneFile(_Body, _Site):
    """A single-file site: one regimen with the site-wide part in the same file."""


class Regimen(_OneFile):
    """One regimen as served: its file's content, the site-wide part, and its key (the file's
    name, never written in the file)."""

    key: Slug

    def exercises(self) -> list[Exercise]:
        return [exercise for unit in self.units for exercise in unit.exercises]

    def destination(self, exercise: Exercise) -> str:
        """Where the exercise's one link leads: its free video or its program's purchase page."""
        if exercise.video_url is not None:
            return exercise.video_url
        assert exercise.program is not None
        return self.programs[exercise.program].url

    def next_step_destination(self, step: NextStep) -> str:
        """Where a unit's next step leads: its page, or its program's purchase page."""
        if step.url is not None:
            return step.url
        assert step.program is not None
        return self.programs[step.program].url

    def example_urls(self) -> list[str]:
        return sorted({url for url in [self.site_url, *self.own_urls()] if is_example(url)})

    def own_urls(self) -> list[str]:
        """Every address the regimen's own file holds (not the site's): `links:`, programs,
        exercises, next steps and the lessons' links, each once."""
        urls = {*self.links.values(), *(program.url for program in self.programs.values())}
        urls |= {self.destination(exercise) for exercise in self.exercises()}
        urls |= {self.next_step_destination(step) for unit in self.units
                 for step in unit.next_steps}
        urls |= {href for lesson in self.lessons for href in lesson.links()
                 if is_web_address(href)}
        return sorted(urls)

    def lesson(self, key: str) -> Lesson | None:
        return next((lesson for lesson in self.lessons if lesson.key == key), None)


@dataclass(frozen=True)
class Catalog:
    """Every regimen the site serves, by key, in listing order, and the default one."""

    regimens: dict[str, Regimen]
    default: Regimen
    # The file each regimen was read from, by key; and the file holding the site-wide part
    # (site.yaml, or for a single-file site that one file).
    sources: dict[str, Path]
    site_source: Path

    def get(self, key: str) -> Regimen | None:
        return self.regimens.get(key)

    def keys(self) -> list[str]:
        return list(self.regimens)

    def source(self, key: str) -> Path:
        return self.sources[key]


def load_content(path: Path) -> Catalog:
    """The content at `path`, a folder (site.yaml and regimens/) or a single regimen file.

    Raises ContentError listing every problem of every file at once."""
    if path.is_dir():
        return _load_folder(path)
    if not path.exists():
        raise ContentError(path, ["no such folder or file: the content is a folder (site.yaml "
                                  "and regimens/) or a single regimen file"])
    problems = [] if is_key(path.stem) else [_bad_file_name(path)]
    try:
        one = _parse(path, _OneFile)
    except ContentError as exc:
        problems += exc.problems
    if problems:
        raise ContentError(path, problems)
    regimen = _regimen(path.stem, one, one)
    return Catalog(regimens={regimen.key: regimen}, default=regimen,
                   sources={regimen.key: path}, site_source=path)


def load_regimen(path: Path) -> Regimen:
    """The regimen served by default from the content at `path` (for a single file: its one
    regimen)."""
    return load_content(path).default


def content_files(path: Path) -> list[Path]:
    """The files the content at `path` is read from (for a folder: site.yaml, then each regimen
    file, whether present or not): what to watch for changes."""
    if not path.is_dir():
        return [path]
    try:
        return [path / SITE_FILE, *_regimen_files(path / REGIMENS_DIR)]
    except OSError:
        return [path / SITE_FILE]


def _regimen_files(folder: Path) -> list[Path]:
    # Hidden files are left alone: editors keep their locks and backups there (.#back.yaml).
    return sorted(file for file in folder.iterdir()
                  if file.suffix.lower() in SUFFIXES and not file.name.startswith(".")
                  and file.is_file())


def _load_folder(folder: Path) -> Catalog:
    problems: list[str] = []
    try:
        files = _regimen_files(folder / REGIMENS_DIR)
    except OSError as exc:
        files = []
        if not (folder / REGIMENS_DIR).is_dir():
            problems.append(f"{REGIMENS_DIR}/: missing; put one file per regimen in it, "
                            f"e.g. {REGIMENS_DIR}/back-pain.yaml")
        else:
            problems.append(f"{REGIMENS_DIR}/: cannot read the folder: {exc.strerror}")
    else:
        if not files:
            problems.append(f"{REGIMENS_DIR}/: no regimen files (*.yaml) in it; add one, "
                            f"e.g. {REGIMENS_DIR}/back-pain.yaml")
    by_key: dict[str, Path] = {}
    bodies: dict[str, _Body] = {}
    for file in files:
        name = file.relative_to(folder).as_posix()
        key = file.stem
        if not is_key(key):
            problems.append(f"{name}: {_bad_file_name(file)}")
        elif key in by_key:
            first = by_key[key].relative_to(folder).as_posix()
            problems.append(f"{name}: two regimens with the key {key!r} ({first} and {name}); "
                            "rename or remove one")
            continue
        else:
            by_key[key] = file
        try:
            body = _parse(file, _Body)
        except ContentError as exc:
            problems += [f"{name}: {problem}" for problem in exc.problems]
        else:
            if by_key.get(key) == file:
                bodies[key] = body
    site: _SiteFile | None = None
    site_path = folder / SITE_FILE
    if not site_path.exists():
        problems.append(f"{SITE_FILE}: missing; it holds {', '.join(SITE_FIELDS)}, "
                        "shared by every regimen")
    else:
        try:
            site = _parse(site_path, _SiteFile, keys=set(by_key))
        except ContentError as exc:
            problems += [f"{SITE_FILE}: {problem}" for problem in exc.problems]
    if problems or site is None:
        raise ContentError(folder, problems)
    order = [*site.order, *sorted(key for key in bodies if key not in site.order)]
    regimens = {key: _regimen(key, bodies[key], site) for key in order}
    default = regimens[site.default] if site.default is not None else regimens[order[0]]
    return Catalog(regimens=regimens, default=default,
                   sources={key: by_key[key] for key in order}, site_source=site_path)


def _regimen(key: str, body: _Body, site: _Site) -> Regimen:
    fields = {name: getattr(body, name) for name in _Body.model_fields}
    fields |= {name: getattr(site, name) for name in _Site.model_fields}
    return Regimen.model_validate({**fields, "key": key})


def _bad_file_name(path: Path) -> str:
    if path.stem in TAKEN_KEYS:
        return (f"{path.stem!r} is the name of one of the service's own pages; the regimen's "
                f"hosted form would be out of reach: name the file e.g. back-pain{path.suffix}")
    return (f"the file's name is the regimen's key in links and statistics: {path.stem!r} "
            f"must be lowercase letters, digits and hyphens (at most {KEY_MAX_LENGTH}), "
            f"e.g. back-pain{path.suffix}")


M = TypeVar("M", bound=BaseModel)


def _parse(path: Path, model: type[M], **context: Any) -> M:
    """One YAML file validated as `model`; ContentError(path, ['line N: field: message', ...])."""
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
    if not isinstance(data, dict):
        what = "empty" if data is None else f"a {type(data).__name__}, not fields"
        raise ContentError(path, [f"line {_line_of(node, ())}: (top level): the file is {what}; "
                                  "it should hold fields, one per line (name: value)"])
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            cause = error.get("ctx", {}).get("error")
            located = cause.problems if isinstance(cause, _Misplaced) else \
                [(error["loc"], _message(error["type"], error["loc"], error["msg"], model, path))]
            for loc, message in located:
                field = ".".join(str(part) for part in loc) or "(top level)"
                problems.append(f"line {_line_of(node, loc)}: {field}: {message}")
        raise ContentError(path, problems) from None


def _message(kind: str, loc: Loc, message: str, model: type[BaseModel], path: Path) -> str:
    """Pydantic's message, or a clearer one where the author put a field in the wrong file."""
    if kind == "extra_forbidden" and len(loc) == 1:
        if loc[0] in SITE_FIELDS and model is _Body:
            return f"belongs in {SITE_FILE}, once for every regimen; remove it here"
        if loc[0] == "key":
            return (f"a regimen's key is its file's name ({path.stem!r} here); "
                    "remove this line, or rename the file")
    return message.removeprefix("Value error, ")


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
