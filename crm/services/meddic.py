"""MEDDIC lead qualification: a scorecard per contact, every change recorded with who made
it and how."""

from __future__ import annotations

from django.db import transaction

from crm import clock
from crm.errors import KeepersError
from crm.models import MEDDIC_CRITERIA, Contact, LeadScorecard, LeadScoreChange, MeddicStatus
from crm.services.changes import changes_mark_contacts

CRITERIA = [name for name, _label in MEDDIC_CRITERIA]
EDITABLE = {f"{c}_status" for c in CRITERIA} | {f"{c}_note" for c in CRITERIA}
MAX_POINTS = len(CRITERIA) * max(MeddicStatus.values)


def scorecard_score(card: LeadScorecard) -> int:
    """0–100: each criterion counts 0 (unknown), 1 (partly known) or 2 (confirmed)."""
    points = sum(getattr(card, f"{c}_status") for c in CRITERIA)
    return round(100 * points / MAX_POINTS)


def scorecard_changes_clean(data: dict) -> dict:
    cleaned = {}
    for key, value in data.items():
        if key not in EDITABLE:
            raise KeepersError(
                f"Unknown field '{key}'. Allowed: {', '.join(sorted(EDITABLE))}.",
                field=key,
                code="unknown_field",
            )
        if key.endswith("_status"):
            if isinstance(value, str) and value in MeddicStatus.names:
                value = MeddicStatus[value]
            elif isinstance(value, str) and value.lower() in {
                n.lower() for n in MeddicStatus.names
            }:
                value = MeddicStatus[value.upper()]
            if isinstance(value, bool) or value not in MeddicStatus.values:
                raise KeepersError(
                    "Status must be 0 (unknown), 1 (partly known) or 2 (confirmed).", field=key
                )
            cleaned[key] = int(value)
        else:
            if not isinstance(value, str):
                raise KeepersError("A note must be a string.", field=key)
            cleaned[key] = value.strip()
    return cleaned


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
