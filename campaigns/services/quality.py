"""Quality checks on a template's rendered email, shown as warnings when it is saved:
no text part of its own, marketing mail without an unsubscribe link, images without
alt text, links that are not https, HTML over Gmail's clipping limit, a subject longer
than the inbox shows and no preheader.

The checks read the email as a contact gets it (`template_quality` renders it the way a
send step would), not the template source: a subject of `{{ first_name }}, …` is measured
with the name in it, and the base layout's footer counts. `template_warnings` is the
checks alone, on strings, for a caller that has rendered the email itself. Lines are
lines of the rendered HTML, as the preview shows it. The HTML is read with the standard
library's parser, which is lenient and knows where each tag starts."""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Literal
from urllib.parse import urlsplit

from django.template import TemplateSyntaxError
from django.utils.translation import gettext as _

from campaigns.models import SUBJECT_WARNING, EmailTemplate
from campaigns.services.rendering import (
    Rendered,
    RenderError,
    contact_links,
    template_content,
)
from campaigns.services.templates import email_preview
from crm.models import Contact

# Gmail shows "[Message clipped]" and hides the rest of an email whose HTML is over
# 102 KB (the unsubscribe link in the footer with it); warned from 90 KB on.
GMAIL_CLIP_BYTES = 102 * 1024
GMAIL_CLIP_NEAR_BYTES = 90 * 1024
# A text part with fewer letters than this (links aside) says next to nothing: an
# image-only email derives a text part of links.
TEXT_NEAR_EMPTY = 20
# Schemes a link may have besides https: a mail client opens them with another app.
OTHER_APPS = ("mailto:", "tel:", "sms:")
URL_SHOWN = 80  # a longer address is cut in the place a warning names

Level = Literal["warning", "info"]


@dataclass(frozen=True, slots=True)
class QualityWarning:
    """One finding: `code` is stable (for the API and tests), `message` and `place` are
    in the active language; `place` is what it concerns ("subject", "text part", "the
    image logo.png (line 12)")."""

    code: str
    level: Level
    message: str
    place: str


def template_warnings(
    *,
    subject: str,
    preheader: str,
    html: str,
    text: str,
    own_text: bool,
    category: str,
    unsubscribe_url: str,
) -> list[QualityWarning]:
    """The checks on a rendered email: `subject` and `preheader` as rendered, `html` the
    whole document as sent, `text` the text part as sent (the renderer's signature, after
    a "--" line, is not counted as its content), `own_text` whether the template has a
    text part of its own rather than one derived from the HTML, `category` the template's
    (marketing mail must link to `unsubscribe_url`, the contact's unsubscribe address).
    In the order of the checks: subject, preheader, text part, size, unsubscribe, then
    images and links in the order of the document."""
    found = [
        *_subject_checks(subject, preheader),
        *_text_checks(text, own_text),
        *_size_checks(html),
    ]
    scan = _Scan()
    scan.feed(html)
    scan.close()
    if category == EmailTemplate.Category.MARKETING and unsubscribe_url.strip() not in {
        href.strip() for href, _line in scan.links
    }:
        found.append(
            QualityWarning(
                "unsubscribe_missing",
                "warning",
                _(
                    "Marketing email without an unsubscribe link: the HTML has no link to "
                    "the contact's unsubscribe address (use {{ unsubscribe_url }})."
                ),
                _("HTML"),
            )
        )
    found += scan.warnings
    for href, line in scan.links:
        found += _link_checks(href, line)
    return found


def template_quality(
    *, template: EmailTemplate, contact: Contact | None = None, language: str = ""
) -> list[QualityWarning]:
    """Render `template` for `contact` as a send step would, without an event, and check
    it; without a contact, for a sample one who is not saved (first name "Alex", locale
    `language`, so a variant in that language is the one checked; pk 0 so the signed
    links and a survey row render as they would for anyone). When it cannot be rendered,
    the one warning says why."""
    contact = contact or Contact(
        pk=0, first_name="Alex", last_name="Sample", email="alex@example.com", locale=language
    )
    try:
        rendered = email_preview(template=template, contact=contact, event=None)
    except (RenderError, TemplateSyntaxError) as error:
        # a syntax error is raised while compiling, before email_render's own RenderError
        return [
            QualityWarning(
                "render_failed",
                "warning",
                _("The email could not be rendered, so it was not checked: %(reason)s")
                % {"reason": error},
                _("template"),
            )
        ]
    return rendered_warnings(template, contact, rendered)


def _preheader(html: str) -> str:
    """The preheader as rendered, read back from the email (email_render does not return
    it, and a block template's is its <mj-preview>, not the preheader field)."""
    scan = _Preheader()
    scan.feed(html)
    scan.close()
    return " ".join((scan.text or "").split())


def _subject_checks(subject: str, preheader: str) -> list[QualityWarning]:
    found = []
    if len(subject) > SUBJECT_WARNING:
        found.append(
            QualityWarning(
                "subject_long",
                "warning",
                _(
                    "The subject is %(length)d characters long as rendered; mobile inboxes "
                    "show only the first %(limit)d or so."
                )
                % {"length": len(subject), "limit": SUBJECT_WARNING},
                _("subject"),
            )
        )
    if not preheader.strip():
        found.append(
            QualityWarning(
                "preheader_empty",
                "info",
                _(
                    "There is no preheader: inboxes show the first words of the email "
                    "next to the subject instead."
                ),
                _("preheader"),
            )
        )
    return found


_SIGNATURE = re.compile(r"\n--[ \t]*\n")
_URL = re.compile(r"\S*://\S*")
_LETTER = re.compile(r"\w")


def _text_checks(text: str, own_text: bool) -> list[QualityWarning]:
    found = []
    if not own_text:
        found.append(
            QualityWarning(
                "text_derived",
                "info",
                _(
                    "The template has no text part of its own: the text part is derived "
                    "from the HTML."
                ),
                _("text part"),
            )
        )
    parts = _SIGNATURE.split(text)  # the last "--" line starts the renderer's signature
    content = "\n--\n".join(parts[:-1]) if len(parts) > 1 else text
    letters = len(_LETTER.findall(_URL.sub("", content)))
    if letters < TEXT_NEAR_EMPTY:
        message = (
            _(
                "The text part renders almost empty (%(count)d letters besides links): "
                "readers of plain text see next to nothing."
            )
            if own_text
            else _(
                "The text part derived from the HTML is almost empty (%(count)d letters "
                "besides links): write a text part, or put the words in text rather than "
                "images."
            )
        )
        found.append(
            QualityWarning(
                "text_near_empty", "warning", message % {"count": letters}, _("text part")
            )
        )
    return found


def _size_checks(html: str) -> list[QualityWarning]:
    size = len(html.encode("utf-8"))
    kilobytes = f"{size / 1024:.1f}"
    if size > GMAIL_CLIP_BYTES:
        return [
            QualityWarning(
                "html_clipped",
                "warning",
                _(
                    "The HTML is %(size)s KB: Gmail clips an email over 102 KB and hides "
                    "the rest, the unsubscribe link with it."
                )
                % {"size": kilobytes},
                _("HTML"),
            )
        ]
    if size >= GMAIL_CLIP_NEAR_BYTES:
        return [
            QualityWarning(
                "html_near_clip",
                "warning",
                _("The HTML is %(size)s KB, close to the 102 KB over which Gmail clips it.")
                % {"size": kilobytes},
                _("HTML"),
            )
        ]
    return []


def _link_place(href: str, line: int) -> str:
    shown = href if len(href) <= URL_SHOWN else href[: URL_SHOWN - 1] + "…"
    return _("the link %(url)s (line %(line)d)") % {"url": shown, "line": line}


def _link_checks(href: str, line: int) -> list[QualityWarning]:
    address = href.strip()
    lowered = address.lower()
    if lowered.startswith(("https://", "#", *OTHER_APPS)):
        return []
    if not address or address.startswith("//") or not urlsplit(address).scheme:
        return [
            QualityWarning(
                "link_relative",
                "warning",
                _(
                    "The link has no https:// address (it is empty or relative): in an "
                    "email it leads nowhere."
                ),
                _link_place(address, line),
            )
        ]
    return [
        QualityWarning(
            "link_not_https",
            "warning",
            _(
                "The link is not https: mail clients may warn about it, and it can be read on the way."
            ),
            _link_place(address, line),
        )
    ]


@dataclass
class _Link:
    line: int
    named: bool  # text, an image with alt text, or an aria-label/title of its own
    blank_image: tuple[str, int] | None = None  # (src, line) of an image with alt="" in it


class _Scan(HTMLParser):
    """The links (href, line) in document order, and the warnings on images: no alt, or
    alt="" as all a link holds (the link then has no accessible name)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[tuple[str, int]] = []
        self.warnings: list[QualityWarning] = []
        self._open: _Link | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        line = self.getpos()[0]
        if tag == "a":
            self._close_link()
            if values.get("href") is not None:
                self.links.append((values["href"] or "", line))
            labelled = any((values.get(name) or "").strip() for name in ("aria-label", "title"))
            self._open = _Link(line=line, named=labelled)
        elif tag == "img":
            self._image(values, line)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a":
            self._close_link()

    def handle_data(self, data: str) -> None:
        if self._open is not None and data.strip():
            self._open.named = True

    def close(self) -> None:
        super().close()
        self._close_link()

    def _image(self, values: dict[str, str | None], line: int) -> None:
        alt = values.get("alt")
        if alt is None:
            self.warnings.append(
                QualityWarning(
                    "image_no_alt",
                    "warning",
                    _(
                        "The image has no alt text: where images are blocked, and for "
                        'screen readers, it shows nothing or its file name (alt="" marks a '
                        "decorative one)."
                    ),
                    self._image_place(values.get("src") or "", line),
                )
            )
            if self._open is not None:
                self._open.named = True  # warned once, for the image
        elif self._open is not None:
            if alt.strip():
                self._open.named = True
            else:
                self._open.blank_image = self._open.blank_image or (values.get("src") or "", line)

    def _close_link(self) -> None:
        link, self._open = self._open, None
        if link is None or link.named or link.blank_image is None:
            return
        src, line = link.blank_image
        self.warnings.append(
            QualityWarning(
                "link_no_name",
                "warning",
                _(
                    'The link holds only an image with empty alt text (alt=""), so it has '
                    "no accessible name: give the image alt text saying where the link goes."
                ),
                self._image_place(src, line),
            )
        )

    @staticmethod
    def _image_place(src: str, line: int) -> str:
        name = urlsplit(src.strip()).path.rstrip("/").rsplit("/", 1)[-1] or src.strip()
        if not name:
            return _("an image without src (line %(line)d)") % {"line": line}
        if len(name) > URL_SHOWN:
            name = name[: URL_SHOWN - 1] + "…"
        return _("the image %(name)s (line %(line)d)") % {"name": name, "line": line}


class _Preheader(HTMLParser):
    """The preheader of a rendered email: the text of the first hidden element (an inline
    style with display:none, or class "preheader") in the body before any visible text.
    So it is found where the HTML layout puts it (a span, its style inlined) and where
    MJML compiles an <mj-preview> (a div); None when the email has none."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text: str | None = None
        self._body = False
        self._done = False
        self._hidden: str | None = None  # the tag being read, and how deep in it
        self._depth = 0
        self._skip = 0  # inside <style>, <script> or <title>

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body":
            self._body = True
        elif tag in ("style", "script", "title"):
            self._skip += 1
        elif self._hidden is not None:
            self._depth += tag == self._hidden
        elif self._body and not self._done:
            values = dict(attrs)
            style = "".join((values.get("style") or "").split()).lower()
            classes = (values.get("class") or "").split()
            if "display:none" in style or "preheader" in classes:
                self._hidden, self._depth, self.text = tag, 1, ""

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script", "title"):
            self._skip = max(0, self._skip - 1)
        elif self._hidden is not None and tag == self._hidden:
            self._depth -= 1
            if not self._depth:
                self._hidden, self._done = None, True

    def handle_data(self, data: str) -> None:
        if self._hidden is not None:
            self.text = (self.text or "") + data
        elif self._body and not self._skip and data.strip():
            self._done = True  # visible text first: the email has no preheader


def template_languages(template: EmailTemplate) -> list[str]:
    """The template's own language, then each of its versions'."""
    return [template.language, *filter(None, template.variant_languages.split(","))]


def rendered_warnings(
    template: EmailTemplate, contact: Contact, rendered: Rendered
) -> list[QualityWarning]:
    """The checks on an email already rendered for `contact` (a preview, with its event)."""
    return template_warnings(
        subject=rendered.subject,
        preheader=_preheader(rendered.html),
        html=rendered.html,
        text=rendered.text,
        own_text=template_content(template, contact).text is not None,
        category=template.category,
        unsubscribe_url=contact_links(contact)["unsubscribe_url"],
    )
