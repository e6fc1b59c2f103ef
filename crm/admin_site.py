"""Keepers' admin site: Django's AdminSite with the metrics dashboard (crm.admin_dashboard)
at /admin/metrics/, listed first on the index and in the sidebar; "View site" opens the
shop.

crm.apps.KeepersAdminConfig, in INSTALLED_APPS in place of "django.contrib.admin", makes
it the default site (Django's `AdminConfig.default_site`), so `admin.site`,
`@admin.register` and every ModelAdmin's `self.admin_site` are this site.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import path, reverse

from crm.admin_access import admin_permission
from crm.admin_dashboard import dashboard_view

DASHBOARD_URL_NAME = "metrics_dashboard"  # reverse("admin:metrics_dashboard")


class KeepersAdminSite(admin.AdminSite):
    @property
    def site_url(self) -> str:
        """Where the header's "View site" goes: the shop (KEEPERS_SHOP_URL). Keepers has
        no home page of its own, so Django's default "/" was a 404."""
        return settings.KEEPERS_SHOP_URL

    def get_urls(self) -> list:
        return [
            path("metrics/", self.admin_view(self.dashboard_view), name=DASHBOARD_URL_NAME),
            *super().get_urls(),
        ]

    @admin_permission("crm.view_metrics")
    def dashboard_view(self, request: HttpRequest) -> HttpResponse:
        return dashboard_view(request, site=self)

    def get_app_list(self, request: HttpRequest, app_label: str | None = None) -> list:
        """The dashboard as the first section of the index and the sidebar (not on an
        app's own index page, which lists only that app)."""
        app_list = super().get_app_list(request, app_label)
        if (
            app_label is not None
            or not self.has_permission(request)
            or not request.user.has_perm("crm.view_metrics")
        ):
            return app_list
        url = reverse(f"{self.name}:{DASHBOARD_URL_NAME}")
        entry = {
            "name": "Metrics",
            "app_label": "metrics",
            "app_url": url,
            "has_module_perms": True,
            "models": [
                {
                    "model": None,
                    "name": "Dashboard",
                    "object_name": "Dashboard",
                    "perms": {"view": True},
                    "admin_url": url,
                    "add_url": None,
                    "view_only": True,
                }
            ],
        }
        return [entry, *app_list]
