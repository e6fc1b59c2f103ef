"""Segment-compatible tracking endpoints: /v1/batch, /v1/identify, /v1/track, /v1/page,
/v1/screen, /v1/alias, /v1/group.

What the SDKs need (Segment's and RudderStack's): the write key as the HTTP Basic username
(or `writeKey` in the body), gzip bodies, 200 with a JSON body on success, and 400 with
{"code", "message"} for input that must not be retried (malformed, oversize)."""

from __future__ import annotations

import zlib

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from crm.api.auth import key_from_header
from crm.api.errors import error_body
from crm.api.parsers import loads
from crm.db import retry_on_conflict
from crm.errors import KeepersError
from crm.models import ApiScope
from crm.services.api_keys import api_key_authenticate
from crm.services.tracking import segment_messages_ingest


class TrackingError(Exception):
    def __init__(self, status: int, code: str, message: str, details: dict | None = None):
        self.status, self.code, self.message, self.details = status, code, message, details


def _body(request: HttpRequest, limit: int) -> bytes:
    """The request body, gunzipped if needed, refused past `limit` bytes (also after
    decompression, so a small gzip bomb cannot get through)."""
    raw = request.read(limit + 1)
    encoding = request.META.get("HTTP_CONTENT_ENCODING", "").lower()
    if encoding == "gzip":
        decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            data = decompressor.decompress(raw, limit + 1)
        except zlib.error:
            raise TrackingError(400, "invalid_gzip", "The body is not valid gzip.") from None
        # zlib returns what it could of a cut-off stream without complaint.
        if len(data) <= limit and not decompressor.eof:
            raise TrackingError(400, "invalid_gzip", "The gzip body is truncated.")
    elif encoding in ("", "identity"):
        data = raw
    else:
        raise TrackingError(
            415,
            "unsupported_encoding",
            f"Content-Encoding '{encoding}' is not supported; use gzip.",
        )
    if len(data) > limit:
        raise TrackingError(
            400,
            "payload_too_large",
            f"The body is larger than {limit // 1024} KB, the limit for this endpoint.",
        )
    return data


def _parse(request: HttpRequest, limit: int) -> dict:
    content_type = request.META.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
    if content_type not in ("application/json", "text/plain", ""):
        raise TrackingError(
            415,
            "unsupported_media_type",
            f"Send JSON (Content-Type: application/json), not '{content_type}'.",
        )
    data = _body(request, limit)
    try:
        payload = loads(data, strict=False)
    except Exception as error:  # DRF's ParseError, with a helpful message
        raise TrackingError(400, "malformed_json", str(getattr(error, "detail", error))) from None
    if not isinstance(payload, dict):
        raise TrackingError(400, "invalid", "The body must be a JSON object.")
    return payload


def _authenticate(request: HttpRequest, payload: dict) -> None:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    raw = None
    if header:
        try:
            raw = key_from_header(header)
        except Exception:
            raw = None
    raw = raw or payload.get("writeKey")
    if not raw or not isinstance(raw, str):
        raise TrackingError(
            401,
            "not_authenticated",
            "Send your Keepers API key as the write key (HTTP Basic username).",
        )
    key = api_key_authenticate(raw)
    if key is None:
        raise TrackingError(
            401, "authentication_failed", "This write key is not valid or was revoked."
        )
    if key.scope != ApiScope.WRITE:
        raise TrackingError(
            403, "permission_denied", "This key is read-only; tracking needs a write key."
        )


def _respond(results) -> JsonResponse:
    errors = [r.as_dict() for r in results if r.status == "error"]
    if errors:
        kept = len(results) - len(errors)
        first = errors[0]
        return JsonResponse(
            error_body(
                "invalid_items",
                f"{len(errors)} of {len(results)} messages were rejected (the other {kept} were "
                f"stored). First: item {first['index']}, {first['field']}: {first['message']}",
                {"errors": errors},
            ),
            status=400,
        )
    return JsonResponse({"success": True})


def _handle(request: HttpRequest, kind: str | None) -> JsonResponse:
    limit = (
        settings.KEEPERS_TRACK_MAX_BATCH_BYTES
        if kind is None
        else settings.KEEPERS_TRACK_MAX_EVENT_BYTES
    )
    try:
        payload = _parse(request, limit)
        _authenticate(request, payload)
        if kind is None:
            batch = payload.get("batch")
            if not isinstance(batch, list):
                raise TrackingError(
                    400, "invalid", "The body needs a 'batch' list of messages.", {"field": "batch"}
                )
            # A context shared by the whole batch is each message's default context (a
            # message whose own context is not an object is left to fail validation).
            context = payload.get("context") if isinstance(payload.get("context"), dict) else None
            messages = [
                {**m, "context": {**context, **(m.get("context") or {})}}
                if context and isinstance(m, dict) and isinstance(m.get("context") or {}, dict)
                else m
                for m in batch
            ]
            results = retry_on_conflict(
                lambda: segment_messages_ingest(messages, sent_at=payload.get("sentAt"))
            )
        else:
            message = {k: v for k, v in payload.items() if k != "writeKey"}
            message.setdefault("type", kind)
            if message["type"] != kind:
                raise TrackingError(
                    400, "invalid", f"This endpoint takes '{kind}' messages.", {"field": "type"}
                )
            results = retry_on_conflict(lambda: segment_messages_ingest([message]))
    except TrackingError as error:
        return JsonResponse(
            error_body(error.code, error.message, error.details), status=error.status
        )
    except KeepersError as error:
        return JsonResponse(
            error_body(error.code, error.message, error.details), status=error.status_code
        )
    return _respond(results)


@csrf_exempt
@require_POST
def batch(request: HttpRequest) -> JsonResponse:
    return _handle(request, None)


def single(kind: str):
    @csrf_exempt
    @require_POST
    def view(request: HttpRequest) -> JsonResponse:
        return _handle(request, kind)

    view.__name__ = f"track_{kind}"
    return view
