"""JSON with a size limit and a clear message when it is malformed."""

from __future__ import annotations

import json

from django.conf import settings
from rest_framework import exceptions, parsers

from crm.api.errors import PayloadTooLarge
from crm.services.parsing import check_json


def read_limited(stream, limit: int) -> bytes:
    data = stream.read(limit + 1) if stream is not None else b""
    if len(data) > limit:
        raise PayloadTooLarge(f"The request body is larger than {limit} bytes.")
    return data


def _no_constants(name: str):
    raise exceptions.ParseError(
        f"Malformed JSON: {name} is not a JSON number.", code="malformed_json"
    )


def loads(data: bytes, *, strict: bool = True):
    """Parse JSON. `strict` refuses, for the whole body, what PostgreSQL cannot store (NaN,
    Infinity, NUL characters); the tracking endpoints parse leniently and report such values
    per item instead, keeping the rest of the batch."""
    if strict and (b"\\u0000" in data or b"\x00" in data):
        raise exceptions.ParseError(
            "The body contains a NUL character (\\u0000), which cannot be stored.",
            code="malformed_json",
        )
    try:
        return json.loads(data, parse_constant=_no_constants) if strict else json.loads(data)
    except RecursionError:
        raise exceptions.ParseError(
            "Malformed JSON: nested too deep.", code="malformed_json"
        ) from None
    except UnicodeDecodeError:
        raise exceptions.ParseError("The body is not UTF-8.", code="malformed_json") from None
    except json.JSONDecodeError as error:
        raise exceptions.ParseError(
            f"Malformed JSON: {error.msg} at line {error.lineno} column {error.colno}.",
            code="malformed_json",
        ) from None


class LimitedJSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        data = loads(read_limited(stream, settings.KEEPERS_MAX_BODY_BYTES))
        # One object: refuse it whole, naming the path, if any text or nesting cannot be
        # stored. A list (a batch) is checked item by item (batch_response), so the good
        # items are kept.
        if not isinstance(data, list):
            check_json(data)
        return data
