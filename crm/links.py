"""Signed links to a contact's own pages, for every app that emails customers: the
preference center (and the pages beside it, such as loyalty's referral page) and the
one-click unsubscribe. No login: the signature is the proof; a tampered or expired link
reads as no contact. Also the language a contact's pages and emails are in, and
`private_page`, the headers every page behind such a link is sent with."""

from __future__ import annotations

import functools
from collections.abc import Iterable

from django.conf import settings
from django.core import signing
from django.utils.cache import add_never_cache_headers

from crm.models import Contact

PREFERENCES_SALT = "keepers.preferences"
PREFERENCES_MAX_AGE = 180 * 86400
UNSUBSCRIBE_SALT = "keepers.unsubscribe"  # distinct, so one link never opens the other


def preferences_token(contact_id: int) -> str:
    return signing.dumps(contact_id, salt=PREFERENCES_SALT, compress=True)


def preferences_contact(token: str) -> Contact | None:
    """The contact of a preference link, or None when it is tampered with or expired."""
    try:
        contact_id = signing.loads(token, salt=PREFERENCES_SALT, max_age=PREFERENCES_MAX_AGE)
    except signing.BadSignature:
        return None
    return Contact.objects.filter(pk=contact_id).first()


def unsubscribe_token(contact_id: int) -> str:
    """Opaque and signed; no expiry, so unsubscribe links keep working (RFC 8058)."""
    return signing.dumps(contact_id, salt=UNSUBSCRIBE_SALT, compress=True)


def unsubscribe_contact(token: str) -> Contact | None:
    """The contact of an unsubscribe link, or None when it is tampered with."""
    try:
        contact_id = signing.loads(token, salt=UNSUBSCRIBE_SALT)
    except signing.BadSignature:
        return None
    return Contact.objects.filter(pk=contact_id).first()


def language_choose(locale: str | None, available: Iterable[str], default: str) -> str:
    """The one rule for which language a contact gets, of those `available` (Django
    language codes: "en", "ja", "pt-br"): their locale exactly ("ja-JP" and "ja_JP" read
    as "ja-jp"), else its language alone ("pt-BR" → "pt"), else a regional form of that
    language ("zh" → "zh-hans"), else `default`."""
    codes = {code.lower(): code for code in available}
    wanted = (locale or "").strip().replace("_", "-").lower()
    if not wanted:
        return default
    if wanted in codes:
        return codes[wanted]
    base = wanted.split("-")[0]
    if base in codes:
        return codes[base]
    for code in sorted(codes):
        if code.split("-")[0] == base:
            return codes[code]
    return default


def contact_language(contact: Contact | None) -> str:
    """The language of a contact's pages and of the shop's own words in emails: theirs
    when the site is translated into it (settings.LANGUAGES), else the shop's
    (LANGUAGE_CODE)."""
    return language_choose(
        contact.locale if contact else "",
        (code for code, _ in settings.LANGUAGES),
        settings.LANGUAGE_CODE,
    )


def private_page(view):
    """For a view behind a signed link (or its bad-link and fresh-link pages): the page
    shows the customer's address and choices, so no browser or proxy stores it
    (Cache-Control: no-store, private) and no search engine indexes it (X-Robots-Tag; the
    templates also carry a robots meta for copies saved outside HTTP)."""

    @functools.wraps(view)
    def wrapped(request, *args, **kwargs):
        response = view(request, *args, **kwargs)
        add_never_cache_headers(response)
        response.headers["X-Robots-Tag"] = "noindex, nofollow"
        return response

    return wrapped
