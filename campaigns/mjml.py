"""MJML for email templates: compiled once per template version with mrml (the Rust port
of MJML, from PyPI: a wheel with no Node.js at run time, and about a millisecond for a
newsletter), after a structural check of our own that names the line.

Why the check: mrml is lenient and its errors carry no position ("unexpected end of
stream in root template"; a misspelt closing tag or an unknown element compiles without a
word), so a marketer saving a broken template would get a broken email or a sentence that
does not say where. `mjml_problems` walks the source with the standard library's HTML
parser, which knows each tag's line, and reports unknown `mj-` elements, closing tags that
close nothing, elements left open and elements placed where MJML does not allow them.

Django's template language stays as text through the compiler (`{{ first_name }}` inside
an mj-text, `href="{{ unsubscribe_url }}"`, block tags between sections inside
`<mj-raw>`), so the compiled HTML is then personalised per recipient like an HTML template.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

import mrml

# Elements whose content is HTML (or text), not MJML: tags inside are not checked.
_ENDING = {
    "mj-text",
    "mj-button",
    "mj-raw",
    "mj-table",
    "mj-navbar-link",
    "mj-social-element",
    "mj-accordion-title",
    "mj-accordion-text",
    "mj-style",
    "mj-title",
    "mj-preview",
}
# Elements that take no children (written <mj-image … /> or with a closing tag).
_VOID = {
    "mj-image",
    "mj-divider",
    "mj-spacer",
    "mj-carousel-image",
    "mj-breakpoint",
    "mj-font",
    "mj-all",
    "mj-class",
    "mj-include",
    "mj-html-attribute",
}
# Where each element may appear (its parents); elements not listed may appear anywhere
# inside mj-body. mj-attributes takes any element name as a default for it.
_PARENTS = {
    "mj-head": {"mjml"},
    "mj-body": {"mjml"},
    "mj-attributes": {"mj-head"},
    "mj-breakpoint": {"mj-head"},
    "mj-font": {"mj-head"},
    "mj-preview": {"mj-head"},
    "mj-style": {"mj-head"},
    "mj-title": {"mj-head"},
    "mj-html-attributes": {"mj-head"},
    "mj-selector": {"mj-html-attributes"},
    "mj-html-attribute": {"mj-selector"},
    "mj-wrapper": {"mj-body"},
    "mj-section": {"mj-body", "mj-wrapper"},
    "mj-hero": {"mj-body", "mj-wrapper"},
    "mj-group": {"mj-section"},
    "mj-column": {"mj-section", "mj-group"},
    "mj-carousel-image": {"mj-carousel"},
    "mj-navbar-link": {"mj-navbar"},
    "mj-social-element": {"mj-social"},
    "mj-accordion-element": {"mj-accordion"},
    "mj-accordion-title": {"mj-accordion-element"},
    "mj-accordion-text": {"mj-accordion-element"},
}
_CONTENT = {
    "mj-accordion",
    "mj-button",
    "mj-carousel",
    "mj-divider",
    "mj-image",
    "mj-navbar",
    "mj-social",
    "mj-spacer",
    "mj-table",
    "mj-text",
}
for _name in _CONTENT:
    _PARENTS[_name] = {"mj-column", "mj-hero"}
KNOWN = set(_PARENTS) | _ENDING | _VOID | {"mjml", "mj-raw", "mj-all", "mj-class", "mj-include"}


_POSITION = re.compile(r"\s*at position (\d+):\d+")


class MjmlError(ValueError):
    """The source is not MJML mrml can compile; the message names the line."""


class _Checker(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, int]] = []
        self.problems: list[str] = []

    def _ending(self) -> bool:
        return bool(self.stack) and self.stack[-1][0] in _ENDING

    def handle_starttag(self, tag: str, attrs) -> None:
        self._start(tag, void=tag in _VOID)

    def handle_startendtag(self, tag: str, attrs) -> None:
        self._start(tag, void=True)

    def _start(self, tag: str, *, void: bool) -> None:
        line = self.getpos()[0]
        if self._ending():
            return  # HTML inside an mj-text and the like
        if not tag.startswith("mj"):
            self.problems.append(
                f"Line {line}: <{tag}> is HTML; put it inside an <mj-text> (or <mj-raw>)."
            )
            return
        if tag not in KNOWN:
            self.problems.append(f"Line {line}: <{tag}> is not an MJML element.")
            return
        parent = self.stack[-1][0] if self.stack else None
        if parent == "mj-attributes":
            pass  # defaults for any element: <mj-text color="…" />
        elif tag == "mjml":
            if parent is not None:
                self.problems.append(f"Line {line}: <mjml> must be the outermost element.")
        elif parent is None:
            self.problems.append(f"Line {line}: <{tag}> is outside <mjml>.")
        elif tag in _PARENTS and parent not in _PARENTS[tag]:
            where = " or ".join(f"<{p}>" for p in sorted(_PARENTS[tag]))
            self.problems.append(f"Line {line}: <{tag}> goes inside {where}, not <{parent}>.")
        if not void:
            self.stack.append((tag, line))

    def handle_endtag(self, tag: str) -> None:
        line = self.getpos()[0]
        if tag in _VOID or not tag.startswith("mj"):
            return  # HTML inside an ending element, or already reported at its start
        if tag not in KNOWN:
            self.problems.append(f"Line {line}: </{tag}> is not an MJML element.")
            return
        open_names = [name for name, _ in self.stack]
        inside = self._ending() and tag != self.stack[-1][0] and tag not in _ENDING
        if inside and tag not in open_names:
            return  # an MJML name as text inside an mj-text: not ours to judge
        if tag not in open_names:
            self.problems.append(f"Line {line}: </{tag}> closes nothing.")
            return
        while self.stack and self.stack[-1][0] != tag:
            name, opened = self.stack.pop()
            self.problems.append(
                f"Line {opened}: <{name}> is not closed before </{tag}> on line {line}."
            )
        self.stack.pop()


def mjml_problems(source: str) -> list[str]:
    """What stops this MJML from compiling as written, each with its line; [] when it
    compiles."""
    if not source.strip():
        return ["The MJML is empty."]
    checker = _Checker()
    checker.feed(source)
    checker.close()
    problems = checker.problems
    problems += [f"Line {opened}: <{name}> is not closed." for name, opened in checker.stack]
    if not problems:
        try:
            mrml.to_html(source)
        except OSError as error:  # mrml's parse errors: a character offset at best
            message = str(error)
            at = _POSITION.search(message)
            if at:
                line = source.count("\n", 0, int(at[1])) + 1
                message = f"Line {line}: {_POSITION.sub('', message).strip()}"
            problems.append(f"The MJML does not compile: {message}.")
    return problems


def mjml_compile(source: str) -> str:
    """The HTML document for an MJML source (Django tags kept as text). Raises MjmlError
    naming the line."""
    problems = mjml_problems(source)
    if problems:
        raise MjmlError(" ".join(problems))
    return mrml.to_html(source).content
