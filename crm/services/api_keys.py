"""API keys: random, shown once, stored as a SHA-256 digest (the key has 256 bits of
entropy, so a fast hash is enough and keeps authentication to one indexed lookup)."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from crm import clock
from crm.errors import KeepersError
from crm.models import ApiKey, ApiScope

KEY_PREFIX = "kp_"


def _digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def api_key_create(*, name: str, scope: str = ApiScope.READ, created_by=None) -> tuple[ApiKey, str]:
    """Returns the stored key and the raw key, which is never retrievable again."""
    if scope not in ApiScope.values:
        raise KeepersError(f"Scope must be one of {', '.join(ApiScope.values)}.", field="scope")
    if not name.strip():
        raise KeepersError("Give the key a name.", field="name")
    raw = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey.objects.create(
        name=name.strip()[:100],
        scope=scope,
        prefix=raw[:10],
        key_hash=_digest(raw),
        created_by=created_by,
    )
    return key, raw


def api_key_authenticate(raw: str) -> ApiKey | None:
    if not raw or len(raw) > 200:
        return None
    key = ApiKey.objects.filter(key_hash=_digest(raw), revoked_at__isnull=True).first()
    if key is None:
        return None
    now = clock.now()
    # Record use at most once a minute: ingestion must not write a row per request.
    if key.last_used_at is None or now - key.last_used_at > timedelta(minutes=1):
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
    return key


def api_key_revoke(*, key: ApiKey) -> None:
    ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=clock.now())
