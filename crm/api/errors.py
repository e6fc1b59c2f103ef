"""One error format for every 4xx: {"code", "message", "details"}."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from crm.errors import KeepersError
from crm.limits import RateLimited


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "payload_too_large"
    default_detail = "The request body is too large."


def error_body(code: str, message: str, details: object = None) -> dict:
    return {"code": code, "message": message, "details": details or {}}


def _first_message(detail) -> tuple[str | None, str]:
    """The first (field, message) of a DRF validation error tree."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            field, message = _first_message(value)
            name = key if field is None else f"{key}.{field}"
            return (None if key == "non_field_errors" else name), message
    if isinstance(detail, list) and detail:
        return _first_message(detail[0])
    return None, str(detail)


def exception_handler(exc, context):
    if isinstance(exc, KeepersError):
        response = Response(error_body(exc.code, exc.message, exc.details), status=exc.status_code)
        if isinstance(exc, RateLimited):
            response.headers["Retry-After"] = str(exc.retry_after)
        return response
    if isinstance(exc, Http404):
        exc = exceptions.NotFound("Not found.")
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        field, message = _first_message(exc.detail)
        text = f"{field}: {message}" if field else message
        response.data = error_body("invalid", text, {"field": field, "errors": exc.detail})
    else:
        codes = exc.get_codes() if hasattr(exc, "get_codes") else "error"
        code = codes if isinstance(codes, str) else "error"
        response.data = error_body(code, str(exc.detail))
    return response
