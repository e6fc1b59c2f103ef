"""Parsing integrator input into Python values, with errors that name the field. Shared by
the REST API, the Segment-compatible endpoints and the CSV importers."""

from __future__ import annotations

import datetime as dt
import json
import math
from decimal import Decimal, InvalidOperation

from django.conf import settings

from crm.currencies import is_currency
from crm.errors import KeepersError

# The columns' ranges: PositiveIntegerField / IntegerField hold 32-bit integers.
INT_MAX = 2_147_483_647
# PostgreSQL accepts UTC offsets up to ±15:59; the world's clocks stay within ±14:00.
MAX_UTC_OFFSET = dt.timedelta(hours=14)
# Money columns are DecimalField(max_digits=14, decimal_places=4).
MAX_MONEY = Decimal("1e10")


def _year_window() -> tuple[int, int]:
    return settings.KEEPERS_DATE_MIN_YEAR, settings.KEEPERS_DATE_MAX_YEAR


def check_text(text: str, field: str) -> str:
    """Text PostgreSQL can store: UTF-8 encodable (no lone surrogate such as \\ud800)
    and without the NUL character."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise KeepersError(
            "The text holds a lone surrogate (an invalid \\uD800-\\uDFFF escape); send valid "
            "UTF-8.",
            field=field,
        ) from None
    if "\x00" in text:
        raise KeepersError("Text may not contain the NUL character (\\u0000).", field=field)
    return text


def check_json(value: object, field: str = "", *, max_depth: int | None = None) -> object:
    """Walk a parsed JSON value (iteratively: no recursion limit to hit): every string and
    key storable (check_text), containers nested at most KEEPERS_MAX_JSON_DEPTH deep.
    Raises KeepersError naming the dotted path of the first bad value."""
    limit = settings.KEEPERS_MAX_JSON_DEPTH if max_depth is None else max_depth
    stack: list[tuple[object, str, int]] = [(value, field, 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, str):
            check_text(item, path or "body")
        elif isinstance(item, dict | list):
            if depth >= limit:
                raise KeepersError(
                    f"JSON nested more than {limit} levels deep.",
                    field=path or "body",
                    code="nested_too_deep",
                )
            if isinstance(item, dict):
                for key, child in reversed(list(item.items())):
                    here = f"{path}.{key}" if path else str(key)
                    check_text(str(key), here)
                    stack.append((child, here, depth + 1))
            else:
                for n in range(len(item) - 1, -1, -1):
                    stack.append((item[n], f"{path}[{n}]", depth + 1))
    return value


def check_year(value: dt.date, field: str) -> None:
    low, high = _year_window()
    if not low <= value.year <= high:
        raise KeepersError(
            f"{value.isoformat()[:10]} is outside the years {low}–{high} Keepers accepts.",
            field=field,
        )


def parse_datetime(
    value: object,
    field: str,
    *,
    default: dt.datetime | None = None,
    zone: dt.tzinfo = dt.UTC,
) -> dt.datetime:
    """An ISO 8601 date-time as UTC; one without an offset is read in `zone` (UTC unless
    the caller knows better: a date staff typed in the admin is the shop's)."""
    if value in (None, ""):
        if default is not None:
            return default
        raise KeepersError("This field is required.", field=field, code="required")
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            raise KeepersError(
                f"'{value}' is not an ISO 8601 date-time (for example 2026-01-31T09:30:00Z).",
                field=field,
            ) from None
    else:
        raise KeepersError("Expected an ISO 8601 date-time string.", field=field)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    offset = parsed.utcoffset()
    if offset is not None and abs(offset) > MAX_UTC_OFFSET:
        raise KeepersError("The UTC offset is beyond ±14:00.", field=field)
    check_year(parsed, field)
    return parsed.astimezone(dt.UTC)


def parse_date(value: object, field: str) -> dt.date | None:
    """A date (YYYY-MM-DD; a date-time's date part), within the accepted years."""
    if value in (None, ""):
        return None
    if isinstance(value, dt.datetime):
        parsed = value.date()
    elif isinstance(value, dt.date):
        parsed = value
    else:
        try:
            parsed = dt.date.fromisoformat(str(value)[:10])
        except ValueError:
            raise KeepersError(f"'{value}' is not a date (YYYY-MM-DD).", field=field) from None
    check_year(parsed, field)
    return parsed


def parse_money(value: object, field: str, *, allow_zero: bool = True) -> Decimal:
    if isinstance(value, bool) or value in (None, ""):
        raise KeepersError("Expected an amount (a number or a decimal string).", field=field)
    try:
        amount = Decimal(str(value)) if isinstance(value, float) else Decimal(value)  # type: ignore[arg-type]
    except (InvalidOperation, TypeError, ValueError):
        raise KeepersError(f"'{value}' is not an amount.", field=field) from None
    if (isinstance(value, float) and not math.isfinite(value)) or not amount.is_finite():
        raise KeepersError("The amount must be a finite number.", field=field)
    if amount < 0 or (amount == 0 and not allow_zero):
        raise KeepersError("The amount must be positive.", field=field)
    if amount.as_tuple().exponent < -4:  # type: ignore[operator]
        raise KeepersError("Amounts take at most 4 decimal places.", field=field)
    if amount >= MAX_MONEY:
        raise KeepersError("The amount is too large.", field=field)
    return amount


def parse_currency(value: object, field: str) -> str:
    if not isinstance(value, str) or not is_currency(value.strip().upper()):
        raise KeepersError(
            f"'{value}' is not an ISO 4217 currency code (for example USD, EUR, JPY).", field=field
        )
    return value.strip().upper()


def parse_str(value: object, field: str, *, max_length: int = 255, required: bool = False) -> str:
    if value is None or value == "":
        if required:
            raise KeepersError("This field is required.", field=field, code="required")
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise KeepersError("Expected a string.", field=field)
    text = check_text(str(value).strip(), field)
    if len(text) > max_length:
        raise KeepersError(f"Longer than {max_length} characters.", field=field)
    return text


def parse_object(value: object, field: str, *, max_bytes: int | None = None) -> dict:
    """A JSON object (attributes, properties, context): storable text, bounded depth, and at
    most KEEPERS_MAX_ATTRIBUTES_BYTES as JSON."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise KeepersError("Expected a JSON object.", field=field)
    check_json(value, field)
    limit = settings.KEEPERS_MAX_ATTRIBUTES_BYTES if max_bytes is None else max_bytes
    size = len(json.dumps(value, separators=(",", ":"), default=str).encode())
    if size > limit:
        raise KeepersError(
            f"This object is {size} bytes as JSON; the limit is {limit}.",
            field=field,
            code="too_large",
        )
    return value


def parse_bool(value: object, field: str) -> bool:
    """true or false, as JSON says them (no strings or numbers standing in)."""
    if not isinstance(value, bool):
        raise KeepersError("Expected true or false.", field=field)
    return value


def parse_int(value: object, field: str, *, minimum: int = 0, maximum: int = INT_MAX) -> int:
    if isinstance(value, bool):
        raise KeepersError("Expected a whole number.", field=field)
    try:
        number = int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        raise KeepersError(f"'{value}' is not a whole number.", field=field) from None
    if isinstance(value, float) and value != number:
        raise KeepersError(f"'{value}' is not a whole number.", field=field)
    if number < minimum:
        raise KeepersError(f"Must be at least {minimum}.", field=field)
    if number > maximum:
        raise KeepersError(f"Must be at most {maximum}.", field=field)
    return number


def reject_unknown(data: dict, allowed: set[str], prefix: str = "") -> None:
    for key in data:
        if key not in allowed:
            raise KeepersError(
                f"Unknown field '{key}'. Allowed: {', '.join(sorted(allowed))}.",
                field=f"{prefix}{key}",
                code="unknown_field",
            )
