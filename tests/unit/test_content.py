"""The regimen file: the shipped example, errors that lead the author to the line, and
`regimen content check` (with --online against a real local web server)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from service.cli import app
from service.core.content import ContentError, load_regimen
from service.core.settings import Settings
from tests.helpers import PROJECT_ROOT

SHIPPED = PROJECT_ROOT / "content" / "regimen.yaml"

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
    regimen = load_regimen(SHIPPED)
    first = regimen.exercises()[0]
    assert (first.slug, first.title) == ("gentle-back-exercise", "The gentle back exercise")
    assert all(exercise.is_free for exercise in regimen.units[0].exercises)
    later = [exercise for unit in regimen.units[1:] for exercise in unit.exercises]
    assert later
    assert all(exercise.program in regimen.programs for exercise in later)


def test_the_shipped_example_lists_its_placeholders() -> None:
    regimen = load_regimen(SHIPPED)
    every_url = {regimen.site_url, *(program.url for program in regimen.programs.values()),
                 *(regimen.destination(exercise) for exercise in regimen.exercises())}
    assert regimen.example_urls() == sorted(every_url)
    assert "https://example.com/replace-me/video/gentle-back-exercise" in every_url


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
    source = SHIPPED.read_text(encoding="utf-8")
    line = source.splitlines().index(f"  gentle_back: &gentle_back {url}") + 1
    with pytest.raises(ContentError) as error:
        load_regimen(write(tmp_path, source.replace(url, '"gentle-back-video"')))
    assert [problem.split(": ")[:2] for problem in error.value.problems] == [
        [f"line {line}", "links.gentle_back"], [f"line {line}", "units.0.exercises.0.video_url"]]


def test_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ContentError) as error:
        load_regimen(tmp_path / "nowhere.yaml")
    assert error.value.problems == ["cannot read the file: No such file or directory"]


def test_an_empty_file(tmp_path: Path) -> None:
    with pytest.raises(ContentError) as error:
        load_regimen(write(tmp_path, ""))
    assert error.value.problems == [
        "line 1: (top level): Input should be a valid dictionary or instance of Regimen"]


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


def test_check_passes_the_shipped_file_and_lists_placeholders(cli_env: Path) -> None:
    code, output = check(SHIPPED)
    assert code == 0, output
    assert "OK — 3 units, 10 exercises." in output
    assert "example addresses are still to be replaced:" in output
    assert "  https://example.com/replace-me/video/gentle-back-exercise\n" in output
    assert (cli_env / "data" / "secret_key").exists()


def test_check_fails_a_broken_file_naming_line_and_field(cli_env: Path) -> None:
    code, output = check(write(cli_env, GOOD.replace("program: back", "program: front")))
    assert code == 1
    assert "has problems:" in output
    assert "  line 20: units.0.exercises.1.program: program 'front' is not under" in output


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
