"""One error format for every 4xx: {"code", "message", "details"}."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.http import Http404, JsonResponse
from django.views import defaults
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from crm.errors import KeepersError
from crm.limits import RateLimited


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "payload_too_large"
    default_detail = "The request body is too large."


def _printable(value: object) -> object:
    """Messages may quote the input; a lone surrogate in it is written as its escape, so
    the error itself can be encoded as UTF-8."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {_printable(k): _printable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_printable(v) for v in value]
    return value


def error_body(code: str, message: str, details: object = None) -> dict:
    return {
        "code": code,
        "message": _printable(str(message)),
        "details": _printable(details or {}),
    }


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


API_PATHS = ("/api/", "/v1/")


def bad_request(request, exception=None):
    """Django's own 400s (a body over DATA_UPLOAD_MAX_MEMORY_SIZE, a bad Host header…) on
    the API's paths in the API's error shape; the HTML page everywhere else."""
    if not request.path.startswith(API_PATHS):
        return defaults.bad_request(request, exception)
    if isinstance(exception, RequestDataTooBig):
        return JsonResponse(
            error_body("payload_too_large", "The request body is too large."), status=413
        )
    return JsonResponse(error_body("bad_request", "Bad request."), status=400)


def not_found(request, exception=None):
    """A path no API route matches (/api/v1/contacts/0.5/export/) answers the API's 404 in
    its error shape; the HTML page everywhere else."""
    if not request.path.startswith(API_PATHS):
        return defaults.page_not_found(request, exception)
    return JsonResponse(error_body("not_found", "No such API path."), status=404)
