"""API key authentication: `Authorization: Bearer <key>`, or HTTP Basic with the key as
the username and an empty password (as Segment's and RudderStack's SDKs send it)."""

from __future__ import annotations

import base64
import binascii

from rest_framework import authentication, exceptions, permissions, throttling

from crm.models import ApiKey, ApiScope
from crm.services.api_keys import api_key_authenticate


def key_from_header(header: str) -> str | None:
    scheme, _, value = header.partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer":
        return value.strip()
    if scheme == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise exceptions.AuthenticationFailed(
                "The Basic credentials are not valid base64."
            ) from None
        return decoded.partition(":")[0]
    return None


class ApiKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        raw = key_from_header(header)
        if raw is None:
            raise exceptions.AuthenticationFailed(
                "Use 'Authorization: Bearer <api key>'.", code="authentication_failed"
            )
        key = api_key_authenticate(raw)
        if key is None:
            raise exceptions.AuthenticationFailed("This API key is not valid or was revoked.")
        return key, key

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="keepers"'


class HasApiKeyScope(permissions.BasePermission):
    """Reads need a key; writes need a key with the write scope."""

    message = "This API key is read-only; writes need a key with the write scope."

    def has_permission(self, request, view) -> bool:
        key = request.auth
        if not isinstance(key, ApiKey):
            raise exceptions.NotAuthenticated("Send an API key: 'Authorization: Bearer <key>'.")
        if request.method in permissions.SAFE_METHODS:
            return True
        return key.scope == ApiScope.WRITE


class AnyApiKey(HasApiKeyScope):
    """A POST that moves nothing (checking a coupon code, previewing an email): a
    read-only key may ask too."""

    def has_permission(self, request, view) -> bool:
        if not isinstance(request.auth, ApiKey):
            raise exceptions.NotAuthenticated("Send an API key: 'Authorization: Bearer <key>'.")
        return True


class ApiKeyRateThrottle(throttling.SimpleRateThrottle):
    scope = "api_key"

    def get_cache_key(self, request, view):
        if isinstance(request.auth, ApiKey):
            return self.cache_format % {"scope": self.scope, "ident": request.auth.pk}
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}
