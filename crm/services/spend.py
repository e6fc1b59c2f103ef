"""Marketing and sales spend per acquisition channel and month: the numerator of CAC.
Entered in the admin, by API or by CSV; one row per (channel, month, currency), a later
entry for the same month replacing the earlier amount."""

from __future__ import annotations

import csv
import io
import re
from datetime import date

from django.db import transaction

from crm.errors import KeepersError
from crm.models import MarketingSpend
from crm.services.metrics import metrics_cache_invalidate
from crm.services.parsing import parse_currency, parse_money, parse_str, reject_unknown

SPEND_FIELDS = {"channel", "month", "amount", "currency", "note"}
_MONTH = re.compile(r"^(\d{4})-(\d{2})(?:-01)?$")


def spend_item_parse(raw: object, prefix: str = "") -> dict:
    """{"channel", "month": "2026-03", "amount", "currency", "note"?}"""
    if not isinstance(raw, dict):
        raise KeepersError(
            "Each spend entry must be a JSON object.", field=prefix.rstrip(".") or None
        )
    reject_unknown(raw, SPEND_FIELDS, prefix)
    month = str(raw.get("month") or "").strip()
    match = _MONTH.match(month)
    if not match or not 1 <= int(match[2]) <= 12:
        raise KeepersError("month is YYYY-MM, for example 2026-03.", field=f"{prefix}month")
    return {
        "channel": parse_str(raw.get("channel"), f"{prefix}channel", max_length=100, required=True),
        "month": date(int(match[1]), int(match[2]), 1),
        "amount": parse_money(raw.get("amount"), f"{prefix}amount"),
        "currency": parse_currency(raw.get("currency"), f"{prefix}currency"),
        "note": parse_str(raw.get("note"), f"{prefix}note", max_length=300),
    }


@transaction.atomic
def spend_upsert(items: list[dict]) -> list[tuple[str, int]]:
    """Create or replace each (channel, month, currency) entry; returns ("created" |
    "updated", id) per item. Cached metrics are dropped."""

    results = []
    for item in items:
        entry, created = MarketingSpend.objects.update_or_create(
            channel=item["channel"],
            month=item["month"],
            currency=item["currency"],
            defaults={"amount": item["amount"], "note": item["note"]},
        )
        results.append(("created" if created else "updated", entry.pk))
    transaction.on_commit(metrics_cache_invalidate)
    return results


def spend_import_csv(text: str) -> tuple[int, list[str]]:
    """A CSV with the header channel,month,amount,currency[,note]: the good rows stored,
    each bad one reported as "line N: message"."""
    good, errors = [], []
    for line, row in enumerate(csv.DictReader(io.StringIO(text)), start=2):
        try:
            good.append(
                spend_item_parse({k: v for k, v in row.items() if k and v not in (None, "")})
            )
        except KeepersError as error:
            errors.append(f"line {line}: {error.message}")
    if good:
        spend_upsert(good)
    return len(good), errors
