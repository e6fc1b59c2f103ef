"""Reads shared by the campaign admin and API: stats per campaign and per step, the
groups of enrolments whose lift campaigns.lift computes, and a survey's answers and its
NPS / CSAT summary."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import (
    BooleanField,
    Case,
    Count,
    DecimalField,
    Exists,
    ExpressionWrapper,
    F,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import TruncDate, TruncMonth, TruncWeek

from campaigns.lift import Outcome, compare
from campaigns.models import (
    Campaign,
    Conversion,
    EmailTemplate,
    Enrollment,
    Message,
    StepRun,
    Survey,
    SurveyAnswer,
)
from crm import clock

CENT = Decimal("0.01")
# Sums of revenue and of its squares: wide enough for any campaign (revenue is 14 digits).
_SUMS = DecimalField(max_digits=40, decimal_places=8)


def enrollment_outcomes(
    *, enrollments: QuerySet[Enrollment], by: Sequence[str]
) -> dict[tuple, Outcome]:
    """Per group of `enrollments` (keyed by the values of the `by` fields or annotations:
    `holdout`, an annotated "was mailed", a split's branch), the lift's sufficient statistics
    (campaigns.lift.Outcome): enrolments, converted enrolments (at least one conversion),
    the revenue of their conversions in KEEPERS_BASE_CURRENCY (a conversion in another
    currency counts as converted and adds no revenue) and the sum over enrolments of the
    square of each one's revenue.

    Two queries whatever the number of enrolments: the group sizes, then the converted
    enrolments only (a semi-join), each with its revenue summed by a correlated subquery.
    An annotation in `by` is computed for every enrolment: prefer `pk__in` (a hashed
    subplan) to a correlated `Exists` there."""
    enrollments = enrollments.order_by()
    sizes = {
        tuple(row[name] for name in by): row["enrolled"]
        for row in enrollments.values(*by).annotate(enrolled=Count("pk"))
    }
    own = (
        Conversion.objects.filter(enrollment=OuterRef("pk"))
        .order_by()
        .values("enrollment")
        .annotate(
            total=Sum(
                Case(
                    When(currency=settings.KEEPERS_BASE_CURRENCY, then="revenue"),
                    default=Value(Decimal(0)),
                ),
                output_field=_SUMS,
            )
        )
        .values("total")
    )
    converted = {
        tuple(row[name] for name in by): row
        for row in enrollments.filter(Exists(Conversion.objects.filter(enrollment=OuterRef("pk"))))
        .annotate(own_revenue=Subquery(own, output_field=_SUMS))
        .values(*by)
        .annotate(
            converted=Count("pk"),
            revenue=Sum("own_revenue", output_field=_SUMS),
            revenue_squares=Sum(F("own_revenue") * F("own_revenue"), output_field=_SUMS),
        )
    }
    outcomes = {}
    for key, enrolled in sizes.items():
        row = converted.get(key, {})
        outcomes[key] = Outcome(
            enrolled=enrolled,
            converted=row.get("converted", 0),
            revenue=row.get("revenue") or Decimal(0),
            revenue_squares=row.get("revenue_squares") or Decimal(0),
        )
    return outcomes


def _money(amount: float | Decimal | None) -> str | None:
    return None if amount is None else str(Decimal(str(amount)).quantize(CENT))


def _points(share: float | None) -> float | None:
    return None if share is None else round(100 * share, 2)


def _p(p_value: float | None) -> float | None:
    return None if p_value is None else float(f"{p_value:.4g}")


def outcome_summary(outcome: Outcome) -> dict:
    """One group as the admin and the API show it: rates in %, money in cents as strings."""
    return {
        "enrolled": outcome.enrolled,
        "conversions": outcome.converted,
        "conversion_rate": _points(outcome.rate) or 0.0,
        "revenue": _money(outcome.revenue),
        "revenue_per_contact": _money(outcome.revenue_mean) or "0.00",
    }


def comparison_summary(
    *,
    treatment: Outcome,
    control: Outcome,
    names: tuple[str, str] = ("treatment", "holdout"),
    labels: tuple[str, str] | None = None,
) -> dict:
    """Two groups and their lift (campaigns.lift.compare), as the admin and the API show it:
    the groups under their `names`, the rate difference in percentage points, revenue per
    contact in KEEPERS_BASE_CURRENCY, each with its 95% interval and p-value, and the note
    (which calls the groups by their `labels`, by default their names)."""
    result = compare(treatment=treatment, control=control, names=labels or names)
    rate, revenue = result.rate, result.revenue
    return {
        names[0]: outcome_summary(treatment),
        names[1]: outcome_summary(control),
        "conversion_rate": {
            "difference": _points(rate.estimate),
            "low": _points(rate.low),
            "high": _points(rate.high),
            "p_value": _p(rate.p_value),
            "test": rate.test,
            "relative_lift": _points(result.relative),
        },
        "revenue_per_contact": {
            "difference": _money(revenue.estimate),
            "low": _money(revenue.low),
            "high": _money(revenue.high),
            "p_value": _p(revenue.p_value),
            "test": revenue.test,
        },
        "confidence": result.confidence,
        "note": result.note,
    }


def campaign_stats(*, campaign: Campaign) -> dict:
    """Enrolments, messages, conversions and revenue, treatment vs holdout, and the lift.

    `treatment` / `holdout` and `itt` count every enrolment (intent-to-treat: mailed or not,
    each group as it was assigned); `sent_only` keeps the treatment enrolments with at least
    one sent message against the whole holdout, which flatters the campaign when those it
    could reach (consent, a valid address) would buy more anyway. `lift` is the ITT rate
    difference in points (`itt.conversion_rate.difference`). Revenue is in
    KEEPERS_BASE_CURRENCY (`currency`). Four queries: the group sizes, the converted
    enrolments, the messages, the statuses."""
    sent_messages = Message.objects.filter(
        campaign=campaign, status=Message.Status.SENT, enrollment__isnull=False
    )
    mailed = ExpressionWrapper(
        Q(pk__in=sent_messages.values("enrollment")), output_field=BooleanField()
    )
    groups = enrollment_outcomes(
        enrollments=Enrollment.objects.filter(campaign=campaign).annotate(mailed=mailed),
        by=("holdout", "mailed"),
    )
    mailed_treatment = groups.get((False, True), Outcome())
    itt_treatment = mailed_treatment + groups.get((False, False), Outcome())
    holdout = groups.get((True, False), Outcome()) + groups.get((True, True), Outcome())
    itt = comparison_summary(treatment=itt_treatment, control=holdout)
    sent_only = comparison_summary(
        treatment=mailed_treatment, control=holdout, labels=("mailed treatment", "holdout")
    )
    messages = Message.objects.filter(campaign=campaign).aggregate(
        delivered=Count("pk", filter=Q(delivered_at__isnull=False)),
        bounced=Count("pk", filter=Q(bounced_at__isnull=False)),
        complained=Count("pk", filter=Q(complained_at__isnull=False)),
        unsubscribed=Count("pk", filter=Q(unsubscribed_at__isnull=False)),
        sent=Count("pk", filter=Q(status=Message.Status.SENT)),
        skipped=Count("pk", filter=Q(status=Message.Status.SKIPPED)),
        failed=Count("pk", filter=Q(status=Message.Status.FAILED)),
        sending=Count("pk", filter=Q(status=Message.Status.SENDING)),
        unconfirmed=Count("pk", filter=Q(status=Message.Status.UNCONFIRMED)),
        opened=Count("pk", filter=Q(opened_at__isnull=False)),
        clicked=Count("pk", filter=Q(clicked_at__isnull=False)),
    )
    sent = messages["sent"] or 0
    messages["rates"] = {
        k: round(100 * messages[k] / sent, 2) if sent else 0.0
        for k in ("delivered", "opened", "clicked", "bounced", "complained", "unsubscribed")
    }
    by_status = dict(
        Enrollment.objects.filter(campaign=campaign).values_list("status").annotate(n=Count("pk"))
    )
    version = campaign.published_version
    splits = [
        split_stats(campaign=campaign, step_id=step["id"])
        for step in (version.steps if version else [])
        if step.get("type") == "random_split"
    ]
    return {
        "treatment": itt["treatment"],
        "holdout": itt["holdout"],
        "lift": itt["conversion_rate"]["difference"],
        "currency": settings.KEEPERS_BASE_CURRENCY,
        "itt": itt,
        "sent_only": sent_only,
        "messages": messages,
        "enrollments_by_status": by_status,
        "splits": splits,
    }


def split_stats(*, campaign: Campaign, step_id: str) -> dict:
    """A random split's paths, each path's enrolments (those the StepRun of `step_id`
    sent that way) with their conversions, and each other path against the first (its
    control) with the same statistics as the holdout lift. Conversions count from
    enrolment, so a conversion before the split counts on the path taken after it: split
    early in a journey for a clean test. Two queries, plus none per path."""
    taken = StepRun.objects.filter(enrollment=OuterRef("pk"), step_id=step_id).values("decision")[
        :1
    ]
    groups = enrollment_outcomes(
        enrollments=Enrollment.objects.filter(campaign=campaign, holdout=False)
        .annotate(path=Subquery(taken))
        .filter(path__isnull=False),
        by=("path",),
    )
    paths = sorted(key[0] for key in groups)
    if not paths:
        return {"step": step_id, "paths": {}, "comparisons": {}, "rows": []}
    control = paths[0]
    summaries = {path: outcome_summary(groups[(path,)]) for path in paths}
    comparisons = {
        path: comparison_summary(
            treatment=groups[(path,)], control=groups[(control,)], names=(path, control)
        )
        for path in paths[1:]
    }
    return {
        "step": step_id,
        "paths": summaries,
        "control": control,
        "comparisons": comparisons,
        # for the admin's table: one row per path, its comparison beside it
        "rows": [(path, summaries[path], comparisons.get(path)) for path in paths],
    }


def campaign_versions(*, campaign: Campaign):
    """The campaign's published versions, newest first, each with `enrolled`."""
    return campaign.versions.annotate(enrolled=Count("enrollments")).order_by("-number")


MESSAGE_MEASURES = (
    "sent",
    "delivered",
    "opened",
    "clicked",
    "bounced",
    "complained",
    "unsubscribed",
)
STEP_FIGURES = ("waiting", "passed", *MESSAGE_MEASURES, "converted")


def step_counts(*, campaign: Campaign, version_number: int | None = None) -> dict[str, dict]:
    """Per step id: each figure (STEP_FIGURES: waiting there now, passed = runs, the
    messages' sent … unsubscribed, converted = conversions credited to its sends) for the
    treatment and for the holdout, `{step: {"treatment": {...}, "holdout": {...}}}`, zeros
    included. Four grouped queries whatever the number of steps: one per source table."""
    enrollments = Enrollment.objects.filter(campaign=campaign)
    runs = StepRun.objects.filter(enrollment__campaign=campaign)
    messages = Message.objects.filter(campaign=campaign)
    converted = Conversion.objects.filter(campaign=campaign, message__isnull=False)
    if version_number is not None:
        enrollments = enrollments.filter(version__number=version_number)
        runs = runs.filter(enrollment__version__number=version_number)
        messages = messages.filter(enrollment__version__number=version_number)
        converted = converted.filter(enrollment__version__number=version_number)
    counts: dict[str, dict] = {}

    def add(step_id: str, holdout: bool, figures: dict) -> None:
        entry = counts.setdefault(
            step_id, {group: dict.fromkeys(STEP_FIGURES, 0) for group in ("treatment", "holdout")}
        )
        entry["holdout" if holdout else "treatment"].update(figures)

    for step_id, holdout, n in (
        enrollments.filter(status=Enrollment.Status.ACTIVE)
        .values_list("current_step", "holdout")
        .annotate(n=Count("pk"))
        .order_by()
    ):
        add(step_id, holdout, {"waiting": n})
    for step_id, holdout, n in (
        runs.values_list("step_id", "enrollment__holdout").annotate(n=Count("pk")).order_by()
    ):
        add(step_id, holdout, {"passed": n})
    for row in (
        messages.values("step_id", "enrollment__holdout")
        .annotate(
            sent=Count("pk", filter=Q(status=Message.Status.SENT)),
            delivered=Count("pk", filter=Q(delivered_at__isnull=False)),
            opened=Count("pk", filter=Q(opened_at__isnull=False)),
            clicked=Count("pk", filter=Q(clicked_at__isnull=False)),
            bounced=Count("pk", filter=Q(bounced_at__isnull=False)),
            complained=Count("pk", filter=Q(complained_at__isnull=False)),
            unsubscribed=Count("pk", filter=Q(unsubscribed_at__isnull=False)),
        )
        .order_by()
    ):
        add(row["step_id"], bool(row["enrollment__holdout"]), {k: row[k] for k in MESSAGE_MEASURES})
    for step_id, holdout, n in (
        converted.values_list("message__step_id", "holdout").annotate(n=Count("pk")).order_by()
    ):
        add(step_id, holdout, {"converted": n})
    return counts


def step_stats(*, campaign: Campaign, version_number: int | None = None) -> dict[str, dict]:
    """Per step of a version, treatment and holdout together: waiting there now, passed
    (runs), the messages' measures with their rates (% of sent), converted; a figure that
    is zero is left out (the API's shape). The same four queries as `step_counts`."""
    stats: dict[str, dict] = {}
    for step_id, groups in step_counts(campaign=campaign, version_number=version_number).items():
        total = {k: groups["treatment"][k] + groups["holdout"][k] for k in STEP_FIGURES}
        entry = {k: total[k] for k in ("waiting", "passed", "converted") if total[k]}
        if any(total[k] for k in MESSAGE_MEASURES):
            entry.update({k: total[k] for k in MESSAGE_MEASURES})
            sent = total["sent"]
            entry["rates"] = {
                k: round(100 * total[k] / sent, 2) if sent else 0.0 for k in MESSAGE_MEASURES[1:]
            }
        stats[step_id] = entry
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


# --- the options of the journey builder's reference fields (crm.kinds sources) -----------
OPTIONS_LIMIT = 500


def template_options() -> list[tuple[str, str]]:
    """Email templates by name (what a send_email step stores), labelled with the subject."""
    return [
        (name, f"{name} — {subject}")
        for name, subject in EmailTemplate.objects.order_by("name").values_list("name", "subject")[
            :OPTIONS_LIMIT
        ]
    ]


# ------------------------------------------------------------------------------------------
# Surveys

# A survey's answer categories, best first (campaigns.services.surveys.survey_category).
SURVEY_CATEGORIES = {
    Survey.Kind.NPS: ("promoter", "passive", "detractor"),
    Survey.Kind.CSAT: ("satisfied", "neutral", "unsatisfied"),
}
SURVEY_PERIODS = {"month": TruncMonth, "week": TruncWeek}


def survey_answers(*, survey: Survey | None = None) -> QuerySet[SurveyAnswer]:
    """Answers, newest first, with their survey and contact: the admin list, its CSV and
    the API read the same query."""
    answers = SurveyAnswer.objects.select_related("survey", "contact").order_by(
        "-answered_at", "-id"
    )
    return answers.filter(survey=survey) if survey is not None else answers


def survey_figures(kind: str, counts: dict[str, int]) -> dict:
    """Counts and shares (%) per category, the number of answers and the score: NPS (% promoters − %
    detractors, −100 to 100) for an NPS survey, CSAT (% of 4–5 answers) for a CSAT one;
    None without answers."""
    categories = SURVEY_CATEGORIES[Survey.Kind(kind)]
    answers = sum(counts.get(c, 0) for c in categories)
    figures = {c: counts.get(c, 0) for c in categories}
    shares = {
        f"{c}_pct": round(100 * n / answers, 1) if answers else None for c, n in figures.items()
    }
    if kind == Survey.Kind.NPS:
        score = (
            round(100 * (figures["promoter"] - figures["detractor"]) / answers) if answers else None
        )
        return {"answers": answers, **figures, **shares, "nps": score}
    score = round(100 * figures["satisfied"] / answers, 1) if answers else None
    return {"answers": answers, **figures, **shares, "csat": score}


def survey_summary(*, survey: Survey, period: str = "month") -> dict:
    """The survey's figures over all its answers and per period ("month" or "week", in
    the shop's time zone, newest first; an answer counts in the period it was first given,
    with its current score), in one query."""
    if period not in SURVEY_PERIODS:
        raise ValueError(f"period must be one of {', '.join(SURVEY_PERIODS)}")
    rows = (
        SurveyAnswer.objects.filter(survey=survey)
        .annotate(period=SURVEY_PERIODS[period]("answered_at", tzinfo=clock.shop_zone()))
        .values("period", "category")
        .annotate(n=Count("id"))
        .order_by()
    )
    per_period: dict = {}
    total: dict[str, int] = {}
    for row in rows:
        per_period.setdefault(row["period"].date(), {})[row["category"]] = row["n"]
        total[row["category"]] = total.get(row["category"], 0) + row["n"]
    return {
        "kind": survey.kind,
        "period": period,
        "total": survey_figures(survey.kind, total),
        "periods": [
            {"start": start, **survey_figures(survey.kind, counts)}
            for start, counts in sorted(per_period.items(), reverse=True)
        ],
    }
