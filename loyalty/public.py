"""Public referral pages, no login.

- The share link's landing page, /r/<code>/: records the visit, remembers the code in a
  first-party cookie (for a signup that happens later on another of our pages) and
  offers a signup form that attaches the friend to the referrer.
- A contact's referral page, /p/<token>/referral/ (the signed link in emails, as the
  preference center's): their link and code to share, the friends they referred and how
  each stands, rewards, points, tier and store credit.

Same standards as the preference center: mobile-first, accessible, English and
Japanese, a friendly page for a bad link."""

from __future__ import annotations

import re
import secrets
from decimal import Decimal
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django import forms
from django.conf import settings
from django.db import transaction
from django.db.models import Sum
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.cache import never_cache

from campaigns.services.subscriptions import subscribe_limits_take, subscribe_request
from crm.client_ip import client_ip
from crm.errors import KeepersError
from crm.limits import RateLimited
from crm.links import contact_language, preferences_contact, private_page
from crm.models import Contact
from crm.services.contacts import contact_fields_clean, contact_find, contact_upsert
from loyalty.api.views import loyalty_summary
from loyalty.models import POINTS, Coupon, LedgerEntry, Referral
from loyalty.services.referrals import (
    Reward,
    code_lookup,
    referral_attach,
    referral_code_for,
    referral_visit_record,
    reward_parse,
    share_url,
)

REF_COOKIE = "keepers_ref"
REF_COOKIE_AGE = 30 * 86400
VISITOR_COOKIE = "keepers_visitor"
VISITOR_COOKIE_AGE = 365 * 86400
_VISITOR_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
FRIENDS_SHOWN = 200


# ------------------------------------------------------------------------------------------
# Shared
# ------------------------------------------------------------------------------------------
def _page(
    request: HttpRequest, template: str, context: dict, *, language: str, status: int = 200
) -> HttpResponse:
    with translation.override(language):
        response = render(
            request,
            template if "/" in template else f"loyalty/public/{template}.html",
            {"LANGUAGE_CODE": language, "shop_name": settings.KEEPERS_SHOP_NAME, **context},
            status=status,
        )
    response.headers["Content-Language"] = language  # LocaleMiddleware would say the request's
    return response


def _request_language() -> str:
    """The visitor's language as LocaleMiddleware chose it (Accept-Language)."""
    return "ja" if (translation.get_language() or "").startswith("ja") else "en"


def _reward_text(reward: Reward) -> str:
    """Reward.describe(), in the page's language."""
    if reward.kind == "points":
        count = int(reward.amount)
        return ngettext("%(count)s point", "%(count)s points", count) % {"count": count}
    if reward.kind == "credit":
        return _("%(amount)s %(currency)s store credit") % {
            "amount": f"{reward.amount:.2f}",
            "currency": reward.currency,
        }
    return _("a %(percent)s%% coupon") % {"percent": f"{reward.amount:g}"}


def _minimum() -> str:
    minimum = Decimal(settings.KEEPERS_REFERRAL_MIN_ORDER)
    return f"{minimum:.2f} {settings.KEEPERS_BASE_CURRENCY}"


def _terms() -> dict:
    return {
        "friend_reward": _reward_text(reward_parse(settings.KEEPERS_REFERRAL_FRIEND_REWARD)),
        "referrer_reward": _reward_text(reward_parse(settings.KEEPERS_REFERRAL_REFERRER_REWARD)),
        "minimum": _minimum(),
        "return_days": settings.KEEPERS_REFERRAL_RETURN_DAYS,
    }


# ------------------------------------------------------------------------------------------
# The landing page: /r/<code>/
# ------------------------------------------------------------------------------------------
class SignupForm(forms.Form):
    email = forms.EmailField(max_length=254)
    first_name = forms.CharField(max_length=150, required=False)
    marketing = forms.BooleanField(required=False)


@never_cache
def referral_landing(request: HttpRequest, code: str) -> HttpResponse:
    language = _request_language()
    owner = code_lookup(code) if len(code) <= 40 else None
    if owner is None:
        return _page(
            request,
            "invalid_code",
            {"shop_url": settings.KEEPERS_SHOP_URL},
            language=language,
            status=404,
        )
    visitor = request.COOKIES.get(VISITOR_COOKIE, "")
    if not _VISITOR_ID.match(visitor):
        visitor = secrets.token_urlsafe(16)

    with translation.override(language):  # the form's error messages
        form = SignupForm(request.POST if request.method == "POST" else None)
        signed_up = None
        if request.method == "POST" and form.is_valid():
            try:
                # the subscribe form's limits: this form also makes contacts and can mail them
                subscribe_limits_take(ip=client_ip(request), email=form.cleaned_data["email"])
                signed_up = _signup(request, form.cleaned_data, code=owner.code, language=language)
            except RateLimited as limited:
                response = _page(
                    request,
                    "campaigns/public/too_many.html",
                    {"minutes": limited.retry_minutes},
                    language=language,
                    status=429,
                )
                response.headers["Retry-After"] = str(limited.retry_after)
                return response
            except KeepersError as failure:
                form.add_error(
                    failure.field if failure.field in form.fields else None, failure.message
                )
        context = {
            "referrer_name": owner.contact.first_name,
            "form": form,
            "shop_url": settings.KEEPERS_SHOP_URL,
            **_terms(),
        }
    if signed_up is not None:
        response = _page(
            request,
            "thanks",
            {
                **context,
                # what they typed, never the stored contact's name: anyone can type any address
                "name": form.cleaned_data["first_name"],
                "confirm": form.cleaned_data["marketing"],
            },
            language=language,
        )
    else:
        if request.method == "GET":
            referral_visit_record(
                code=owner,
                visitor=visitor,
                ip=client_ip(request) or "",
                user_agent=request.META.get("HTTP_USER_AGENT", ""),
            )
        response = _page(request, "landing", context, language=language)
    secure = request.is_secure()
    response.set_cookie(
        REF_COOKIE,
        owner.code,
        max_age=REF_COOKIE_AGE,
        httponly=True,
        samesite="Lax",
        secure=secure,
    )
    response.set_cookie(
        VISITOR_COOKIE,
        visitor,
        max_age=VISITOR_COOKIE_AGE,
        httponly=True,
        samesite="Lax",
        secure=secure,
    )
    return response


@transaction.atomic
def _signup(request: HttpRequest, data: dict, *, code: str, language: str) -> Contact:
    """Find or create the friend, attach them to the code (a refusal is recorded by the
    service, and the page says the same either way: whether an address is already a
    customer is not for an anonymous form to reveal), and ask for marketing consent only
    when the box is ticked — by double opt-in, so consent starts on confirmation."""
    fields = contact_fields_clean(
        {"email": data["email"], "first_name": data["first_name"], "locale": language}
    )
    contact = contact_find(email=fields["email"])
    if contact is None:
        # A known contact is left as it is: an anonymous form must not rename anyone.
        contact, _created = contact_upsert(
            source="referral",
            **{name: value for name, value in fields.items() if value},
        )
    referral_attach(friend=contact, code=code, channel="form")
    if data["marketing"]:
        subscribe_request(
            email=contact.email,
            source="referral landing page",
            wording_version="referral-landing-v1",
            ip=client_ip(request),
        )
    return contact


def referral_from_cookie(request: HttpRequest, contact: Contact | None) -> Referral | None:
    """Attach a contact who signs up on another of our pages (the subscribe form) to the
    code the landing page left in the `keepers_ref` cookie. None without the cookie, or
    when the attachment is refused (the service records why)."""
    code = request.COOKIES.get(REF_COOKIE, "")
    if not code or contact is None or len(code) > 40:
        return None
    return referral_attach(friend=contact, code=code, channel="cookie")


# ------------------------------------------------------------------------------------------
# The referral page: /p/<token>/referral/
# ------------------------------------------------------------------------------------------
@private_page
def referral_page(request: HttpRequest, token: str) -> HttpResponse:
    contact = preferences_contact(token)
    if contact is None:
        # The preference center's friendly page, with its "email me a fresh link" form.
        return _page(
            request, "campaigns/public/bad_link.html", {}, language=_request_language(), status=404
        )
    language = contact_language(contact) if contact.locale else _request_language()
    with translation.override(language), _contact_timezone(contact):
        code = referral_code_for(contact)
        link = share_url(code)
        terms = _terms()
        summary = loyalty_summary(contact)
        context = {
            "contact": contact,
            "code": code.code,
            "link": link,
            "share": _share_links(link, terms["friend_reward"]),
            "friends": _friends(contact),
            "earned": _earned(contact, summary.get("pending_referral_rewards") or []),
            "points": summary["points"],
            "credit": summary["store_credit"],
            "tier": summary.get("tier"),
            **terms,
        }
        response = _page(request, "referral", context, language=language)
    response.headers["X-Robots-Tag"] = "noindex"  # a personal page behind a signed link
    return response


def _contact_timezone(contact: Contact) -> timezone.override:
    """Dates on the page (expiry, reward day) in the contact's own time zone."""
    try:
        zone = ZoneInfo(contact.timezone) if contact.timezone else None
    except (ZoneInfoNotFoundError, ValueError):  # a zone this system does not know
        zone = None
    return timezone.override(zone)


def _share_links(link: str, friend_reward: str) -> dict:
    text = _("Join me at %(shop)s: you get %(reward)s on your first order with my link.") % {
        "shop": settings.KEEPERS_SHOP_NAME,
        "reward": friend_reward,
    }
    subject = _("A gift for you from %(shop)s") % {"shop": settings.KEEPERS_SHOP_NAME}
    body = f"{text}\n\n{link}"
    return {
        "text": text,
        "title": subject,
        "mailto": f"mailto:?subject={quote(subject)}&body={quote(body)}",
        "whatsapp": "https://wa.me/?" + urlencode({"text": f"{text} {link}"}, quote_via=quote),
        "x": "https://twitter.com/intent/tweet?"
        + urlencode({"text": text, "url": link}, quote_via=quote),
    }


def _masked(email: str) -> str:
    local, _at, domain = email.partition("@")
    return f"{local[:1]}•••@{domain}" if domain else "•••"


def _friends(contact: Contact) -> list[dict]:
    """The friends this contact referred, newest first: shown by first name or a masked
    address, never the full one."""
    rows = (
        Referral.objects.filter(referrer=contact)
        .select_related("friend")
        .order_by("-created_at", "-pk")[:FRIENDS_SHOWN]
    )
    friends = []
    for row in rows:
        friend = row.friend
        name = friend.first_name or (_masked(friend.email) if friend.email else _("A friend"))
        friends.append({"name": name, **_status(row)})
    return friends


def _status(row: Referral) -> dict:
    Status = Referral.Status
    if row.status == Status.SIGNED_UP:
        return {"status": "pending", "label": _("Pending"), "detail": _("No order yet.")}
    if row.status == Status.PENDING:
        return {
            "status": "pending",
            "label": _("Pending"),
            "detail": _("Ordered: your reward comes after the return window, on %(date)s.")
            % {"date": timezone.localtime(row.reward_at).strftime("%Y-%m-%d")}
            if row.reward_at
            else _("Ordered: your reward comes after the return window."),
        }
    if row.status == Status.REWARDED:
        return {
            "status": "rewarded",
            "label": _("Rewarded"),
            "detail": _("Rewarded on %(date)s.")
            % {"date": timezone.localtime(row.rewarded_at).strftime("%Y-%m-%d")}
            if row.rewarded_at
            else "",
        }
    if row.status == Status.CANCELLED:
        return {
            "status": "cancelled",
            "label": _("Cancelled"),
            "detail": _("The order was returned."),
        }
    return {
        "status": "refused",
        "label": _("Refused"),
        "detail": _("This referral does not qualify for a reward."),
    }


def _earned(contact: Contact, pending: list) -> dict:
    """What referrals have given this contact: points and store credit granted (both as a
    referrer and as a referred friend), referral coupons, and how many rewards are still
    pending (the summary's list)."""
    granted = (
        LedgerEntry.objects.filter(
            contact=contact, source_type="referral", type=LedgerEntry.Type.EARN
        )
        .values("unit")
        .annotate(total=Sum("amount"))
        .order_by("unit")
    )
    lines = []
    for row in granted:
        if row["unit"] == POINTS:
            count = int(row["total"])
            lines.append(ngettext("%(count)s point", "%(count)s points", count) % {"count": count})
        else:
            lines.append(
                _("%(amount)s %(currency)s store credit")
                % {"amount": f"{row['total']:.2f}", "currency": row["unit"]}
            )
    coupons = list(
        Coupon.objects.filter(contact=contact, source_type="referral")
        .order_by("created_at")
        .values("code", "expires_at")
    )
    return {"lines": lines, "coupons": coupons, "pending": len(pending)}
