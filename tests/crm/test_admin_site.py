"""Keepers' admin site and the dashboard's panel registry: another app's panel is drawn
after crm's charts, downloads as CSV and brings its definitions; keys are unique."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.core.exceptions import ImproperlyConfigured
from django.urls import reverse

from crm import admin_dashboard
from crm.admin_dashboard import DashboardPanel, dashboard_chart, register_dashboard_panel
from crm.admin_site import KeepersAdminSite
from crm.charts import svg_bars


@pytest.fixture
def panels(monkeypatch):
    """The registry as the apps left it, restored after the test."""
    monkeypatch.setattr(admin_dashboard, "CHARTS", dict(admin_dashboard.CHARTS))
    return admin_dashboard.CHARTS


def chart_visits(figures):
    rows = [("Shop", 3), ("Blog", 1)]
    return dashboard_chart(
        "visits",
        "Visits",
        f"From {figures.period.start} to {figures.period.end}.",
        svg_bars(
            "visits",
            title="Visits by site",
            labels=[r[0] for r in rows],
            series=[("Visits", [r[1] for r in rows])],
            y_label="visits",
        ),
        ["Site", "Visits"],
        rows,
        True,
    )


VISITS = DashboardPanel("visits", chart_visits, definitions=(("Visit", "A page view."),))


def test_the_admin_site_is_keepers_site():
    assert isinstance(admin.site, KeepersAdminSite)
    assert reverse("admin:metrics_dashboard") == "/admin/metrics/"


@pytest.mark.django_db
def test_a_registered_panel_comes_after_crms_charts(staff_client, panels):
    before = list(panels)

    register_dashboard_panel(VISITS)
    register_dashboard_panel(VISITS)  # the same panel again: nothing changes

    assert list(panels) == [*before, "visits"]
    page = staff_client.get("/admin/metrics/", {"months": 3})
    assert [c["key"] for c in page.context["charts"]][-1] == "visits"
    assert "<dt>Visit</dt><dd>A page view.</dd>" in page.content.decode()
    download = staff_client.get("/admin/metrics/", {"months": 3, "csv": "visits"})
    assert download.content.decode().splitlines() == ["Site,Visits", "Shop,3", "Blog,1"]


def test_panel_keys_are_unique(panels):
    with pytest.raises(ImproperlyConfigured, match="'rfm'"):
        register_dashboard_panel(DashboardPanel("rfm", chart_visits))


@pytest.mark.django_db
def test_a_panel_builds_the_chart_of_its_own_key(staff_client, panels):
    register_dashboard_panel(DashboardPanel("elsewhere", chart_visits))

    with pytest.raises(ImproperlyConfigured, match="keyed 'visits'"):
        staff_client.get("/admin/metrics/", {"csv": "elsewhere"})


@pytest.mark.django_db
def test_view_site_opens_the_shop_not_a_404(admin_client, settings):
    settings.KEEPERS_SHOP_URL = "https://roastery.example.com"
    page = admin_client.get("/admin/").content.decode()
    assert '<a href="https://roastery.example.com">View site</a>' in page
    assert admin_client.get("/").status_code == 404  # what "View site" used to open
