"""JSON with a size limit and a clear message when it is malformed."""

from __future__ import annotations

import json

from django.conf import settings
from rest_framework import exceptions, parsers

from crm.api.errors import PayloadTooLarge


def read_limited(stream, limit: int) -> bytes:
    data = stream.read(limit + 1) if stream is not None else b""
    if len(data) > limit:
        raise PayloadTooLarge(f"The request body is larger than {limit} bytes.")
    return data


def loads(data: bytes):
    try:
        return json.loads(data)
    except UnicodeDecodeError:
        raise exceptions.ParseError("The body is not UTF-8.", code="malformed_json") from None
    except json.JSONDecodeError as error:
        raise exceptions.ParseError(
            f"Malformed JSON: {error.msg} at line {error.lineno} column {error.colno}.",
            code="malformed_json",
        ) from None


class LimitedJSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        return loads(read_limited(stream, settings.KEEPERS_MAX_BODY_BYTES))
