"""A lesson's words for one reader: the author's Markdown with the reader's standing filled in,
as HTML for the mail's HTML part and as plain text for its text part, carrying the same links.

Rendered when the mail is sent, so {next_exercise} and {progress} are the reader's state then,
not when the lesson was scheduled. The links are the reader's own, counted ones: an exercise
leads through `/r/<token>/go/<slug>`, a program through `/r/<token>/program/<key>`, the regimen
link to `/r/<token>`, each marked with the lesson (`?lesson=<key>`) so the author sees which
lesson's links readers follow. The token is not known here: the links are written with the
placeholder of the reader's regimen link, filled per mail (service.delivery.messages).
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass

from markdown_it.token import Token

from service.core.content import READ_THROUGH, Regimen
from service.core.lessons import EXERCISE_SCHEME, PROGRAM_SCHEME, Lesson, fill, markdown
from service.readers.progress import Standing

# What the variables say where the reader's state leaves nothing to link.
ALL_DONE = "every exercise of the regimen is marked done"
PROGRESS = "{done} of the {total} exercises"
REGIMEN_LINK = "your regimen page"
REGIMEN_SCHEME = "regimen:"
WIDTH = 72

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!<>|~])")


def sample_progress(regimen: Regimen) -> frozenset[str]:
    """A reader some way in, for previews and test sends: read it through and did the first
    two exercises."""
    return frozenset({READ_THROUGH, *(e.slug for e in regimen.exercises()[:2])})


@dataclass(frozen=True)
class LessonWords:
    html: str
    text: str


def escaped(text: str) -> str:
    """`text` taken literally by Markdown (a title with brackets or stars stays as written)."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def for_reader(lesson: Lesson, regimen: Regimen, standing: Standing,
               regimen_url: str) -> LessonWords:
    """The lesson's body with the reader's standing, its links based on `regimen_url` (the
    reader's regimen link, or a placeholder for it)."""
    following = standing.continue_with
    source = fill(lesson.body, {
        "next_exercise": f"[{escaped(following.title)}]({EXERCISE_SCHEME}{following.slug})"
        if following is not None else escaped(ALL_DONE),
        "progress": PROGRESS.format(done=sum(each.done for each in standing.units),
                                    total=len(regimen.exercises())),
        "regimen_link": f"[{REGIMEN_LINK}]({REGIMEN_SCHEME})",
    })
    tokens = markdown.parse(source)
    for token in tokens:
        for child in token.children or []:
            if child.type == "link_open":
                child.attrs["href"] = _resolve(str(child.attrs["href"]), lesson.key,
                                               regimen_url)
    return LessonWords(html=markdown.renderer.render(tokens, markdown.options, {}),
                       text=_as_text(tokens))


def _resolve(href: str, lesson: str, regimen_url: str) -> str:
    mark = f"?lesson={lesson}"
    if href.startswith(EXERCISE_SCHEME):
        return f"{regimen_url}/go/{href.removeprefix(EXERCISE_SCHEME)}{mark}"
    if href.startswith(PROGRAM_SCHEME):
        return f"{regimen_url}/program/{href.removeprefix(PROGRAM_SCHEME)}{mark}"
    if href == REGIMEN_SCHEME:
        return f"{regimen_url}{mark}"
    return href


def _as_text(tokens: list[Token]) -> str:
    """Markdown's blocks as plain text: paragraphs wrapped, lists with their markers, each
    link as its words followed by its address in angle brackets (RFC 3986, appendix C), which
    mail programs make clickable without taking in the punctuation after it."""
    blocks: list[tuple[str, bool]] = []  # each block's text, and whether it is a list item
    markers: list[int | None] = []  # per open list: the next number, or None for bullets
    prefix = ""
    for token in tokens:
        if token.type in ("bullet_list_open", "ordered_list_open"):
            markers.append(int(token.attrs.get("start", 1)) if token.type.startswith("ordered")
                           else None)
        elif token.type in ("bullet_list_close", "ordered_list_close"):
            markers.pop()
        elif token.type == "list_item_open":
            number = markers[-1]
            prefix = "- " if number is None else f"{number}. "
            if number is not None:
                markers[-1] = number + 1
        elif token.type == "inline":
            indent = "  " * max(len(markers) - 1, 0)
            words = _inline_text(token.children or [])
            # A hard line break (a line ending in a backslash) stays one.
            lines = [textwrap.fill(line, WIDTH,
                                   initial_indent=indent + (prefix if n == 0 else
                                                            " " * len(prefix)),
                                   subsequent_indent=indent + " " * len(prefix),
                                   break_long_words=False, break_on_hyphens=False)
                     for n, line in enumerate(words.split("\n"))]
            blocks.append(("\n".join(lines), bool(markers)))
            prefix = ""
        elif token.type in ("fence", "code_block"):
            blocks.append((token.content.rstrip("\n"), False))
        elif token.type == "hr":
            blocks.append(("-" * 20, False))
    text = ""
    for n, (block, in_list) in enumerate(blocks):
        # A list's items on their own lines; blocks apart by an empty line.
        text += ("" if n == 0 else "\n" if in_list and blocks[n - 1][1] else "\n\n") + block
    return text + "\n"


def _inline_text(children: list[Token]) -> str:
    out: list[str] = []
    href = ""
    for child in children:
        if child.type in ("text", "code_inline"):
            out.append(child.content)
        elif child.type == "softbreak":
            out.append(" ")
        elif child.type == "hardbreak":
            out.append("\n")
        elif child.type == "link_open":
            href = str(child.attrs["href"])
        elif child.type == "link_close":
            out.append(f" <{href}>")
    return "".join(out)
