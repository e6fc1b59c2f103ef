"""Reads shared by the campaign admin and API: stats per campaign and per step."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncDate

from campaigns.models import Campaign, Conversion, Enrollment, Message, StepRun
from crm import clock


def _group(enrolled: int, conversions: int, revenue: Decimal) -> dict:
    return {
        "enrolled": enrolled,
        "conversions": conversions,
        "conversion_rate": round(100 * conversions / enrolled, 2) if enrolled else 0.0,
        "revenue": str(revenue),
        "revenue_per_contact": str(round(revenue / enrolled, 2)) if enrolled else "0",
    }


def campaign_stats(*, campaign: Campaign) -> dict:
    """Enrolments, messages, conversions and revenue, treatment vs holdout, and the lift."""
    enrolled = dict(
        Enrollment.objects.filter(campaign=campaign).values_list("holdout").annotate(n=Count("pk"))
    )
    conv = {
        holdout: (n, revenue or Decimal(0))
        for holdout, n, revenue in Conversion.objects.filter(campaign=campaign)
        .values_list("holdout")
        .annotate(n=Count("enrollment", distinct=True), revenue=Sum("revenue"))
    }
    treatment = _group(enrolled.get(False, 0), *conv.get(False, (0, Decimal(0))))
    holdout = _group(enrolled.get(True, 0), *conv.get(True, (0, Decimal(0))))
    messages = Message.objects.filter(campaign=campaign).aggregate(
        delivered=Count("pk", filter=Q(delivered_at__isnull=False)),
        bounced=Count("pk", filter=Q(bounced_at__isnull=False)),
        complained=Count("pk", filter=Q(complained_at__isnull=False)),
        unsubscribed=Count("pk", filter=Q(unsubscribed_at__isnull=False)),
        sent=Count("pk", filter=Q(status=Message.Status.SENT)),
        skipped=Count("pk", filter=Q(status=Message.Status.SKIPPED)),
        failed=Count("pk", filter=Q(status=Message.Status.FAILED)),
        opened=Count("pk", filter=Q(opened_at__isnull=False)),
        clicked=Count("pk", filter=Q(clicked_at__isnull=False)),
    )
    sent = messages["sent"] or 0
    messages["rates"] = {
        k: round(100 * messages[k] / sent, 2) if sent else 0.0
        for k in ("delivered", "opened", "clicked", "bounced", "complained", "unsubscribed")
    }
    lift = None
    if holdout["enrolled"] and treatment["enrolled"]:
        lift = round(treatment["conversion_rate"] - holdout["conversion_rate"], 2)
    by_status = dict(
        Enrollment.objects.filter(campaign=campaign).values_list("status").annotate(n=Count("pk"))
    )
    return {
        "treatment": treatment,
        "holdout": holdout,
        "lift": lift,
        "messages": messages,
        "enrollments_by_status": by_status,
    }


def step_stats(*, campaign: Campaign, version_number: int | None = None) -> dict[str, dict]:
    """Per step of a version: waiting there now, passed (runs), sent, opened, clicked."""
    enrollments = Enrollment.objects.filter(campaign=campaign)
    runs = StepRun.objects.filter(enrollment__campaign=campaign)
    messages = Message.objects.filter(campaign=campaign)
    if version_number is not None:
        enrollments = enrollments.filter(version__number=version_number)
        runs = runs.filter(enrollment__version__number=version_number)
        messages = messages.filter(enrollment__version__number=version_number)
    stats: dict[str, dict] = {}
    for step_id, n in (
        enrollments.filter(status=Enrollment.Status.ACTIVE)
        .values_list("current_step")
        .annotate(n=Count("pk"))
    ):
        stats.setdefault(step_id, {})["waiting"] = n
    for step_id, n in runs.values_list("step_id").annotate(n=Count("pk")):
        stats.setdefault(step_id, {})["passed"] = n
    measures = ("sent", "delivered", "opened", "clicked", "bounced", "complained", "unsubscribed")
    for row in messages.values("step_id").annotate(
        sent=Count("pk", filter=Q(status=Message.Status.SENT)),
        delivered=Count("pk", filter=Q(delivered_at__isnull=False)),
        opened=Count("pk", filter=Q(opened_at__isnull=False)),
        clicked=Count("pk", filter=Q(clicked_at__isnull=False)),
        bounced=Count("pk", filter=Q(bounced_at__isnull=False)),
        complained=Count("pk", filter=Q(complained_at__isnull=False)),
        unsubscribed=Count("pk", filter=Q(unsubscribed_at__isnull=False)),
    ):
        entry = stats.setdefault(row["step_id"], {})
        entry.update({k: row[k] for k in measures})
        entry["rates"] = {
            k: round(100 * row[k] / row["sent"], 2) if row["sent"] else 0.0 for k in measures[1:]
        }
    converted = Conversion.objects.filter(campaign=campaign, message__isnull=False)
    for step_id, n in converted.values_list("message__step_id").annotate(n=Count("pk")):
        stats.setdefault(step_id, {})["converted"] = n
    return stats


def deliverability_by_day(*, days: int = 30, now=None) -> list[dict]:
    """Per day: sent, delivered, bounced, complained, unsubscribed, with rates (% of sent);
    complaint rates above 0.1% are the ones inbox providers punish."""

    now = now or clock.now()
    rows = (
        Message.objects.filter(status=Message.Status.SENT, sent_at__gte=now - timedelta(days=days))
        .annotate(day=TruncDate("sent_at"))
        .values("day")
        .annotate(
            sent=Count("pk"),
            delivered=Count("pk", filter=Q(delivered_at__isnull=False)),
            bounced=Count("pk", filter=Q(bounced_at__isnull=False)),
            complained=Count("pk", filter=Q(complained_at__isnull=False)),
            unsubscribed=Count("pk", filter=Q(unsubscribed_at__isnull=False)),
        )
        .order_by("-day")
    )
    result = []
    for row in rows:
        sent = row["sent"] or 1
        rates = {
            f"{k}_rate": round(100 * row[k] / sent, 2)
            for k in ("delivered", "bounced", "complained", "unsubscribed")
        }
        result.append({**row, **rates, "complaint_alarm": rates["complained_rate"] > 0.1})
    return result
