"""Public subscription flows: double opt-in (consent only on confirmation, single-use
link) and a fresh preference-center link by email (rate-limited, same answer whether or
not the address is known)."""

from __future__ import annotations

import hashlib
import secrets
import uuid

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.utils import translation

from campaigns.models import EmailTemplate
from campaigns.services.messages import message_build
from campaigns.services.rendering import Rendered
from campaigns.services.sending import messages_send
from crm import clock
from crm.errors import KeepersError
from crm.links import contact_language, preferences_token
from crm.models import Contact, OptInRequest, Topic
from crm.services.contacts import contact_find, contact_upsert, email_normalize
from crm.services.preferences import Where, preferences_update, resubscribe

RENEW_LIMIT = 3  # fresh links per address and per IP an hour


def _system_email(*, contact: Contact, key: str, subject: str, template: str, context: dict) -> int:
    """A transactional email from a built-in template, recorded as a Message and sent."""

    language = contact_language(contact)
    with translation.override(language):
        html = render_to_string(
            f"campaigns/email/system/{template}.html",
            {
                **context,
                "shop": {
                    "name": settings.KEEPERS_SHOP_NAME,
                    "address": settings.KEEPERS_SHOP_ADDRESS,
                },
            },
        )
        text = render_to_string(f"campaigns/email/system/{template}.txt", context)
    message = message_build(
        contact=contact,
        rendered=Rendered(subject=str(subject), html=html, text=text),
        category=EmailTemplate.Category.TRANSACTIONAL,
        idempotency_key=key,
        now=clock.now(),
        step_id=template,
    )
    try:
        with transaction.atomic():
            message.save(force_insert=True)
    except IntegrityError:
        return 0
    transaction.on_commit(lambda: messages_send(ids=[message.pk]))
    return message.pk


def _public_url(path: str) -> str:
    return settings.KEEPERS_PUBLIC_URL.rstrip("/") + path


@transaction.atomic
def subscribe_request(
    *,
    email: str,
    topics: list[str] | None = None,
    source: str = "subscribe form",
    wording_version: str = "",
    ip: str | None = None,
    first_name: str = "",
    locale: str = "",
) -> OptInRequest:
    """Ask for a subscription: the contact exists from now on, but marketing consent is
    granted only when they confirm the link we email them."""
    email = email_normalize(email)
    topics = topics or []
    known = set(Topic.objects.filter(is_active=True).values_list("slug", flat=True))
    for slug in topics:
        if slug not in known:
            raise KeepersError(f"Unknown topic {slug!r}.", field="topics")
    fields = {
        "email": email,
        **({"first_name": first_name} if first_name else {}),
        **({"locale": locale} if locale else {}),
    }
    contact, _created = contact_upsert(source="subscribe", **fields)
    raw = secrets.token_urlsafe(24)
    request = OptInRequest.objects.create(
        contact=contact,
        token_hash=hashlib.sha256(raw.encode()).hexdigest(),
        topics=topics,
        source=source[:100],
        wording_version=wording_version[:50],
        ip=ip or None,
        created_at=clock.now(),
    )
    with translation.override(contact_language(contact)):
        subject = translation.gettext("Please confirm your subscription")
    _system_email(
        contact=contact,
        key=f"optin:{request.pk}",
        subject=subject,
        template="confirm",
        context={"confirm_url": _public_url(f"/c/{raw}/"), "contact": contact},
    )
    return request


def opt_in_request(token: str) -> OptInRequest | None:
    return (
        OptInRequest.objects.filter(token_hash=hashlib.sha256(token.encode()).hexdigest())
        .select_related("contact")
        .first()
    )


@transaction.atomic
def subscribe_confirm(
    *, token: str, ip: str | None, user_agent: str
) -> tuple[OptInRequest | None, bool]:
    """Returns (request, confirmed_now). A link works once: the second time, confirmed_now
    is False and nothing changes."""
    request = opt_in_request(token)
    if request is None:
        return None, False
    claimed = OptInRequest.objects.filter(pk=request.pk, confirmed_at__isnull=True).update(
        confirmed_at=clock.now()
    )
    if not claimed:
        return request, False
    where = Where(source=f"double opt-in ({request.source})", ip=ip, user_agent=user_agent)
    resubscribe(contact=request.contact, where=where)
    if request.topics:
        preferences_update(contact=request.contact, topics=set(request.topics), where=where)
    return request, True


def preferences_link_send(*, email: str, ip: str | None) -> None:
    """Email a fresh preference-center link, if the address is known. The caller shows the
    same message either way; both the address and the IP are rate-limited."""
    try:
        email = email_normalize(email)
    except KeepersError:
        return
    for key in (f"renew:email:{email}", f"renew:ip:{ip}"):
        count = cache.get_or_set(key, 0, 3600)
        if count >= RENEW_LIMIT:
            return
        cache.incr(key)
    contact = contact_find(email=email)
    if contact is None:
        return
    with translation.override(contact_language(contact)):
        subject = translation.gettext("Your email preferences link")
    _system_email(
        contact=contact,
        key=f"renew:{contact.pk}:{uuid.uuid4().hex}",
        subject=subject,
        template="preferences_link",
        context={
            "preferences_url": _public_url(f"/p/{preferences_token(contact.pk)}/"),
            "contact": contact,
        },
    )
