"""Campaign results on crm's metrics dashboard (crm.admin_dashboard): revenue per enrolled
contact, treatment against holdout, and the holdout lift of each active campaign.
Registered from campaigns/admin.py, after crm's own charts."""

from __future__ import annotations

from decimal import Decimal

from campaigns.models import Campaign
from campaigns.selectors import campaign_stats
from crm.admin_dashboard import Chart, DashboardPanel, Figures, dashboard_chart
from crm.charts import svg_bars

MAX_CAMPAIGNS = 10
CENT = Decimal("0.01")


def _active_campaign_stats() -> list[tuple[Campaign, dict]]:
    """At most MAX_CAMPAIGNS active campaigns by name: one query, then four per campaign."""
    active = Campaign.objects.filter(status=Campaign.Status.ACTIVE).order_by("name")
    return [(c, campaign_stats(campaign=c)) for c in active[:MAX_CAMPAIGNS]]


def chart_campaigns(figures: Figures) -> Chart:
    """Each campaign's results since it started, whatever the period chosen."""
    rows = []
    for campaign, stats in _active_campaign_stats():
        treated, held = stats["treatment"], stats["holdout"]
        per_treated = Decimal(treated["revenue_per_contact"])
        per_held = Decimal(held["revenue_per_contact"])
        # What the treatment group earned beyond what it would have at the holdout's rate.
        incremental = (per_treated - per_held) * treated["enrolled"] if held["enrolled"] else None
        rows.append(
            (
                campaign.name,
                treated["enrolled"],
                held["enrolled"],
                treated["conversion_rate"],
                held["conversion_rate"],
                stats["lift"],
                Decimal(treated["revenue"]).quantize(CENT),
                Decimal(held["revenue"]).quantize(CENT),
                per_treated,
                per_held,
                incremental,
            )
        )
    notes = [f"lift {row[5]:+.2f} pp" if row[5] is not None else "no holdout" for row in rows]
    more = (
        f" The first {MAX_CAMPAIGNS} active campaigns by name."
        if len(rows) == MAX_CAMPAIGNS
        else ""
    )
    return dashboard_chart(
        "campaigns",
        "Campaign revenue and holdout lift",
        "Revenue per enrolled contact, treatment against the holdout group, since each "
        "campaign started; lift = conversion rate difference in percentage points. "
        f"Active campaigns, all channels.{more}",
        svg_bars(
            "campaigns",
            title="Revenue per contact, treatment and holdout, by campaign",
            labels=[row[0] for row in rows],
            series=[
                ("Treatment", [float(row[8]) for row in rows]),
                ("Holdout", [float(row[9]) if row[2] else None for row in rows]),
            ],
            y_label="revenue per contact",
            unit="",
            notes=notes,
        ),
        [
            "Campaign",
            "Enrolled (treatment)",
            "Enrolled (holdout)",
            "Conversion % (treatment)",
            "Conversion % (holdout)",
            "Lift (pp)",
            "Revenue (treatment)",
            "Revenue (holdout)",
            "Revenue per contact (treatment)",
            "Revenue per contact (holdout)",
            "Incremental revenue (est.)",
        ],
        rows,
        any(row[1] or row[2] for row in rows),
    )


CAMPAIGN_RESULTS = DashboardPanel(
    key="campaigns",
    chart=chart_campaigns,
    definitions=(
        (
            "Holdout lift",
            "A campaign's conversion rate minus its holdout group's, in percentage points.",
        ),
    ),
)
