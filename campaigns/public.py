"""Public pages reached from emails: the preference center, one-click unsubscribe
(RFC 8058), double opt-in, and a fresh link for a bad or expired one. No login: signed
links. Pages are mobile-first, accessible, and in the contact's language (English,
Japanese)."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import translation
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.clickjacking import xframe_options_exempt
from django.views.decorators.csrf import csrf_exempt

from campaigns.services.subscriptions import (
    opt_in_request,
    preferences_link_send,
    subscribe_confirm,
    subscribe_form_token,
    subscribe_form_token_use,
    subscribe_limits_take,
    subscribe_request,
)
from crm.client_ip import client_ip
from crm.errors import KeepersError
from crm.limits import RateLimited
from crm.links import contact_language, preferences_contact, private_page, unsubscribe_contact
from crm.models import Contact, Frequency, Topic
from crm.services.preferences import (
    Where,
    preferences_of,
    preferences_update,
    resubscribe,
    unsubscribe_all,
)

# What the apps above do when someone signs up on the subscribe form, each called with
# (request, contact) after the opt-in request is recorded (loyalty: attach a friend who
# came through a referral link, from its landing page's cookie). Added through
# campaigns.extend.subscribe_hook_add.
SUBSCRIBE_HOOKS: list[Callable[[HttpRequest, Contact], None]] = []

# The subscribe form's honeypot: a field people never see (hidden by the stylesheet and
# from assistive technology) and bots fill in. A submission with it is answered as a
# success and does nothing.
HONEYPOT = "website"


def _where(request: HttpRequest, source: str) -> Where:
    return Where(
        source=source,
        ip=client_ip(request),
        user_agent=request.META.get("HTTP_USER_AGENT", "")[:500],
    )


def _page(
    request: HttpRequest, template: str, contact: Contact | None, context: dict, status: int = 200
):
    with translation.override(contact_language(contact) if contact else translation.get_language()):
        response = render(
            request,
            f"campaigns/public/{template}.html",
            {"contact": contact, "LANGUAGE_CODE": translation.get_language(), **context},
            status=status,
        )
    return response


def _bad_link(request: HttpRequest) -> HttpResponse:
    return _page(request, "bad_link", None, {}, status=404)


def too_many_page(
    request: HttpRequest, limited: RateLimited, contact: Contact | None = None
) -> HttpResponse:
    """The answer to a request over a limit: 429, when to try again, in the contact's
    language (else the visitor's)."""
    response = _page(request, "too_many", contact, {"minutes": limited.retry_minutes}, status=429)
    response.headers["Retry-After"] = str(limited.retry_after)
    return response


@private_page
def preference_center(request: HttpRequest, token: str) -> HttpResponse:
    contact = preferences_contact(token)
    if contact is None:
        return _bad_link(request)
    return _preferences(request, contact, confirm_unsubscribe=False)


@private_page
@csrf_exempt  # RFC 8058 one-click POSTs come without cookies or CSRF token; the signed token is the proof
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    contact = unsubscribe_contact(token)
    if contact is None:
        return _bad_link(request)
    if request.method == "POST" and request.POST.get("List-Unsubscribe") == "One-Click":
        unsubscribe_all(contact=contact, where=_where(request, "one-click unsubscribe"))
        return HttpResponse("Unsubscribed.", content_type="text/plain")
    if request.method == "POST":  # the page's own form; CSRF is checked there
        from django.middleware.csrf import CsrfViewMiddleware

        rejected = CsrfViewMiddleware(lambda r: None).process_view(request, None, (), {})
        if rejected is not None:
            return rejected
    # A GET never unsubscribes (scanners prefetch): it shows the preference center with a
    # one-button confirmation at the top.
    return _preferences(request, contact, confirm_unsubscribe=True)


def _preferences(
    request: HttpRequest, contact: Contact, *, confirm_unsubscribe: bool
) -> HttpResponse:
    notice, error = [], ""
    if request.method == "POST":
        action = request.POST.get("action")
        where = _where(request, "preference center")
        try:
            if action == "unsubscribe":
                if unsubscribe_all(contact=contact, where=where):
                    notice = [_("You are unsubscribed from all marketing emails.")]
                confirm_unsubscribe = False
            elif action == "resubscribe":
                resubscribe(contact=contact, where=where)
                notice = [_("Welcome back: you are subscribed again.")]
            elif action == "save":
                notice = preferences_update(
                    contact=contact,
                    topics=set(request.POST.getlist("topics")),
                    frequency=request.POST.get("frequency"),
                    where=where,
                )
                notice = [_("Your preferences are saved.")] if notice else [_("Nothing changed.")]
        except KeepersError as failure:
            error = failure.message
    state = preferences_of(contact)
    return _page(
        request,
        "preferences",
        contact,
        {
            **state,
            "notice": notice,
            "error": error,
            "confirm_unsubscribe": confirm_unsubscribe and state["marketing"],
            "frequencies": [
                (Frequency.EVERYTHING, _("Everything")),
                (Frequency.WEEKLY, _("At most one email a week")),
                (Frequency.PAUSED, _("Pause for 30 days")),
            ],
        },
    )


@private_page
def renew(request: HttpRequest) -> HttpResponse:
    """A bad or expired link: offer a fresh one by email (rate-limited)."""
    sent = False
    if request.method == "POST":
        try:
            preferences_link_send(email=request.POST.get("email", ""), ip=client_ip(request))
        except RateLimited as limited:
            return too_many_page(request, limited)
        sent = True
    return _page(request, "bad_link", None, {"sent": sent}, status=200)


# Embeddable on the shop's pages (an iframe): there our CSRF cookie is a third-party cookie
# the browser does not send, so the form carries a signed single-use token instead, and
# the limits and the honeypot hold back what a cookie would not have anyway (see
# campaigns/services/subscriptions.py). Double opt-in protects the address's owner.
@csrf_exempt
@xframe_options_exempt
@never_cache  # each rendering carries its own single-use token: no shared cache may keep one
def subscribe(request: HttpRequest) -> HttpResponse:
    error, error_field, done, status = "", "", False, 200
    data = request.POST if request.method == "POST" else request.GET
    source = str(data.get("source") or "subscribe form")[:100]
    if request.method == "POST":
        ip = client_ip(request)
        email = request.POST.get("email", "")
        try:
            if not subscribe_form_token_use(request.POST.get("form_token", "")):
                raise KeepersError(
                    _("This form has expired or could not be checked. Please send it again."),
                    field="form_token",
                )
            if request.POST.get(HONEYPOT):
                subscribe_limits_take(ip=ip)
                done = True
            else:
                subscribe_limits_take(ip=ip, email=email)
                opt_in = subscribe_request(
                    email=email,
                    topics=request.POST.getlist("topics"),
                    source=source,
                    wording_version="subscribe-form-v1",
                    ip=ip,
                    locale=translation.get_language() or "",
                )
                for hook in SUBSCRIBE_HOOKS:
                    hook(request, opt_in.contact)
                done = True
        except RateLimited as limited:
            return too_many_page(request, limited)
        except KeepersError as failure:
            error, error_field, status = failure.message, failure.field or "", 400
            if error_field == "email":  # the service's message is the API's, in English
                error = _("Please enter a valid email address.")
    return _page(
        request,
        "subscribe",
        None,
        {
            "error": error,
            "error_field": error_field,
            "done": done,
            "email": "" if done else request.POST.get("email", ""),
            "source": source,
            "form_token": "" if done else subscribe_form_token(),
            "honeypot": HONEYPOT,
            "topics": Topic.objects.filter(is_active=True),
        },
        status=status,
    )


@private_page
def confirm(request: HttpRequest, token: str) -> HttpResponse:
    request_row = opt_in_request(token)
    if request_row is None:
        return _bad_link(request)
    contact = request_row.contact
    if request.method == "POST":
        _row, now = subscribe_confirm(
            token=token,
            ip=client_ip(request),
            user_agent=request.META.get("HTTP_USER_AGENT", ""),
        )
        return _page(request, "confirmed", contact, {"already": not now})
    if request_row.confirmed_at:
        return _page(request, "confirmed", contact, {"already": True})
    return _page(request, "confirm", contact, {})
