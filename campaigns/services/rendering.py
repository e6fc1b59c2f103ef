"""Render an email template for a contact: subject, preheader, HTML (inside the shop's
base layout, CSS inlined) and a text part that is always present."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from html import unescape

import css_inline
from django.conf import settings
from django.template import TemplateSyntaxError, engines
from django.template.backends.django import Template
from django.template.library import SimpleNode
from django.template.loader import render_to_string
from django.utils import timezone, translation
from django.utils.translation import gettext

from campaigns.models import EmailTemplate, EmailTemplateVariant, Survey
from campaigns.templatetags.keepers import survey_row
from crm import clock
from crm.links import language_choose, preferences_token, unsubscribe_token
from crm.models import Contact, Event, Product

_inliner = css_inline.CSSInliner(keep_style_tags=False, load_remote_stylesheets=False)


class RenderError(Exception):
    pass


@dataclass
class Rendered:
    subject: str
    html: str
    text: str


@dataclass(frozen=True)
class _Content:
    """One language of a template, compiled: what a recipient in that language gets."""

    language: str
    subject: Template
    subject_b: Template | None
    preheader: Template
    html: Template
    text: Template | None


def _content(language: str, subject, subject_b, preheader, html, text) -> _Content:
    engine = engines["django"]
    return _Content(
        language=language,
        subject=engine.from_string(_as_text(subject)),
        subject_b=engine.from_string(_as_text(subject_b)) if subject_b else None,
        preheader=engine.from_string(_as_text(preheader)),
        html=engine.from_string(html),
        text=engine.from_string(_as_text(text)) if text else None,
    )


@lru_cache(maxsize=256)
def _compiled(
    template_id: int,
    updated_at: str,
    language: str,
    subject: str,
    preheader: str,
    html: str,
    text: str,
    variant_languages: str,
) -> dict[str, _Content]:
    """Each language of a template version, compiled once per process: the template's own
    fields, and its variants (read in one query, only when it has some)."""
    contents = {language: _content(language, subject, "", preheader, html, text)}
    if variant_languages:
        for v in EmailTemplateVariant.objects.filter(template_id=template_id):
            contents[v.language] = _content(
                v.language, v.subject, v.subject_b, v.preheader, v.html_body, v.text_body
            )
    return contents


def template_content(template: EmailTemplate, contact: Contact | None) -> _Content:
    """The language of `template` this contact gets (crm.links.language_choose: theirs,
    else the template's own)."""
    contents = _compiled(
        template.pk,
        str(template.updated_at),
        template.language,
        template.subject,
        template.preheader,
        template.html_body,
        template.text_body,
        template.variant_languages,
    )
    language = language_choose(contact.locale if contact else "", contents, template.language)
    return contents[language]


def template_problems(source: str) -> list[str]:
    """What is wrong with a template's source, checked when it is saved: a syntax error,
    or a {% survey_row "NAME" %} naming no survey (at send time such a row renders
    nothing and is logged, so a send never fails for it; at save it is a typo to fix).
    A name given as a variable is known only at send time and is not checked."""
    try:
        compiled = engines["django"].from_string(source)
    except TemplateSyntaxError as error:
        return [f"Template error: {error}"]
    named = {
        str(node.args[0].var)
        for node in compiled.template.nodelist.get_nodes_by_type(SimpleNode)
        if node.func is survey_row and node.args and isinstance(node.args[0].var, str)
    }
    if not named:
        return []
    surveys = list(Survey.objects.order_by("name").values_list("name", flat=True))
    existing = ", ".join(f'"{name}"' for name in surveys) if surveys else "none yet"
    return [
        f'{{% survey_row "{name}" %}}: there is no survey named "{name}" '
        f"(the surveys: {existing}; Campaigns › Surveys adds one)."
        for name in sorted(named - set(surveys))
    ]


def _as_text(source: str) -> str:
    """A template whose output is plain text (a subject, a preheader, a text part):
    rendered without HTML escaping, so "O'Brien" stays O'Brien. The layout escapes the
    subject and preheader where it puts them into HTML."""
    return "{% autoescape off %}" + source + "{% endautoescape %}"


def contact_links(contact: Contact) -> dict[str, str]:
    base = settings.KEEPERS_PUBLIC_URL.rstrip("/")
    token = preferences_token(contact.pk)
    return {
        "unsubscribe_url": f"{base}/u/{unsubscribe_token(contact.pk)}/",
        "preferences_url": f"{base}/p/{token}/",
        "referral_url": f"{base}/p/{token}/referral/",  # loyalty's referral page
    }


def catalog_for(events) -> dict[str, Product]:
    """The catalog rows of every item in these events, in one query (the engine renders
    a whole batch with it)."""
    ids: set[str] = set()
    for event in events:
        items = event.properties.get("products") or event.properties.get("items")
        if isinstance(items, list):
            ids |= {
                str(i.get("product_id") or i.get("sku") or "") for i in items if isinstance(i, dict)
            }
    ids.discard("")
    return {p.product_id: p for p in Product.objects.filter(product_id__in=ids)} if ids else {}


def event_context(event: Event | None, catalog: dict[str, Product] | None = None) -> dict:
    """The triggering event's properties, with cart or order items enriched from the
    catalog (name, price, image, url) where the event did not say."""
    if event is None:
        return {}
    properties = dict(event.properties)
    items = properties.get("products") or properties.get("items")
    if isinstance(items, list):
        ids = [str(i.get("product_id") or i.get("sku") or "") for i in items if isinstance(i, dict)]
        if catalog is None:
            catalog = {p.product_id: p for p in Product.objects.filter(product_id__in=ids)}
        enriched = []
        for item in items:
            if not isinstance(item, dict):
                continue
            product = catalog.get(str(item.get("product_id") or item.get("sku") or ""))
            enriched.append(
                {
                    "product_id": item.get("product_id") or item.get("sku"),
                    "name": item.get("name") or (product.name if product else ""),
                    "price": item.get("price")
                    if item.get("price") is not None
                    else (product.price if product else None),
                    "quantity": item.get("quantity", 1),
                    "image_url": item.get("image_url") or (product.image_url if product else ""),
                    "url": item.get("url") or (product.url if product else ""),
                }
            )
        properties["items"] = enriched
    return {"name": event.name, "properties": properties, "occurred_at": event.occurred_at}


def email_render(
    *,
    template: EmailTemplate,
    contact: Contact,
    event: Event | None = None,
    extra: dict | None = None,
    catalog: dict[str, Product] | None = None,
    ab_side: str = "",
) -> Rendered:
    """Raises RenderError with the reason when the template cannot be rendered.

    The contact's language picks the template's variant and the language of the layout,
    the footer and of dates and numbers; `ab_side` "b" takes a broadcast's second subject
    (the template given is then the broadcast's B copy; in a variant's language, the
    variant's own second subject)."""
    content = template_content(template, contact)
    subject_t = content.subject
    if ab_side == "b" and content.language != template.language:
        subject_t = content.subject_b or subject_t
    preheader_t, html_t, text_t = content.preheader, content.html, content.text
    context = {
        "contact": contact,
        "first_name": contact.first_name,
        "attributes": contact.attributes,
        "stage": contact.stage,
        "event": event_context(event, catalog),
        "shop": {
            "name": settings.KEEPERS_SHOP_NAME,
            "address": settings.KEEPERS_SHOP_ADDRESS,
            "url": settings.KEEPERS_SHOP_URL,
        },
        **contact_links(contact),
        **(extra or {}),
    }
    try:
        # dates and times in the contact's own zone (theirs, else the shop's): an expiry
        # reads as the day they will see it go; month names, numbers and the footer in
        # the language of the text
        with (
            timezone.override(clock.contact_zone(contact)),
            translation.override(content.language),
        ):
            # one line: no CR/LF (nor any other line break) from a contact's data reaches
            # a header
            subject = " ".join(subject_t.render(context).split())
            preheader = " ".join(preheader_t.render(context).split())
            body = html_t.render(context)
            text = text_t.render(context) if text_t else None
    except Exception as error:  # a template error is the template's, reported per contact
        raise RenderError(f"{type(error).__name__}: {error}") from error
    if not subject:
        raise RenderError("The subject rendered empty.")
    marketing = template.category == EmailTemplate.Category.MARKETING
    with translation.override(content.language):
        if template.format == EmailTemplate.Format.MJML:
            # a whole document, compiled with its styles inline (its <style> holds the
            # media queries of the mobile layout, so it is not inlined again)
            html = body
        else:
            layout = render_to_string(
                "campaigns/email/base.html",
                {
                    **context,
                    "body": body,
                    "preheader": preheader,
                    "subject": subject,
                    "marketing": marketing,
                    "language": content.language,
                },
            )
            html = _inliner.inline(layout)
        # blocks carry their own footer: a text part derived from them has its links
        derived_with_footer = text is None and template.format == EmailTemplate.Format.MJML
        if text is None:
            text = _text_from_html(html if derived_with_footer else body)
        footer = f"\n\n--\n{settings.KEEPERS_SHOP_NAME}\n{settings.KEEPERS_SHOP_ADDRESS}\n"
        if derived_with_footer:
            footer = ""
        elif marketing:
            footer += (
                f"{gettext('Email preferences')}: {context['preferences_url']}\n"
                f"{gettext('Unsubscribe')}: {context['unsubscribe_url']}\n"
            )
    return Rendered(subject=subject, html=html, text=text.strip() + footer)


_TAGS = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)


def subject_sample(template: EmailTemplate, contact: Contact | None = None) -> str:
    """The subject as a contact reads it, for the length warning (mobile clients show
    25–30 characters): rendered for `contact`, else for a sample one (first name "Alex"),
    without an event; when that fails (it needs an event's properties), the source with its
    `{{ }}`/`{% %}` tags taken out."""
    contact = contact or Contact(first_name="Alex", last_name="Sample", email="alex@example.com")
    context = {
        "contact": contact,
        "first_name": contact.first_name,
        "attributes": contact.attributes,
        "stage": contact.stage,
        "event": {},
        "shop": {"name": settings.KEEPERS_SHOP_NAME, "url": settings.KEEPERS_SHOP_URL},
    }
    try:
        subject = engines["django"].from_string(_as_text(template.subject)).render(context)
    except Exception:  # a template error: measure what is not a tag
        subject = _TAGS.sub("", template.subject)
    return " ".join(subject.split())


_INVISIBLE = re.compile(r"<(head|style|script|title)\b.*?</\1\s*>|<!--.*?-->", re.I | re.S)
_BREAK = re.compile(r"<(?:br|/p|/div|/h[1-6]|/li|/tr|/table)\b[^>]*>", re.I)
_LINK = re.compile(
    r"""<a\s[^>]*?href\s*=\s*(?:"([^"]+)"|'([^']+)'|([^\s>"']+))[^>]*>(.*?)</a\s*>""", re.I | re.S
)
_CELL = re.compile(r"</t[dh]\s*>", re.I)
_TAG = re.compile(r"<[^>]*>")
_BLANK_LINES = re.compile(r"\n{3,}")


def _text_from_html(html: str) -> str:
    """A readable plain-text part from an HTML body: what a reader never sees (head,
    style, script, comments) dropped, block ends as line breaks, table cells apart, links as "text (url)",
    tags removed, entities decoded. Regular expressions rather than strip_tags: this runs
    for every message, and strip_tags parses each body several times over."""
    html = _INVISIBLE.sub("", html)
    html = _BREAK.sub("\n", html)
    html = _CELL.sub(" ", html)
    html = _LINK.sub(lambda m: f"{m[4]} ({m[1] or m[2] or m[3]})", html)
    text = unescape(_TAG.sub("", html))
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()
