"""Signed links to a contact's own pages, for every app that emails customers: the
preference center (and the pages beside it, such as loyalty's referral page) and the
one-click unsubscribe. No login: the signature is the proof; a tampered or expired link
reads as no contact. Also the language a contact's pages and emails are in."""

from __future__ import annotations

from django.core import signing

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


def contact_language(contact: Contact | None) -> str:
    """The language of a contact's pages and emails: Japanese for a ja locale, else
    English."""
    locale = (contact.locale if contact else "") or ""
    return "ja" if locale.lower().startswith("ja") else "en"
