"""OpenAPI for the whole API, in one place: API key authentication (Bearer), and every
status an operation can answer — its success codes from the view, and the 4xx that the
layers around every view give it, each with the one error body ({"code", "message",
"details"}, crm/api/errors.py).

KeepersAutoSchema (REST_FRAMEWORK's DEFAULT_SCHEMA_CLASS) adds to each operation the
errors its shape implies:

- 401 (with WWW-Authenticate) where the view authenticates, 429 (with Retry-After) where it
  is throttled: every API key view;
- 403 on writes under HasApiKeyScope (a read-only key);
- 404 where the path names an object, or the list is cursor-paginated (a bad cursor);
- 400 where there is a body or a query string to get wrong; 413 and 415 with a body;
- 422 where the operation takes an Idempotency-Key (the key reused with another body).

What only the view knows (a 409 from an object's state, a 404 for a contact named in the
body, a 403 on a read) it declares with `extend_schema(responses={..., **error_responses(
409)})`; campaigns and loyalty import error_responses from crm.extend. A 4xx a view declares
with a description only gets the error body too."""

from __future__ import annotations

from drf_spectacular.extensions import (
    OpenApiAuthenticationExtension,
    OpenApiSerializerFieldExtension,
)
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers

from crm.api.auth import HasApiKeyScope

ERROR_DESCRIPTIONS = {
    400: "Bad input; `details.field` names the field when there is one",
    401: "No API key, or one that is not valid or was revoked",
    403: "The key's scope does not allow this (writes need the write scope)",
    404: "No such object (or cursor)",
    409: "The object's state does not allow this",
    413: "The request body is larger than KEEPERS_MAX_BODY_BYTES",
    415: "The body is not JSON (send Content-Type: application/json)",
    422: "This Idempotency-Key was used with another body",
    429: "Too many requests; Retry-After says in how many seconds to retry",
}
HEADERS = {
    401: {"WWW-Authenticate": 'Bearer realm="keepers"'},
    429: {"Retry-After": "Seconds until a request may be made again"},
}
WRITES = {"POST", "PUT", "PATCH", "DELETE"}


class ErrorSerializer(serializers.Serializer):
    """Every 4xx: a stable code to branch on, a message for a person, and details."""

    code = serializers.CharField(help_text="invalid, not_found, rate_limited, coupon_expired…")
    message = serializers.CharField(help_text="What went wrong and what to do, in English")
    details = serializers.DictField(
        help_text="`field` (the dotted path of the bad input) and `errors` for a 400; "
        "`scope` and `retry_after` for a 429; {} when there is nothing more to say"
    )

    class Meta:
        ref_name = "Error"


def error_responses(*statuses: int, **descriptions: str) -> dict[int, OpenApiResponse]:
    """`responses` entries for these 4xx statuses, with the error body; a description per
    status as `d409="…"` overrides the default one."""
    return {
        status: OpenApiResponse(
            ErrorSerializer, description=descriptions.get(f"d{status}", ERROR_DESCRIPTIONS[status])
        )
        for status in statuses
    }


class KeepersAutoSchema(AutoSchema):
    def get_operation(self, path, path_regex, path_prefix, method, registry):
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is None:
            return None
        responses = operation["responses"]
        for status in sorted(self._errors_possible(operation)):
            responses.setdefault(str(status), {"description": ERROR_DESCRIPTIONS[status]})
        error = {
            "application/json": {"schema": self.resolve_serializer(ErrorSerializer, "response").ref}
        }
        for code, response in responses.items():
            if code.startswith("4"):
                response.setdefault("content", error)
                headers = HEADERS.get(int(code))
                if headers:
                    response.setdefault(
                        "headers",
                        {
                            name: {"schema": {"type": "string"}, "description": text}
                            for name, text in headers.items()
                        },
                    )
        operation["responses"] = dict(sorted(responses.items()))
        return operation

    def _errors_possible(self, operation: dict) -> set[int]:
        view = self.view
        parameters = operation.get("parameters", [])
        query = {p["name"] for p in parameters if p["in"] == "query"}
        found = set()
        if view.authentication_classes and view.permission_classes:
            found.add(401)
        if view.throttle_classes:
            found.add(429)
        if self.method in WRITES and any(type(p) is HasApiKeyScope for p in view.get_permissions()):
            found.add(403)
        if "{" in self.path or "cursor" in query:
            found.add(404)
        if "requestBody" in operation:
            found |= {400, 413, 415}
        elif query:
            found.add(400)
        if any(p["in"] == "header" and p["name"].lower() == "idempotency-key" for p in parameters):
            found.add(422)
        return found


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "crm.api.auth.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A Keepers API key: `Authorization: Bearer kp_…`. Create one in "
            "the admin or with `manage.py create_api_key NAME --scope write`.",
        }


class TimeOfDay(OpenApiSerializerFieldExtension):
    """A time of day as DRF writes it ("09:00:00"): JSON Schema's `time` format is
    RFC 3339's, which needs a UTC offset a local time of day does not have."""

    target_class = "rest_framework.fields.TimeField"

    def map_serializer_field(self, auto_schema, direction):
        return {
            "type": "string",
            "pattern": r"^\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?$",
            "example": "09:00:00",
        }
