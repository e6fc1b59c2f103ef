"""Public pages reached from emails. For now: the unsubscribe link (RFC 8058 one-click
POST, and a GET page with a one-button confirmation — a GET never unsubscribes by
itself, since link scanners prefetch). The preference center grows here."""

from __future__ import annotations

from django.core import signing
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt

from campaigns.services.rendering import UNSUBSCRIBE_SALT
from crm.models import Contact
from crm.selectors import consent_current
from crm.services.consent import consent_record


def _contact(token: str) -> Contact | None:
    try:
        contact_id = signing.loads(token, salt=UNSUBSCRIBE_SALT)
    except signing.BadSignature:
        return None
    return Contact.objects.filter(pk=contact_id).first()


def _client_ip(request: HttpRequest) -> str | None:
    return request.META.get("REMOTE_ADDR")


@csrf_exempt  # RFC 8058: mail clients POST without cookies or a CSRF token; the token is the proof
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    contact = _contact(token)
    if contact is None:
        return render(request, "campaigns/public/bad_link.html", status=404)
    if request.method == "POST":
        one_click = request.POST.get("List-Unsubscribe") == "One-Click"
        confirmed = request.POST.get("confirm") == "unsubscribe"
        if one_click or confirmed:
            if consent_current(contact=contact) != "withdrawn":
                consent_record(
                    contact=contact,
                    status="withdrawn",
                    source="one-click unsubscribe" if one_click else "unsubscribe page",
                    ip=_client_ip(request),
                    user_agent=request.META.get("HTTP_USER_AGENT", ""),
                )
            if one_click:
                return HttpResponse("Unsubscribed.", content_type="text/plain")
            return render(request, "campaigns/public/unsubscribed.html", {"contact": contact})
    return render(
        request,
        "campaigns/public/unsubscribe.html",
        {"contact": contact, "subscribed": consent_current(contact=contact) == "granted"},
    )
