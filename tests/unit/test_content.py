"""The regimen content: the shipped folder, a single file, errors that lead the author to the
file, line and field, and `regimen content check` (with --online against a real local web
server)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from service.cli import app
from service.core.content import ContentError, Regimen, load_content, load_regimen
from service.core.settings import Settings
from tests.helpers import PROJECT_ROOT, shipped_single_file

SHIPPED = PROJECT_ROOT / "content"

# Line numbers below are counted in this text.
GOOD = """\
title: "A regimen"
author: "An Author"
site_name: "A blog"
site_url: "https://blog.example.org/"
intro: "Read it through once."
programs:
  back:
    name: "Free Your Back!"
    url: "https://shop.example.org/back"
units:
  - title: "Unit 1"
    exercises:
      - slug: gentle-back
        title: "Gentle back"
        note: "Start here."
        video_url: "https://video.example.org/gentle"
      - slug: psoas
        title: "Psoas release"
        note: "Later."
        program: back
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "regimen.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_shipped_example_loads() -> None:
    catalog = load_content(SHIPPED)
    assert catalog.keys() == ["neck-and-shoulders", "sacro-iliac"]
    regimen = catalog.default
    assert regimen.key == "sacro-iliac"
    assert catalog.get("sacro-iliac") is regimen
    assert catalog.source("sacro-iliac") == SHIPPED / "regimens" / "sacro-iliac.yaml"
    assert catalog.site_source == SHIPPED / "site.yaml"
    assert regimen.author == "Lawrence Gold"
    first = regimen.exercises()[0]
    assert (first.slug, first.title) == ("gentle-back-exercise", "The gentle back exercise")
    for regimen in catalog.regimens.values():
        assert all(exercise.is_free for exercise in regimen.units[0].exercises)
        later = [exercise for unit in regimen.units[1:] for exercise in unit.exercises]
        assert later
        assert all(exercise.program in regimen.programs for exercise in later)


def test_the_second_regimen_is_a_marked_example_with_placeholders_only() -> None:
    source = SHIPPED / "regimens" / "neck-and-shoulders.yaml"
    assert "THIS IS AN EXAMPLE" in source.read_text().split("\ntitle:")[0]
    regimen = load_content(SHIPPED).regimens["neck-and-shoulders"]
    assert (len(regimen.units), len(regimen.exercises())) == (2, 6)
    assert regimen.own_urls()
    assert all(url.startswith("https://example.com/replace-me/") for url in regimen.own_urls())


def test_the_shipped_example_lists_its_placeholders() -> None:
    regimen = load_content(SHIPPED).default
    every_url = {regimen.site_url, *(program.url for program in regimen.programs.values()),
                 *(regimen.destination(exercise) for exercise in regimen.exercises()),
                 *(regimen.next_step_destination(step) for unit in regimen.units
                   for step in unit.next_steps)}
    assert regimen.example_urls() == sorted(every_url)
    assert "https://example.com/replace-me/video/gentle-back-exercise" in every_url
    assert "https://example.com/replace-me/consultation" in every_url


def test_the_shipped_regimen_works_as_a_single_file(tmp_path: Path) -> None:
    (tmp_path / "sacro-iliac.yaml").write_text(shipped_single_file())
    catalog = load_content(tmp_path / "sacro-iliac.yaml")
    assert catalog.keys() == ["sacro-iliac"]
    assert catalog.default == load_content(SHIPPED).default
    assert catalog.site_source == catalog.source("sacro-iliac") == tmp_path / "sacro-iliac.yaml"


def test_a_file_with_real_addresses_has_no_placeholders(tmp_path: Path) -> None:
    good = GOOD.replace(".example.org", ".lawrencegold.test")
    assert load_regimen(write(tmp_path, good)).example_urls() == []


@pytest.mark.parametrize(("old", "new", "problem"), [
    ("program: back", 'program: back\n        video_url: "https://video.example.org/p"',
     "line 17: units.0.exercises.1: give exactly one of video_url"),
    ("        program: back\n", "", "line 17: units.0.exercises.1: give exactly one of"),
    ("program: back", "program: front",
     "line 20: units.0.exercises.1.program: program 'front' is not under programs:"),
    ("slug: psoas", "slug: gentle-back",
     "line 17: units.0.exercises.1.slug: exercise slug 'gentle-back' is used twice"),
    ('video_url: "https://video', 'video_url: "ftp://video',
     "line 16: units.0.exercises.0.video_url: must be a full web address"),
    ('site_url: "https://blog.example.org/"', 'site_url: "blog.example.org"',
     "line 4: site_url: must be a full web address"),
    ('        title: "Gentle back"\n', "", "line 13: units.0.exercises.0.title: Field required"),
    ('title: "Psoas release"', "title: '   '",
     "line 18: units.0.exercises.1.title: String should have at least 1 character"),
    ("slug: psoas", "slug: Psoas Release", "line 17: units.0.exercises.1.slug: String should"),
    ("        note: \"Later.\"", "        note: \"Later.\"\n        vidoe_url: x",
     "line 20: units.0.exercises.1.vidoe_url: Extra inputs are not permitted"),
    ('    url: "https://shop', '    url: "shop', "line 9: programs.back.url: must be a full web"),
    ('        note: "Start here."', '\tnote: "Start here."',
     "line 15: not valid YAML: found character '\\t' that cannot start any token"),
    ('note: "Start here."', "note: *start",
     "line 15: not valid YAML: found undefined alias 'start'"),
    ("slug: psoas", "slug: read-it-through",
     "line 17: units.0.exercises.1.slug: 'read-it-through' names the page's first step"),
    ("        program: back\n", '        program: back\n    next_steps:\n      - title: "Go on"\n'
                            "        program: front\n",
     "line 23: units.0.next_steps.0.program: program 'front' is not under programs:"),
    ("        program: back\n", '        program: back\n    next_steps:\n      - title: "Go on"\n',
     "line 22: units.0.next_steps.0: give exactly one of url (any page) or program"),
    ("        program: back\n", '        program: back\n    next_steps:\n      - title: "Ask"\n'
                            '        url: "mailto:me"\n',
     "line 23: units.0.next_steps.0.url: must be a full web address"),
])
def test_a_broken_file_names_line_and_field(tmp_path: Path, old: str, new: str,
                                            problem: str) -> None:
    assert old in GOOD
    with pytest.raises(ContentError) as error:
        load_regimen(write(tmp_path, GOOD.replace(old, new, 1)))
    assert len(error.value.problems) == 1
    assert error.value.problems[0].startswith(problem)


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    broken = GOOD.replace("slug: psoas", "slug: gentle-back")
    broken = broken.replace("program: back", "program: front")
    with pytest.raises(ContentError) as error:
        load_regimen(write(tmp_path, broken))
    assert [problem.split(": ")[:2] for problem in error.value.problems] == [
        ["line 17", "units.0.exercises.1.slug"], ["line 20", "units.0.exercises.1.program"]]


def test_a_bad_address_behind_an_alias_points_where_it_is_written(tmp_path: Path) -> None:
    url = '"https://example.com/replace-me/video/gentle-back-exercise"'
    source = shipped_single_file()
    line = source.splitlines().index(f"  gentle_back: &gentle_back {url}") + 1
    with pytest.raises(ContentError) as error:
        load_regimen(write(tmp_path, source.replace(url, '"gentle-back-video"')))
    assert [problem.split(": ")[:2] for problem in error.value.problems] == [
        [f"line {line}", "links.gentle_back"], [f"line {line}", "units.0.exercises.0.video_url"]]


def test_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ContentError) as error:
        load_regimen(tmp_path / "nowhere.yaml")
    assert error.value.problems == ["no such folder or file: the content is a folder "
                                    "(site.yaml and regimens/) or a single regimen file"]


@pytest.mark.parametrize(("text", "problem"), [
    ("", "line 1: (top level): the file is empty; it should hold fields, one per line"),
    ("# nothing yet\n\n- title: x\n", "line 3: (top level): the file is a list, not fields;"),
])
def test_a_file_without_fields(tmp_path: Path, text: str, problem: str) -> None:
    with pytest.raises(ContentError) as error:
        load_regimen(write(tmp_path, text))
    [reported] = error.value.problems
    assert reported.startswith(problem)


def test_a_single_file_s_key_is_its_name(tmp_path: Path) -> None:
    assert load_regimen(write(tmp_path, GOOD)).key == "regimen"
    with pytest.raises(ContentError) as error:
        load_content(write(tmp_path, GOOD.replace('title: "A regimen"', 'key: "other"\n'
                                                  'title: "A regimen"', 1)))
    assert error.value.problems == ["line 1: key: a regimen's key is its file's name "
                                    "('regimen' here); remove this line, or rename the file"]
    badly_named = tmp_path / "My Regimen.yaml"
    badly_named.write_text(GOOD.replace("slug: psoas", "slug: gentle-back"))
    with pytest.raises(ContentError) as error:
        load_content(badly_named)
    assert [problem.split(": ")[0] for problem in error.value.problems] == [
        "the file's name is the regimen's key in links and statistics", "line 17"]
    assert "'My Regimen' must be lowercase letters, digits and hyphens" in \
        error.value.problems[0]


def test_a_regimen_cannot_be_read_from_yaml_without_its_key() -> None:
    with pytest.raises(ValueError, match="key"):
        Regimen.model_validate({"title": "t", "author": "a", "site_name": "s",
                                "site_url": "https://blog.example.org/", "intro": "i",
                                "units": [{"title": "u", "exercises": [
                                    {"slug": "s", "title": "t", "note": "n",
                                     "video_url": "https://video.example.org/"}]}]})


# A content folder

SITE = """\
author: "An Author"
site_name: "A blog"
site_url: "https://blog.example.org/"
"""
# GOOD without the site fields: three lines fewer, so GOOD's line N is its line N - 3.
BODY = GOOD.replace(SITE, "")
NECK = BODY.replace('"A regimen"', '"A neck regimen"')


def folder(tmp_path: Path, site: str = SITE, **regimens: str) -> Path:
    """tmp_path/content with `site` as site.yaml and each regimen as regimens/<name>, where
    `back_yaml="..."` is written to back.yaml."""
    root = tmp_path / "content"
    (root / "regimens").mkdir(parents=True)
    (root / "site.yaml").write_text(site)
    for name, text in regimens.items():
        stem, _, suffix = name.rpartition("_")
        (root / "regimens" / f"{stem.replace('_', '-')}.{suffix}").write_text(text)
    return root


def problems_of(root: Path) -> list[str]:
    with pytest.raises(ContentError) as error:
        load_content(root)
    assert error.value.path == root
    return error.value.problems


def test_a_folder_serves_each_regimen_under_its_file_name(tmp_path: Path) -> None:
    root = folder(tmp_path, back_yaml=BODY, stiff_neck_yml=NECK)
    (root / "regimens" / ".#back.yaml").write_text("an editor's lock file")
    (root / "regimens" / "notes.txt").write_text("not a regimen")
    catalog = load_content(root)
    assert catalog.keys() == ["back", "stiff-neck"]
    assert catalog.default is catalog.regimens["back"]
    neck = catalog.get("stiff-neck")
    assert neck is not None
    assert (neck.key, neck.title, neck.author, neck.site_url) == (
        "stiff-neck", "A neck regimen", "An Author", "https://blog.example.org/")
    assert catalog.source("stiff-neck") == root / "regimens" / "stiff-neck.yml"
    assert catalog.get("nowhere") is None


def test_a_regimen_cannot_take_the_name_of_a_page_of_the_service(tmp_path: Path) -> None:
    # /admin is the author's page: a regimen keyed "admin" could never show its form there.
    [problem] = problems_of(folder(tmp_path, back_yaml=BODY, admin_yaml=NECK))
    assert problem.startswith("regimens/admin.yaml: 'admin' is the name of one of the "
                              "service's own pages")


def test_site_yaml_chooses_the_default_and_the_order(tmp_path: Path) -> None:
    site = SITE + "default: stiff-neck\norder: [middle]\n"
    catalog = load_content(folder(tmp_path, site, back_yaml=BODY, stiff_neck_yaml=NECK,
                                  middle_yaml=BODY))
    # Those named first, the others alphabetically.
    assert catalog.keys() == ["middle", "back", "stiff-neck"]
    assert catalog.default.key == "stiff-neck"


def test_every_problem_of_every_file_is_reported_at_once(tmp_path: Path) -> None:
    site = SITE.replace('"https://blog.example.org/"', '"blog"') + \
        "default: nope\norder:\n  - back\n  - gone\n  - back\n"
    root = folder(tmp_path, site,
                  back_yaml=BODY.replace("slug: psoas", "slug: gentle-back"),
                  back_yml=NECK,
                  neck_yaml=SITE + NECK.replace("program: back", "program: front"),
                  Bad_Name_yaml=BODY)
    assert problems_of(root) == [
        "regimens/Bad-Name.yaml: the file's name is the regimen's key in links and "
        "statistics: 'Bad-Name' must be lowercase letters, digits and hyphens (at most 80), "
        "e.g. back-pain.yaml",
        "regimens/back.yaml: line 14: units.0.exercises.1.slug: exercise slug 'gentle-back' "
        "is used twice",
        "regimens/back.yml: two regimens with the key 'back' (regimens/back.yaml and "
        "regimens/back.yml); rename or remove one",
        "regimens/neck.yaml: line 1: author: belongs in site.yaml, once for every regimen; "
        "remove it here",
        "regimens/neck.yaml: line 2: site_name: belongs in site.yaml, once for every regimen; "
        "remove it here",
        "regimens/neck.yaml: line 3: site_url: belongs in site.yaml, once for every regimen; "
        "remove it here",
        "site.yaml: line 3: site_url: must be a full web address starting with https://",
    ]
    # Once the site's own fields are right, its keys are checked too.
    (root / "site.yaml").write_text(site.replace('"blog"', '"https://blog.example.org/"'))
    assert [p for p in problems_of(root) if p.startswith("site.yaml")] == [
        "site.yaml: line 4: default: no regimen has the key 'nope' "
        "(there is no file regimens/nope.yaml)",
        "site.yaml: line 7: order.1: no regimen has the key 'gone' "
        "(there is no file regimens/gone.yaml)",
        "site.yaml: line 8: order.2: 'back' is listed twice",
    ]


@pytest.mark.parametrize(("site", "problem"), [
    (SITE + "extra: 1\n", "site.yaml: line 4: extra: Extra inputs are not permitted"),
    (SITE.replace('author: "An Author"\n', ""), "site.yaml: line 1: author: Field required"),
    ("", "site.yaml: line 1: (top level): the file is empty"),
])
def test_a_broken_site_yaml(tmp_path: Path, site: str, problem: str) -> None:
    [reported] = problems_of(folder(tmp_path, site, back_yaml=BODY))
    assert reported.startswith(problem)


def test_a_folder_without_regimens_or_site(tmp_path: Path) -> None:
    root = folder(tmp_path)
    assert problems_of(root) == [
        "regimens/: no regimen files (*.yaml) in it; add one, e.g. regimens/back-pain.yaml"]
    (root / "regimens").rmdir()
    (root / "site.yaml").unlink()
    assert problems_of(root) == [
        "regimens/: missing; put one file per regimen in it, e.g. regimens/back-pain.yaml",
        "site.yaml: missing; it holds author, site_name, site_url, shared by every regimen"]


# `regimen content check`


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The command reads only what the test sets, and writes its dev secret under tmp_path."""
    for field in Settings.model_fields:
        monkeypatch.delenv(f"REGIMEN_{field.upper()}", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REGIMEN_DATA_DIR", str(tmp_path / "data"))
    return tmp_path


def check(content: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["content", "check", *args],
                                env={"REGIMEN_CONTENT_PATH": str(content)})
    return result.exit_code, result.output


def test_check_passes_the_shipped_folder_and_lists_placeholders_by_file(cli_env: Path) -> None:
    code, output = check(SHIPPED)
    assert code == 0, output
    site, neck, back = output.split(f"{SHIPPED}/")[1:]
    assert site.startswith("site.yaml: OK — 2 regimens, served by default: sacro-iliac.\n"
                           "1 example address is still to be replaced:\n"
                           "  https://example.com/replace-me/blog\n")
    assert neck.startswith("regimens/neck-and-shoulders.yaml: OK — 2 units, 6 exercises.\n"
                           "5 example addresses are still to be replaced:\n")
    assert back.startswith("regimens/sacro-iliac.yaml: OK — 3 units, 10 exercises.\n"
                           "8 example addresses are still to be replaced:\n")
    assert "  https://example.com/replace-me/video/gentle-back-exercise\n" in back
    assert "replace-me/blog" not in neck + back
    assert (cli_env / "data" / "secret_key").exists()


def test_check_passes_a_single_file(cli_env: Path) -> None:
    code, output = check(write(cli_env, shipped_single_file()))
    assert code == 0, output
    assert output.startswith(f"{cli_env / 'regimen.yaml'}: OK — 3 units, 10 exercises.\n"
                             "9 example addresses are still to be replaced:\n")
    assert "  https://example.com/replace-me/blog\n" in output


def test_check_fails_a_broken_file_naming_line_and_field(cli_env: Path) -> None:
    code, output = check(write(cli_env, GOOD.replace("program: back", "program: front")))
    assert code == 1
    assert "has problems:" in output
    assert "  line 20: units.0.exercises.1.program: program 'front' is not under" in output


def test_check_fails_a_broken_folder_naming_file_line_and_field(cli_env: Path) -> None:
    root = folder(cli_env, back_yaml=BODY, neck_yaml=NECK.replace("program: back",
                                                                  "program: front"))
    code, output = check(root)
    assert code == 1
    assert f"{root} has problems:\n" in output
    assert "  regimens/neck.yaml: line 17: units.0.exercises.1.program: program 'front' is " \
        "not under programs:" in output


class _Site(BaseHTTPRequestHandler):
    """Every path answers 200 except /gone (404); /no-head refuses HEAD as some sites do."""

    def do_HEAD(self) -> None:
        self._answer(405 if self.path == "/no-head" else None)

    def do_GET(self) -> None:
        self._answer(None)

    def _answer(self, status: int | None) -> None:
        self.send_response(status or (404 if self.path == "/gone" else 200))
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep the test output to what the command printed


@pytest.fixture
def site(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    # A developer's proxy must not be asked for 127.0.0.1; the lower-case name wins in httpx.
    monkeypatch.setenv("no_proxy", "*")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Site)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def _on(site: str, text: str) -> str:
    return (text.replace("https://blog.example.org", site)
                .replace("https://shop.example.org", site)
                .replace("https://video.example.org", site))


def test_check_online_passes_when_every_link_answers(cli_env: Path, site: str) -> None:
    code, output = check(write(cli_env, _on(site, GOOD.replace("/gentle", "/no-head"))),
                         "--online")
    assert code == 0, output
    assert "broken" not in output
    assert "Every link answered." in output


def test_check_online_reports_a_broken_link(cli_env: Path, site: str) -> None:
    code, output = check(write(cli_env, _on(site, GOOD.replace("/back", "/gone"))), "--online")
    assert code == 1
    assert f"  broken: {site}/gone (HTTP 404)\n" in output
    assert output.count("broken:") == 1
    assert "Every link answered." not in output


def test_check_online_names_the_file_of_each_broken_link(cli_env: Path, site: str) -> None:
    root = folder(cli_env, _on(site, SITE), back_yaml=_on(site, BODY),
                  neck_yaml=_on(site, NECK.replace("/back", "/gone")))
    code, output = check(root, "--online")
    assert code == 1
    assert output.endswith(f"{root}/regimens/neck.yaml:\n  broken: {site}/gone (HTTP 404)\n")


LESSONS = GOOD + """\
lessons:
  - key: first
    after: 2 days
    subject: "How it should feel"
    body: |
      Try [the gentle back](exercise:gentle-back), then {next_exercise}.
"""


@pytest.mark.parametrize(("old", "new", "problem"), [
    ("{next_exercise}", "{next_exersize}",
     "line 22: lessons.0: unknown variable(s) {next_exersize} in body"),
    ("exercise:gentle-back", "exercise:gentle-bak",
     "line 25: lessons.0.body: links to exercise:gentle-bak, but no exercise has that slug"),
    ("exercise:gentle-back", "program:front",
     "line 25: lessons.0.body: links to program:front, but 'front' is not under programs:"),
    ("exercise:gentle-back", "mailto:me@example.org",
     "line 25: lessons.0.body: links to 'mailto:me@example.org': a link is exercise:SLUG"),
    ("after: 2 days", "after: 36 hours",
     "line 23: lessons.0.after: write the delay as whole days or weeks"),
    ("    after: 2 days\n", "    after: 2 days\n    about: gentle-bak\n",
     "line 24: lessons.0.about: no exercise has the slug 'gentle-bak'"),
    ("    after: 2 days\n", "    after: 2 days\n    skip_if: {unit_done: 2}\n",
     "line 24: lessons.0.skip_if.unit_done: there is no unit 2 (the regimen has 1)"),
    ("  - key: first\n", "  - key: First Lesson\n", "line 22: lessons.0.key: String should"),
])
def test_a_broken_lesson_names_line_and_field(tmp_path: Path, old: str, new: str,
                                              problem: str) -> None:
    assert load_regimen(write(tmp_path, LESSONS)).lessons[0].after == 2
    assert old in LESSONS
    with pytest.raises(ContentError) as error:
        load_regimen(write(tmp_path, LESSONS.replace(old, new, 1)))
    assert len(error.value.problems) == 1, error.value.problems
    assert error.value.problems[0].startswith(problem), error.value.problems[0]


def test_two_lessons_with_one_key(tmp_path: Path) -> None:
    twice = LESSONS + LESSONS.split("lessons:\n")[1]
    with pytest.raises(ContentError) as error:
        load_regimen(write(tmp_path, twice))
    assert error.value.problems == ["line 27: lessons.1.key: lesson key 'first' is used twice"]


def test_the_shipped_example_has_three_lessons_in_order_of_days() -> None:
    regimen = load_content(SHIPPED).default
    assert [(lesson.key, lesson.after) for lesson in regimen.lessons] == [
        ("how-it-should-feel", 2), ("next-free-exercise", 5), ("after-unit-1", 12)]
    assert regimen.lessons[0].about == "gentle-back-exercise"
    assert regimen.lessons[2].programs() == ["free_your_back"]
