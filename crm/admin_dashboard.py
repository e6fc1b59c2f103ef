"""The metrics dashboard for staff at /admin/metrics/.

The page is a list of panels, each one chart of the chosen period: a `DashboardPanel`
whose `chart(figures)` returns a `Chart` ({"key", "title", "summary", "svg", "headers",
"rows", "has_data"}, built with `dashboard_chart`). The page draws the SVG and the "Show
the numbers" table from it, and `?csv=<key>` writes the same rows, so the picture, the
table and the download cannot disagree.

crm's own panels come first (retention, NRR, channels, surveys, funnel, cohorts, RFM);
the apps above crm add theirs after them, in the order they register, from their own
admin.py (campaigns adds campaign results):

    from crm.admin_dashboard import DashboardPanel, register_dashboard_panel

    register_dashboard_panel(DashboardPanel(key="campaigns", chart=chart_campaigns))

Figures come from crm.services.metrics (`metrics_summary` per month of the period and for
the whole period, `funnel`, `cohorts`: each cached) and one grouped query over
ContactRfm, read once per page through `Figures`; a panel from another app reads its own
(campaigns: `campaign_stats` for at most ten active campaigns, four queries each). A page
therefore costs a bounded number of queries whatever the size of the data: about three
per month on a cold cache (MAX_MONTHS at most), the panels' own, and a dozen more.

The charts are server-rendered SVG drawn by crm.charts (no JavaScript, no CDN): each has
a <title> and <desc> for screen readers, a <title> tooltip on every mark, axis labels,
and its numbers in a table underneath.

The page is not a model admin: crm.admin_site.KeepersAdminSite serves it (`get_urls`)
and lists it first on the admin index and in the sidebar as a "Metrics" section
(`get_app_list`), so config/urls.py and the admin templates stay untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cached_property
from typing import TypedDict
from urllib.parse import urlencode

from django import forms
from django.contrib.admin import AdminSite
from django.core.exceptions import ImproperlyConfigured
from django.db.models import Avg, Count, Max
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.template.response import TemplateResponse
from django.utils.safestring import SafeString, mark_safe

from crm import clock
from crm.charts import figure_text, svg_bars, svg_funnel, svg_heatmap, svg_lines
from crm.csv_response import csv_response
from crm.models import Contact, ContactRfm, RfmGroup
from crm.services.clv_fits import clv_overview
from crm.services.metrics import cohorts, funnel, metrics_summary

MAX_MONTHS = 24
PRESETS = (3, 6, 12)
DEFAULT_MONTHS = 12

# --- the period ----------------------------------------------------------------------------


def _today() -> date:
    return clock.now().astimezone(clock.shop_zone()).date()


def _month_add(month: date, months: int) -> date:
    index = month.year * 12 + month.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def _months_back(end: date, months: int) -> date:
    """The first day of the month `months - 1` months before `end`'s: "the last 3 months"
    ending today are this month to date and the two before it."""
    return _month_add(end.replace(day=1), -(months - 1))


@dataclass(frozen=True)
class Period:
    start: date
    end: date
    channel: str | None

    @property
    def months(self) -> list[tuple[date, date, str]]:
        """The calendar months overlapping the period, cut to it: (start, end, "YYYY-MM")."""
        result, month = [], self.start.replace(day=1)
        while month <= self.end:
            after = _month_add(month, 1)
            first, last = max(month, self.start), min(after - timedelta(days=1), self.end)
            result.append((first, last, f"{month:%Y-%m}"))
            month = after
        return result


class PeriodForm(forms.Form):
    months = forms.TypedChoiceField(
        choices=[(n, f"Last {n} months") for n in PRESETS], coerce=int, required=False
    )
    start = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    channel = forms.ChoiceField(required=False)

    def __init__(self, data, *, channels: Sequence[str], today: date) -> None:
        super().__init__(data)
        self.today = today
        self.fields["channel"].choices = [("", "All channels")] + [(c, c) for c in channels]

    def clean(self) -> dict:
        data = super().clean()
        if self.errors:
            return data
        start, end = data.get("start"), data.get("end")
        if start is None and end is None:
            end = self.today
            start = _months_back(end, data.get("months") or DEFAULT_MONTHS)
        elif end is None:
            end = max(start, self.today)
        elif start is None:
            start = _months_back(end, DEFAULT_MONTHS)
        if end < start:
            self.add_error("end", "The period ends before it starts.")
        elif start > self.today:
            self.add_error("start", "The period starts in the future: there is nothing yet.")
        elif len(Period(start, end, None).months) > MAX_MONTHS:
            self.add_error("start", f"Choose a period of at most {MAX_MONTHS} calendar months.")
        else:
            data["period"] = Period(start, end, data.get("channel") or None)
        return data


# --- the figures, each read once -----------------------------------------------------------


class Figures:
    """What crm's charts read, loaded on first use (a CSV download loads only its chart's).
    Every panel's `chart` is given one, for its `period`."""

    def __init__(self, period: Period) -> None:
        self.period = period

    @cached_property
    def monthly(self) -> list[tuple[str, dict]]:
        return [
            (label, metrics_summary(first, last, channel=self.period.channel))
            for first, last, label in self.period.months
        ]

    @cached_property
    def summary(self) -> dict:
        return metrics_summary(self.period.start, self.period.end, channel=self.period.channel)

    @cached_property
    def funnel(self) -> dict:
        return funnel(self.period.start, self.period.end)

    @cached_property
    def cohorts(self) -> dict:
        return cohorts(len(self.period.months), end=self.period.end)

    @cached_property
    def rfm(self) -> list[dict]:
        scores = ContactRfm.objects.all()
        if self.period.channel:
            scores = scores.filter(contact__channel=self.period.channel)
        # rfm_group follows from (R, F) (crm.services.rfm), so MAX picks the cell's group
        return list(
            scores.order_by()
            .values("recency", "frequency")
            .annotate(contacts=Count("pk"), monetary=Avg("monetary"), rfm_group=Max("rfm_group"))
        )


# --- charts --------------------------------------------------------------------------------


class Chart(TypedDict):
    """One chart of the page, its table and its CSV."""

    key: str  # the section's id (chart-<key>) and ?csv=<key>
    title: str
    summary: str  # what the figures mean, under the title
    svg: SafeString  # empty without data
    headers: list[str]  # the table's and the CSV's header row
    rows: list[list]  # raw values: formatted for the table, written as they are to the CSV
    has_data: bool


def dashboard_chart(
    key: str,
    title: str,
    summary: str,
    svg: str,
    headers: Sequence[str],
    rows: Sequence[Sequence],
    has_data: bool,
) -> Chart:
    return {
        "key": key,
        "title": title,
        "summary": summary,
        "svg": mark_safe(svg if has_data else ""),  # crm.charts escapes every part
        "headers": list(headers),
        "rows": [list(row) for row in rows],
        "has_data": has_data,
    }


def _channel_note(period: Period) -> str:
    return f"Contacts acquired through {period.channel}." if period.channel else "All channels."


def chart_retention(figures: Figures) -> Chart:
    months = figures.monthly
    rows = [
        (
            label,
            s["customers"]["start"],
            s["customers"]["end"],
            s["customers"]["new"],
            s["retention_rate"],
            s["churn_rate"],
        )
        for label, s in months
    ]
    labels = [row[0] for row in rows]
    series = [
        ("Retention rate", [row[4] for row in rows]),
        ("Churn rate", [row[5] for row in rows]),
    ]
    return dashboard_chart(
        "retention",
        "Customer retention and churn by month",
        "CRR = (E − N) ÷ S × 100 per month, S and E the customers at its start and end, "
        f"N the new ones; churn = 100 − CRR. {_channel_note(figures.period)}",
        svg_lines(
            "retention",
            title="Customer retention rate and churn rate by month",
            labels=labels,
            series=series,
            y_label="% of customers at the month's start",
            unit="%",
            reference=(100, "100%"),
        ),
        ["Month", "Customers at start (S)", "At end (E)", "New (N)", "CRR %", "Churn %"],
        rows,
        any(row[4] is not None for row in rows),
    )


def chart_nrr(figures: Figures) -> Chart:
    rows = []
    for label, s in figures.monthly:
        nrr = s["net_revenue_retention"]
        rows.append((label, nrr["revenue"], nrr["previous_revenue"], nrr["rate"]))
    overall = figures.summary["net_revenue_retention"]["rate"]
    currency = figures.summary["currency"]
    whole = f" Over the whole period: {figure_text(overall)}%." if overall is not None else ""
    return dashboard_chart(
        "nrr",
        "Net revenue retention by month",
        "Revenue in the month from the customers at its start ÷ the same customers' revenue "
        f"in the month before × 100 (refunds subtracted, {currency}).{whole} "
        f"{_channel_note(figures.period)}",
        svg_lines(
            "nrr",
            title="Net revenue retention by month",
            labels=[row[0] for row in rows],
            series=[("Net revenue retention", [row[3] for row in rows])],
            y_label="% of the previous month's revenue",
            unit="%",
            reference=(100, "100%"),
        ),
        [
            "Month",
            f"Revenue from S customers ({currency})",
            f"Their previous-month revenue ({currency})",
            "NRR %",
        ],
        rows,
        any(row[3] is not None for row in rows),
    )


def chart_channels(figures: Figures) -> Chart:
    summary = figures.summary
    currency = summary["currency"]
    rows = [
        (
            row["channel"] or "(none)",
            row["customers"]["new"],
            row["spend"],
            row["cac"],
            row["average_clv"],
            row["clv_cac"],
        )
        for row in summary["channels"]
    ]
    labels = [row[0] for row in rows]
    series = [
        ("CAC", [_float(row[3]) for row in rows]),
        ("Average historic CLV", [_float(row[4]) for row in rows]),
    ]
    notes = [f"CLV:CAC {figure_text(row[5])}" if row[5] is not None else "" for row in rows]
    return dashboard_chart(
        "channels",
        "CAC and CLV : CAC by acquisition channel",
        "CAC = spend in the period ÷ new customers; CLV = average net revenue to date per "
        f"customer; the ratio is written over each channel. {currency}. "
        f"{_channel_note(figures.period)}",
        svg_bars(
            "channels",
            title="Customer acquisition cost and average historic CLV by channel",
            labels=labels,
            series=series,
            y_label=currency,
            unit=f" {currency}",
            notes=notes,
        ),
        [
            "Channel",
            "New customers",
            f"Spend ({currency})",
            f"CAC ({currency})",
            f"Average CLV ({currency})",
            "CLV : CAC",
        ],
        rows,
        any(row[3] is not None or row[4] is not None for row in rows),
    )


def chart_surveys(figures: Figures) -> Chart:
    rows = []
    for label, s in figures.monthly:
        csat, nps = s["surveys"]["csat"], s["surveys"]["nps"]
        rows.append(
            (
                label,
                csat["answers"],
                csat["score"],
                nps["answers"],
                nps["promoters"],
                nps["detractors"],
                nps["score"],
            )
        )
    return dashboard_chart(
        "surveys",
        "CSAT and NPS by month",
        "CSAT = answers 4–5 ÷ answers (1–5 scale) × 100; NPS = % promoters (9–10) − "
        f"% detractors (0–6). {_channel_note(figures.period)}",
        svg_lines(
            "surveys",
            title="CSAT and NPS by month",
            labels=[row[0] for row in rows],
            series=[("CSAT %", [row[2] for row in rows]), ("NPS", [row[6] for row in rows])],
            y_label="score",
            y_range=(-100, 100),
            reference=(0, "0"),
        ),
        [
            "Month",
            "CSAT answers",
            "CSAT %",
            "NPS answers",
            "Promoters",
            "Detractors",
            "NPS",
        ],
        rows,
        any(row[2] is not None or row[6] is not None for row in rows),
    )


def chart_funnel(figures: Figures) -> Chart:
    data = figures.funnel
    total = sum(stage["contacts"] for stage in data["stages"])
    rows = [
        (
            stage["label"],
            stage["contacts"],
            round(100 * stage["contacts"] / total, 2) if total else None,
        )
        for stage in data["stages"]
    ]
    conversion, retention = data["conversion"], data["retention"]
    acquisition, reach = data["acquisition"], data["reach"]
    summary = (
        "Contacts per lifecycle stage today (all channels). In the period: "
        f"{figure_text(reach['visitors'])} visitors, "
        f"{figure_text(acquisition['new_subscribers'])} new subscribers "
        f"(signup rate {figure_text(acquisition['signup_rate'], '%')}), "
        f"{figure_text(conversion['first_orders'])} of them ordered "
        f"({figure_text(conversion['rate'], '%')}, median "
        f"{figure_text(conversion['median_days'], ' days')}); "
        f"repeat-purchase rate {figure_text(retention['repeat_purchase_rate'], '%')}."
    )
    return dashboard_chart(
        "funnel",
        "Lifecycle funnel",
        summary,
        svg_funnel(
            "funnel",
            title="Contacts per lifecycle stage",
            labels=[row[0] for row in rows],
            values=[row[1] for row in rows],
            shares=[row[2] for row in rows],
        ),
        ["Stage", "Contacts", "% of contacts"],
        rows,
        total > 0,
    )


def chart_cohorts(figures: Figures) -> Chart:
    data = figures.cohorts
    table = data["cohorts"]
    ages = max((len(c["percent"]) for c in table), default=0)
    currency = data["currency"]
    rows = [
        (
            f"{c['cohort']:%Y-%m}",
            c["customers"],
            *[c["percent"][age] if age < len(c["percent"]) else None for age in range(ages)],
            c["revenue"],
            c["average_clv"],
        )
        for c in table
    ]
    later = [p for c in table for p in c["percent"][1:] if p is not None and c["customers"]]
    top = max(later, default=0) or 100
    cells = []
    for c in table:
        line = []
        for age in range(ages):
            if age >= len(c["percent"]) or not c["customers"]:
                line.append(None)
                continue
            value = c["percent"][age] or 0.0
            tip = (
                f"Cohort {c['cohort']:%Y-%m}, month {age}: {c['active'][age]} of "
                f"{c['customers']} customers ordered ({figure_text(value)}%)"
            )
            line.append((min(value / top, 1.0), f"{value:.0f}", tip))
        cells.append(line)
    return dashboard_chart(
        "cohorts",
        "Cohort retention",
        "Customers by the month of their first order (rows) × months since it (columns): "
        "the share of the cohort who ordered in that month. All channels; "
        f"revenue in {currency}.",
        svg_heatmap(
            "cohorts",
            title="Cohort retention heatmap",
            row_labels=[row[0] for row in rows],
            col_labels=[str(age) for age in range(ages)],
            cells=cells,
            x_label="Months since the first order",
            y_label="Cohort",
            legend=("0%", f"{top:.0f}%+"),
        ),
        [
            "Cohort",
            "Customers",
            *[f"Month {age} %" for age in range(ages)],
            f"Net revenue ({currency})",
            f"Average CLV ({currency})",
        ],
        rows,
        any(c["customers"] for c in table),
    )


def chart_rfm(figures: Figures) -> Chart:
    by_cell = {(row["recency"], row["frequency"]): row for row in figures.rfm}
    names = dict(RfmGroup.choices)
    top = max((row["contacts"] for row in figures.rfm), default=0)
    rows, cells = [], []
    for r in range(5, 0, -1):  # most recent at the top
        line = []
        for f in range(1, 6):
            row = by_cell.get((r, f))
            if row is None:
                line.append((0.0, "0", f"R{r} F{f}: no contacts"))
                continue
            group = str(names.get(row["rfm_group"], row["rfm_group"]))
            monetary = round(float(row["monetary"]), 2)
            rows.append((r, f, group, row["contacts"], monetary))
            line.append(
                (
                    row["contacts"] / top,
                    str(row["contacts"]),
                    f"R{r} F{f} — {group}: {row['contacts']} contacts, average M {monetary}",
                )
            )
        cells.append(line)
    return dashboard_chart(
        "rfm",
        "RFM grid",
        "Customers by recency (R, rows) and frequency (F, columns) score, 1–5 by quintile; "
        "the table adds the named segment and the average monetary score. "
        f"{_channel_note(figures.period)} Scores as last recomputed, not for the period.",
        svg_heatmap(
            "rfm",
            title="RFM grid: customers by recency and frequency score",
            row_labels=[f"R{r}" for r in range(5, 0, -1)],
            col_labels=[f"F{f}" for f in range(1, 6)],
            cells=cells,
            x_label="Frequency score",
            y_label="Recency score",
            legend=("0", f"{top} contacts"),
            cell_height=40,
        ),
        ["Recency (R)", "Frequency (F)", "Segment", "Contacts", "Average monetary score (M)"],
        rows,
        bool(rows),
    )


# --- the panels ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DashboardPanel:
    """A chart on the dashboard. `chart` builds it for a period; the `Chart` it returns
    carries the same `key`. `definitions` are (term, meaning) pairs the page's
    "Definitions" list adds after crm's own."""

    key: str
    chart: Callable[[Figures], Chart]
    definitions: tuple[tuple[str, str], ...] = ()


# The panels in page order, by key: crm's, then the other apps' as they register.
CHARTS: dict[str, DashboardPanel] = {}


def register_dashboard_panel(panel: DashboardPanel) -> DashboardPanel:
    """Add `panel` after those already on the page (again the same panel: nothing)."""
    known = CHARTS.get(panel.key)
    if known is not None and known != panel:
        raise ImproperlyConfigured(f"A dashboard panel with the key {panel.key!r} exists.")
    CHARTS[panel.key] = panel
    return panel


register_dashboard_panel(DashboardPanel("retention", chart_retention))
register_dashboard_panel(DashboardPanel("nrr", chart_nrr))
register_dashboard_panel(DashboardPanel("channels", chart_channels))
register_dashboard_panel(DashboardPanel("surveys", chart_surveys))
register_dashboard_panel(DashboardPanel("funnel", chart_funnel))
register_dashboard_panel(DashboardPanel("cohorts", chart_cohorts))
register_dashboard_panel(DashboardPanel("rfm", chart_rfm))


def _build(panel: DashboardPanel, figures: Figures) -> Chart:
    chart = panel.chart(figures)
    if chart["key"] != panel.key:
        raise ImproperlyConfigured(
            f"The dashboard panel {panel.key!r} built a chart keyed {chart['key']!r}."
        )
    return chart


# --- numbers -------------------------------------------------------------------------------


def _float(value) -> float | None:
    return None if value is None else float(value)


# --- the view ------------------------------------------------------------------------------


def _channels() -> list[str]:
    return list(
        Contact.objects.exclude(channel="")
        .order_by("channel")
        .values_list("channel", flat=True)
        .distinct()
    )


def _for_page(chart: Chart, query: QueryDict) -> dict:
    """The chart with its table cells formatted and the link to its CSV (same filters)."""
    download = query.copy()
    download["csv"] = chart["key"]
    return chart | {
        "cells": [[figure_text(value) for value in row] for row in chart["rows"]],
        "csv_url": "?" + download.urlencode(),
    }


def dashboard_view(request: HttpRequest, *, site: AdminSite) -> HttpResponse:
    """The page, or with ?csv=<key> one chart's CSV; `site` is the admin site serving it."""
    today = _today()
    form = PeriodForm(request.GET, channels=_channels(), today=today)
    wanted = request.GET.get("csv")
    if wanted is not None and wanted not in CHARTS:
        raise Http404("No such chart.")
    if wanted is not None:
        if not form.is_valid():
            errors = "; ".join(f"{field}: {' '.join(e)}" for field, e in form.errors.items())
            return HttpResponse(errors, status=400, content_type="text/plain; charset=utf-8")
        return _csv(_build(CHARTS[wanted], Figures(form.cleaned_data["period"])), form)

    query = request.GET.copy()
    query.pop("csv", None)
    context = {
        **site.each_context(request),
        "title": "Metrics",
        "form": form,
        "today": today,
        "presets": [],
        "charts": [],
        "definitions": [term for panel in CHARTS.values() for term in panel.definitions],
    }
    if form.is_valid():
        period: Period = form.cleaned_data["period"]
        figures = Figures(period)
        charts = [_for_page(_build(panel, figures), query) for panel in CHARTS.values()]
        context |= {
            "period": period,
            "charts": charts,
            "has_data": any(chart["has_data"] for chart in charts),
            "headline": _headline(figures.summary) + _predicted(),
            "custom": bool(request.GET.get("start") or request.GET.get("end")),
            "months": form.cleaned_data.get("months") or DEFAULT_MONTHS,
        }
    channel = request.GET.get("channel", "")
    for months in PRESETS:
        preset = {"months": months} | ({"channel": channel} if channel else {})
        context["presets"].append((months, "?" + urlencode(preset)))
    status = 200 if form.is_valid() else 400
    return TemplateResponse(request, "admin/metrics/dashboard.html", context, status=status)


def _headline(summary: dict) -> list[tuple[str, str]]:
    money = f" {summary['currency']}"
    surveys = summary["surveys"]
    return [
        ("Customers at end", figure_text(summary["customers"]["end"])),
        ("New customers", figure_text(summary["customers"]["new"])),
        ("Retention (CRR)", figure_text(summary["retention_rate"], "%")),
        ("Churn", figure_text(summary["churn_rate"], "%")),
        ("NRR", figure_text(summary["net_revenue_retention"]["rate"], "%")),
        ("Net revenue", figure_text(summary["revenue"]["net"], money)),
        ("CAC", figure_text(summary["cac"], money)),
        ("CLV : CAC", figure_text(summary["clv_cac"])),
        ("CSAT", figure_text(surveys["csat"]["score"], "%")),
        ("NPS", figure_text(surveys["nps"]["score"])),
    ]


def _predicted() -> list[tuple[str, str]]:
    """Today's predictions (crm.services.clv_fits), whatever the period: they look ahead."""
    overview = clv_overview()
    if overview is None:
        return [("Predicted CLV: no fit yet", "—")]
    fit = overview["fit"]
    return [
        (
            f"Predicted CLV, average, next {fit.horizon_months} months",
            figure_text(overview["average_clv"], f" {fit.currency}"),
        ),
        ("Customers likely active (P(alive) ≥ 50%)", figure_text(overview["likely_active"], "%")),
    ]


def _csv(chart: Chart, form: PeriodForm) -> HttpResponse:
    period: Period = form.cleaned_data["period"]
    suffix = f"-{period.channel}" if period.channel else ""
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in suffix)
    return csv_response(
        filename=f"keepers-{chart['key']}-{period.start}-{period.end}{safe}.csv",
        header=chart["headers"],
        rows=chart["rows"],
    )
