"""Campaign triggers for loyalty: store credit or points expiring in N days (hourly, once
per grant), and tier changed (from/to, read from the TierChange log with a cursor, within
seconds). Registered into campaigns from the app's ready(); the engine does the rest.

A reminder's email knows the grant that enrolled the contact, as `expiring`:
`{{ expiring.amount }}` (what is left of it: "12.50", or "300" points),
`{{ expiring.unit }}` ("points" or the currency code), `{{ expiring.is_points }}`,
`{{ expiring.expires_at }}` (a date-time: `{{ expiring.expires_at|date:"j F Y" }}`) and
`{{ expiring.balance }}` (everything of that unit the contact can spend now)."""

from __future__ import annotations

import datetime as dt

from django.db import transaction
from django.db.models import Sum
from django.utils.translation import gettext_lazy as _

from campaigns.extend import (
    DefinitionError,
    campaigns_live,
    cursor_window,
    email_context_register,
    enrollments_from_rows,
    scan_register,
    trigger_type,
)
from crm.extend import Field, Kind, kind_describe
from loyalty.models import POINTS, LedgerEntry, Tier, TierChange

EXPIRING_TRIGGERS = ("credit_expiring", "points_expiring")


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
    for trigger, points in zip(EXPIRING_TRIGGERS, (False, True), strict=True):
        for campaign in campaigns_live(trigger, now):
            grants = LedgerEntry.objects.expiring(now, dt.timedelta(days=campaign.trigger["days"]))
            grants = grants.filter(unit=POINTS) if points else grants.exclude(unit=POINTS)
            with transaction.atomic():
                new += enrollments_from_rows(campaign, grants, key_prefix="x", now=now)
    return new


def expiring_context(enrollments, batch) -> dict[int, dict]:
    """`expiring` for the enrolments an expiring trigger made (key x<grant id>): the
    grants in one query, the contacts' spendable balances of those units in one more."""
    wanted: dict[int, int] = {}
    for enrollment in enrollments:
        campaign = batch.campaigns.get(enrollment.campaign_id)
        key = enrollment.trigger_key
        if (
            campaign is not None
            and campaign.trigger.get("type") in EXPIRING_TRIGGERS
            and key.startswith("x")
            and key[1:].isdigit()
        ):
            wanted[enrollment.pk] = int(key[1:])
    if not wanted:
        return {}
    grants = LedgerEntry.objects.in_bulk(set(wanted.values()))
    balances = {
        (row["contact_id"], row["unit"]): row["total"]
        for row in LedgerEntry.objects.spendable(batch.now)
        .filter(
            contact_id__in={g.contact_id for g in grants.values()},
            unit__in={g.unit for g in grants.values()},
        )
        .values("contact_id", "unit")
        .annotate(total=Sum("remaining"))
        .order_by()
    }
    by_enrollment = {e.pk: e for e in enrollments}
    context = {}
    for pk, grant_id in wanted.items():
        grant = grants.get(grant_id)
        if grant is None or grant.contact_id != by_enrollment[pk].contact_id:
            continue
        context[pk] = {
            "expiring": {
                "amount": _amount(grant.remaining, grant.unit),
                "unit": grant.unit,
                "is_points": grant.unit == POINTS,
                "expires_at": grant.expires_at,
                "balance": _amount(balances.get((grant.contact_id, grant.unit), 0), grant.unit),
            }
        }
    return context


def _amount(value, unit: str) -> str:
    return f"{value:.0f}" if unit == POINTS else f"{value:.2f}"


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
    email_context_register(expiring_context)
