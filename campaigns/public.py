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
from django.views.decorators.clickjacking import xframe_options_exempt
from django.views.decorators.csrf import csrf_exempt

from campaigns.services.subscriptions import (
    opt_in_request,
    preferences_link_send,
    subscribe_confirm,
    subscribe_request,
)
from crm.errors import KeepersError
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


def _ip(request: HttpRequest) -> str | None:
    return request.META.get("REMOTE_ADDR")


def _where(request: HttpRequest, source: str) -> Where:
    return Where(
        source=source, ip=_ip(request), user_agent=request.META.get("HTTP_USER_AGENT", "")[:500]
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
        preferences_link_send(email=request.POST.get("email", ""), ip=_ip(request))
        sent = True
    return _page(request, "bad_link", None, {"sent": sent}, status=200)


@xframe_options_exempt  # embeddable in the shop's pages
def subscribe(request: HttpRequest) -> HttpResponse:
    error, done = "", False
    if request.method == "POST":
        try:
            opt_in = subscribe_request(
                email=request.POST.get("email", ""),
                topics=request.POST.getlist("topics"),
                source=request.POST.get("source", "subscribe form")[:100],
                wording_version="subscribe-form-v1",
                ip=_ip(request),
                locale=translation.get_language() or "",
            )
            for hook in SUBSCRIBE_HOOKS:
                hook(request, opt_in.contact)
            done = True
        except KeepersError as failure:
            error = failure.message
    return _page(
        request,
        "subscribe",
        None,
        {"error": error, "done": done, "topics": Topic.objects.filter(is_active=True)},
    )


@private_page
def confirm(request: HttpRequest, token: str) -> HttpResponse:
    request_row = opt_in_request(token)
    if request_row is None:
        return _bad_link(request)
    contact = request_row.contact
    if request.method == "POST":
        _row, now = subscribe_confirm(
            token=token, ip=_ip(request), user_agent=request.META.get("HTTP_USER_AGENT", "")
        )
        return _page(request, "confirmed", contact, {"already": not now})
    if request_row.confirmed_at:
        return _page(request, "confirmed", contact, {"already": True})
    return _page(request, "confirm", contact, {})
