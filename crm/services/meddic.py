"""MEDDIC lead qualification: a scorecard per contact, each of the six criteria (metrics,
economic buyer, decision criteria, decision process, identified pain, champion) confirmed,
partly known or unknown, with a note; the 0–100 score and the number confirmed are derived
from them. Every change is recorded with who made it and how.

A status is given as 0 / 1 / 2 or a word: "unknown", "partly" (or "partial", "partly
known"), "confirmed" (the API's older names UNKNOWN / PARTIAL / CONFIRMED still work)."""

from __future__ import annotations

from django.db import transaction

from crm import clock
from crm.errors import KeepersError
from crm.models import MEDDIC_CRITERIA, Contact, LeadScorecard, LeadScoreChange, MeddicStatus
from crm.services.changes import changes_mark_contacts

CRITERIA = [name for name, _label in MEDDIC_CRITERIA]
EDITABLE = {f"{c}_status" for c in CRITERIA} | {f"{c}_note" for c in CRITERIA}
MAX_POINTS = len(CRITERIA) * max(MeddicStatus.values)


# The words a status may be given as, in the API and imports (lower case).
STATUS_WORDS = {
    "unknown": MeddicStatus.UNKNOWN,
    "partly": MeddicStatus.PARTIAL,
    "partial": MeddicStatus.PARTIAL,
    "partly known": MeddicStatus.PARTIAL,
    "confirmed": MeddicStatus.CONFIRMED,
}
STATUS_NAMES = {
    MeddicStatus.UNKNOWN: "unknown",
    MeddicStatus.PARTIAL: "partly",
    MeddicStatus.CONFIRMED: "confirmed",
}


def scorecard_confirmed(card: LeadScorecard) -> int:
    """How many of the six criteria are confirmed (segments: "at least 4 of 6 confirmed")."""
    return sum(getattr(card, f"{c}_status") == MeddicStatus.CONFIRMED for c in CRITERIA)


def scorecard_criteria(card: LeadScorecard) -> dict[str, str]:
    """Each criterion's status as a word: {"metrics": "confirmed", "champion": "partly", …}."""
    return {c: STATUS_NAMES[MeddicStatus(getattr(card, f"{c}_status"))] for c in CRITERIA}


def scorecard_score(card: LeadScorecard) -> int:
    """0–100: each criterion counts 0 (unknown), 1 (partly known) or 2 (confirmed)."""
    points = sum(getattr(card, f"{c}_status") for c in CRITERIA)
    return round(100 * points / MAX_POINTS)


def scorecard_changes_clean(data: dict) -> dict:
    """Field → value changes from the API or a form: `<criterion>_status` (0–2 or a word),
    `<criterion>_note`, or `criteria`: {criterion: status} for several at once."""
    cleaned = {}
    for key, value in data.items():
        if key == "criteria":
            if not isinstance(value, dict):
                raise KeepersError(
                    'criteria is an object: {"champion": "confirmed", …}.', field=key
                )
            for criterion, status in value.items():
                if criterion not in CRITERIA:
                    raise KeepersError(
                        f"Unknown criterion '{criterion}'. The criteria: {', '.join(CRITERIA)}.",
                        field=f"criteria.{criterion}",
                        code="unknown_field",
                    )
                cleaned[f"{criterion}_status"] = _status(status, f"criteria.{criterion}")
            continue
        if key not in EDITABLE:
            raise KeepersError(
                f"Unknown field '{key}'. Allowed: criteria, {', '.join(sorted(EDITABLE))}.",
                field=key,
                code="unknown_field",
            )
        if key.endswith("_status"):
            cleaned[key] = _status(value, key)
        else:
            if not isinstance(value, str):
                raise KeepersError("A note must be a string.", field=key)
            cleaned[key] = value.strip()
    return cleaned


def _status(value: object, field: str) -> int:
    if isinstance(value, str) and value.strip().lower() in STATUS_WORDS:
        return int(STATUS_WORDS[value.strip().lower()])
    if isinstance(value, bool) or value not in MeddicStatus.values:
        raise KeepersError("A status is confirmed, partly or unknown (or 2, 1, 0).", field=field)
    return int(value)


@transaction.atomic
def scorecard_update(
    *, contact: Contact, changes: dict, changed_by=None, via: str
) -> LeadScorecard:
    """Apply cleaned changes, record each changed field, and recompute the score."""
    card, _ = LeadScorecard.objects.select_for_update().get_or_create(contact=contact)
    now = clock.now()
    history = []
    for field, value in changes.items():
        old = getattr(card, field)
        if old == value:
            continue
        setattr(card, field, value)
        history.append(
            LeadScoreChange(
                scorecard=card,
                field=field,
                old_value=str(old),
                new_value=str(value),
                changed_by=changed_by,
                changed_via=via[:120],
                changed_at=now,
            )
        )
    card.score = scorecard_score(card)
    card.save()
    LeadScoreChange.objects.bulk_create(history)
    if history:
        changes_mark_contacts([contact.pk], "meddic")
    return card
