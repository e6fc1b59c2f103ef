"""Public subscription flows: double opt-in (consent only on confirmation, single-use
link) and a fresh preference-center link by email (rate-limited, same answer whether or
not the address is known).

The subscribe form is embeddable on the shop's own site, where the browser keeps no
cookie of ours (third-party cookies are blocked), so it does not use Django's CSRF cookie.
It carries a signed, time-limited, single-use form token instead, issued with each
rendering of the form (`subscribe_form_token`), and it is rate-limited per client
address and per email address (`subscribe_limits_take`); double opt-in still protects the
owner of the address, since nothing is granted until they click the emailed link."""

from __future__ import annotations

import hashlib
import secrets
import uuid

from django.conf import settings
from django.core import signing
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.utils import translation

from campaigns.models import EmailTemplate
from campaigns.services.messages import message_build
from campaigns.services.rendering import Rendered
from campaigns.services.sending import messages_send
from crm import clock
from crm.errors import KeepersError
from crm.limits import first_use, limit_take
from crm.links import contact_language, preferences_token
from crm.models import Contact, OptInRequest, Topic
from crm.services.contacts import contact_find, contact_upsert, email_normalize
from crm.services.preferences import Where, preferences_update, resubscribe

FORM_SALT = "keepers.subscribe-form"  # distinct from every link's salt


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


def subscribe_form_token() -> str:
    """A token for one submission of the subscribe form, good for
    KEEPERS_SUBSCRIBE_FORM_MAX_AGE seconds: signed (a forged one is refused), carrying a
    random nonce (so it is single-use) and its time of issue."""
    return signing.dumps(secrets.token_urlsafe(12), salt=FORM_SALT)


def subscribe_form_token_use(token: str) -> bool:
    """True once for a token this server issued that has not expired; False for a forged,
    expired or already used one."""
    max_age = settings.KEEPERS_SUBSCRIBE_FORM_MAX_AGE
    try:
        nonce = signing.loads(token, salt=FORM_SALT, max_age=max_age)
    except signing.BadSignature:  # SignatureExpired included
        return False
    return isinstance(nonce, str) and first_use(
        scope="subscribe-form", key=nonce, timeout=max_age + 60
    )


def subscribe_limits_take(*, ip: str | None, email: str | None = None, by_ip: bool = True) -> None:
    """Count a subscription request against the limits: per client address
    (KEEPERS_RATE_SUBSCRIBE_IP; not for the API, whose calls all come from the shop's
    server) and, when `email` is given, per email address (KEEPERS_RATE_SUBSCRIBE_ADDRESS,
    however the request came, so an inbox gets few confirmation emails). Raises
    RateLimited (429) or, for an address that is not one, KeepersError naming the field."""
    if by_ip:
        limit_take(scope="subscribe:ip", key=ip, rate=settings.KEEPERS_RATE_SUBSCRIBE_IP)
    if email is None:
        return
    limit_take(
        scope="subscribe:address",
        key=email_normalize(email),
        rate=settings.KEEPERS_RATE_SUBSCRIBE_ADDRESS,
    )


def preferences_link_send(*, email: str, ip: str | None) -> None:
    """Email a fresh preference-center link, if the address is known. The caller shows the
    same message either way. Both the client's address and the email address are
    rate-limited (KEEPERS_RATE_RENEW_IP, _ADDRESS), known or not: RateLimited says so."""
    limit_take(scope="renew:ip", key=ip, rate=settings.KEEPERS_RATE_RENEW_IP)
    try:
        email = email_normalize(email)
    except KeepersError:
        return
    limit_take(scope="renew:address", key=email, rate=settings.KEEPERS_RATE_RENEW_ADDRESS)
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
