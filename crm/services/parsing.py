"""Parsing integrator input into Python values, with errors that name the field. Shared by
the REST API, the Segment-compatible endpoints and the CSV importers."""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal, InvalidOperation

from crm.currencies import is_currency
from crm.errors import KeepersError


def parse_datetime(value: object, field: str, *, default: dt.datetime | None = None) -> dt.datetime:
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
        parsed = parsed.replace(tzinfo=dt.UTC)
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
    if amount >= Decimal("1e10"):
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
    text = str(value).strip()
    if len(text) > max_length:
        raise KeepersError(f"Longer than {max_length} characters.", field=field)
    return text


def parse_object(value: object, field: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise KeepersError("Expected a JSON object.", field=field)
    return value


def parse_bool(value: object, field: str) -> bool:
    """true or false, as JSON says them (no strings or numbers standing in)."""
    if not isinstance(value, bool):
        raise KeepersError("Expected true or false.", field=field)
    return value


def parse_int(value: object, field: str, *, minimum: int = 0) -> int:
    if isinstance(value, bool):
        raise KeepersError("Expected a whole number.", field=field)
    try:
        number = int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise KeepersError(f"'{value}' is not a whole number.", field=field) from None
    if isinstance(value, float) and value != number:
        raise KeepersError(f"'{value}' is not a whole number.", field=field)
    if number < minimum:
        raise KeepersError(f"Must be at least {minimum}.", field=field)
    return number


def reject_unknown(data: dict, allowed: set[str], prefix: str = "") -> None:
    for key in data:
        if key not in allowed:
            raise KeepersError(
                f"Unknown field '{key}'. Allowed: {', '.join(sorted(allowed))}.",
                field=f"{prefix}{key}",
                code="unknown_field",
            )
