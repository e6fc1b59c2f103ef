"""Campaign triggers for loyalty: store credit or points expiring in N days (hourly, once
per grant), and tier changed (from/to, read from the TierChange log with a cursor, within
seconds). Registered into campaigns from the app's ready(); the engine does the rest."""

from __future__ import annotations

import datetime as dt

from django.db import transaction
from django.utils.translation import gettext_lazy as _

from campaigns.extend import (
    DefinitionError,
    campaigns_live,
    cursor_window,
    enrollments_from_rows,
    scan_register,
    trigger_type,
)
from crm.extend import Field, Kind, kind_describe
from loyalty.models import POINTS, LedgerEntry, Tier, TierChange


def _clean_expiring(trigger: dict, path: str) -> None:
    days = trigger.get("days")
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 365:
        raise DefinitionError("days is a whole number from 1 to 365.", f"{path}.days")


def _clean_tier_changed(trigger: dict, path: str) -> None:
    for key in ("from", "to"):
        name = trigger.get(key)
        if name is not None and not Tier.objects.filter(name=name).exists():
            raise DefinitionError(f"No tier named {name!r}.", f"{path}.{key}")
    direction = trigger.get("direction", "any")
    if direction not in ("any", "up", "down"):
        raise DefinitionError("direction is any, up or down.", f"{path}.direction")


def _expiring_days(label) -> Field:
    return Field("days", "integer", label, required=True, minimum=1, maximum=365, default=7)


EXPIRING_CREDIT = Kind(
    "credit_expiring",
    _("Store credit about to expire"),
    help=_(
        "Once for each grant of store credit with value left, the given days before it expires."
    ),
    fields=(_expiring_days(_("Days before it expires")),),
)
EXPIRING_POINTS = Kind(
    "points_expiring",
    _("Points about to expire"),
    help=_("Once for each grant of points with points left, the given days before they expire."),
    fields=(_expiring_days(_("Days before they expire")),),
)
TIER_CHANGED = Kind(
    "tier_changed",
    _("Loyalty tier changes"),
    help=_("When a contact moves to another tier. Empty fields: any."),
    fields=(
        Field("from", "ref", _("From tier"), source="tiers"),
        Field("to", "ref", _("To tier"), source="tiers"),
        Field(
            "direction",
            "choice",
            _("Direction"),
            choices=(("any", _("up or down")), ("up", _("up")), ("down", _("down"))),
            default="any",
        ),
    ),
)


def scan_expiring(now: dt.datetime) -> list[int]:
    """Grants with value left that expire within the campaign's `days` (and have not yet):
    each grant enrolls its contact once (key x<grant id>), under the campaign's re-entry
    policy (one reminder per contact per week, say)."""
    new: list[int] = []
    for trigger, points in (("credit_expiring", False), ("points_expiring", True)):
        for campaign in campaigns_live(trigger, now):
            grants = LedgerEntry.objects.expiring(now, dt.timedelta(days=campaign.trigger["days"]))
            grants = grants.filter(unit=POINTS) if points else grants.exclude(unit=POINTS)
            with transaction.atomic():
                new += enrollments_from_rows(campaign, grants, key_prefix="x", now=now)
    return new


@transaction.atomic
def scan_tier_changes(now: dt.datetime) -> list[int]:
    window = cursor_window("tier_changes", TierChange, "at", now)
    if window is None:
        return []
    new: list[int] = []
    ranks = dict(Tier.objects.values_list("pk", "rank"))
    for campaign in campaigns_live("tier_changed", now):
        rows = TierChange.objects.filter(pk__gt=window.lo, pk__lte=window.hi)
        if campaign.trigger.get("from"):
            rows = rows.filter(from_tier__name=campaign.trigger["from"])
        if campaign.trigger.get("to"):
            rows = rows.filter(to_tier__name=campaign.trigger["to"])
        direction = campaign.trigger.get("direction", "any")
        if direction != "any":
            wanted = [
                c.pk
                for c in rows.only("pk", "from_tier_id", "to_tier_id")
                if (ranks.get(c.to_tier_id, -1) > ranks.get(c.from_tier_id, -1))
                == (direction == "up")
            ]
            rows = TierChange.objects.filter(pk__in=wanted)
        new += enrollments_from_rows(campaign, rows, key_prefix="t", now=now)
    window.advance()
    return new


def register() -> None:
    trigger_type("credit_expiring", keys=("days",))(_clean_expiring)
    trigger_type("points_expiring", keys=("days",))(_clean_expiring)
    trigger_type("tier_changed", keys=("from", "to", "direction"))(_clean_tier_changed)
    for kind in (EXPIRING_CREDIT, EXPIRING_POINTS, TIER_CHANGED):
        kind_describe("trigger", kind)
    scan_register(scan_tier_changes, every="pass")
    scan_register(scan_expiring, every="hour")
