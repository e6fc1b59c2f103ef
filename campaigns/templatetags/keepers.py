"""Tags for email templates: `{% load keepers %}`.

`{% recommendations 4 as products %}` sets `products` to up to four catalog rows for the
contact being rendered (crm.services.recommendations): co-purchases of what they bought
and of the trigger event's products (a cart, an order, a viewed product), bestsellers in
their categories, what they viewed lately, then the shop's bestsellers.

`{{ item.price|money }}` (or `|money:"EUR"`) writes an amount as the email's language
writes money: "$1,234.50" in English, "￥1,235" for yen in Japanese, "1 234,50 €" in
French (Babel's CLDR data); the currency is the shop's base currency unless given.

`{% survey_row "NPS" %}` puts the one-click answer row of a staff-defined survey
(campaigns.Survey) into the email: the question, one signed link per score (1–5 for CSAT,
0–10 for NPS) and the labels of both ends. Optional `ref="…"` names the send (by default:
the broadcast, else the campaign's enrollment and step when the context has them, else
the trigger event's order or the event itself, else today's date), and `low="…"`,
`high="…"` replace the end labels (for a template written in another language)."""

from __future__ import annotations

import hashlib
import logging
from decimal import Decimal, InvalidOperation

from babel.core import UnknownLocaleError
from babel.numbers import format_currency
from django import template
from django.conf import settings
from django.utils.html import format_html, format_html_join
from django.utils.translation import get_language, to_locale
from django.utils.translation import gettext as _

from campaigns.models import Survey
from campaigns.services.surveys import survey_link, survey_scale
from crm import clock
from crm.links import contact_language
from crm.models import Contact, Product
from crm.services.recommendations import Recommender, recommendations_for

register = template.Library()
log = logging.getLogger(__name__)


@register.filter
def money(value: object, currency: str = "") -> str:
    """An amount in the language being rendered (email_render sets it per contact);
    what is not a number is shown as it is."""
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return "" if value is None else str(value)
    code = (currency or settings.KEEPERS_BASE_CURRENCY).upper()
    try:
        return format_currency(amount, code, locale=to_locale(get_language() or "en"))
    except (UnknownLocaleError, ValueError):
        return format_currency(amount, code, locale="en")


DEFAULT_LIMIT = 4
MAX_LIMIT = 24


@register.simple_tag(takes_context=True)
def recommendations(context: template.Context, limit: int | str = DEFAULT_LIMIT) -> list[Product]:
    """Never raises for missing data: no contact, no event or an odd limit still renders
    (with the bestsellers, or nothing when the shop has no sales yet)."""
    contact = context.get("contact")
    try:
        limit = max(0, min(int(limit), MAX_LIMIT))
    except (TypeError, ValueError):
        limit = DEFAULT_LIMIT
    contact = contact if isinstance(contact, Contact) else None
    cart = _event_products(context.get("event"))
    # A sending batch passes its Recommender: the batch's history is read once for all.
    recommender = context.get("recommender")
    if isinstance(recommender, Recommender):
        return recommender.recommend(contact, limit=limit, cart=cart)
    return recommendations_for(contact, limit=limit, cart=cart)


def _event_products(event: object) -> list[str]:
    """The shop's product ids in the trigger event, as rendering.event_context exposes it:
    `event.properties.items` (or the raw `products`), or a single `product_id`."""
    properties = event.get("properties") if isinstance(event, dict) else None
    if not isinstance(properties, dict):
        return []
    items = properties.get("items") or properties.get("products")
    refs = [
        str(item.get("product_id") or item.get("sku") or "")
        for item in (items if isinstance(items, list) else [])
        if isinstance(item, dict)
    ]
    refs.append(str(properties.get("product_id") or properties.get("sku") or ""))
    return [ref for ref in refs if ref]


# --- survey_row ---------------------------------------------------------------------------
# Inline styles only: many email clients drop <style> blocks.
_QUESTION = "margin:0 0 8px;font-size:16px;font-weight:600;color:#1d1d1d;"
_CELL = "padding:2px;"
_SCORE = (
    "display:block;padding:10px 0;border:1px solid #2f4858;border-radius:4px;"
    "background:#ffffff;color:#2f4858;font-size:16px;font-weight:600;line-height:20px;"
    "text-align:center;text-decoration:none;font-family:Arial,Helvetica,sans-serif;"
)
_LABEL = "padding:4px 2px 0;font-size:13px;color:#555555;font-family:Arial,Helvetica,sans-serif;"


@register.simple_tag(takes_context=True)
def survey_row(
    context: template.Context,
    name: str,
    ref: str | None = None,
    low: str | None = None,
    high: str | None = None,
) -> str:
    """Never breaks the email: an unknown or inactive survey, or no contact to sign the
    links for, renders nothing (and logs why)."""

    contact = context.get("contact")
    if not isinstance(contact, Contact) or contact.pk is None:
        log.warning("survey_row %r: no contact in the context; nothing rendered", name)
        return ""
    survey = Survey.objects.filter(name=name, active=True).first()
    if survey is None:
        log.warning("survey_row: no active survey named %r; nothing rendered", name)
        return ""
    ref = str(ref) if ref else _send_ref(context)
    scores = list(survey_scale(survey.kind))
    width = f"{100 // len(scores)}%"
    cells = format_html_join(
        "",
        '<td align="center" width="{}" style="{}"><a href="{}" style="{}" aria-label="{}">{}</a></td>',
        (
            (
                width,
                _CELL,
                survey_link(survey, contact, score, ref),
                _SCORE,
                f"{score} / {scores[-1]}",
                score,
            )
            for score in scores
        ),
    )
    if survey.kind == Survey.Kind.NPS:
        low_label = low or _("Not at all likely")
        high_label = high or _("Extremely likely")
    else:
        low_label = low or _("Very unsatisfied")
        high_label = high or _("Very satisfied")
    return format_html(
        '<table role="presentation" class="survey-row" width="100%" cellpadding="0" '
        'cellspacing="0" border="0" style="margin:16px 0;border-collapse:separate;">'
        '<tr><td><p style="{}">{}</p>'
        '<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0">'
        "<tr>{}</tr></table>"
        '<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0">'
        '<tr><td align="left" style="{}">{}</td><td align="right" style="{}">{}</td></tr>'
        "</table></td></tr></table>",
        _QUESTION,
        survey.text_in("question", contact_language(contact)),
        cells,
        _LABEL,
        low_label,
        _LABEL,
        high_label,
    )


def _send_ref(context: template.Context) -> str:
    """Which send this email is, from what the render context knows (messages have no id
    yet when they are rendered): the same send always gives the same ref, so a contact
    answers it once and can change their answer."""
    broadcast = context.get("broadcast")
    if getattr(broadcast, "pk", None):
        return f"broadcast:{broadcast.pk}"
    enrollment, step = context.get("enrollment_id"), context.get("step_id")
    if enrollment and step:
        return f"enrollment:{enrollment}:{step}"[:100]
    event = context.get("event")
    if isinstance(event, dict) and event.get("name"):
        properties = event.get("properties") or {}
        if isinstance(properties, dict) and properties.get("order_id") not in (None, ""):
            return f"order:{properties['order_id']}"[:100]
        occurred = event.get("occurred_at")
        digest = hashlib.sha256(f"{event['name']}|{occurred}".encode()).hexdigest()[:12]
        return f"event:{digest}"
    return f"date:{clock.now().date().isoformat()}"
