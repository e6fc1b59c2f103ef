"""CSV export from an admin changelist, one helper for every table (contacts, orders,
messages, ledger entries, segment members): a "Download CSV" button above the list,
which downloads every row the changelist's search and filters show, and an action,
"Download as CSV", on the rows selected (or all of them with "Select all").
It needs the view permission, as reading the list does — and, for a list whose file
carries contacts' addresses (`csv_permission`), "Can download lists with contacts'
addresses" (`crm.download_addresses`), so a role that may read a page of contacts does not
walk off with every address —, and streams
(`crm.csv_response.csv_streaming_response`: the spreadsheet-formula guard on every cell,
rows read with `.iterator()`), so a million contacts download in flat memory.

Not django-import-export: that adds a dependency with its own import screens,
permissions and CSV writer; what staff need is export only, through the one CSV door that
already guards formulas.

    class OrderAdmin(CsvExportMixin, admin.ModelAdmin):
        csv_columns = [("order", "external_id"), ("email", "contact.email"), …]

A column's value is a dotted path through the row's relations (joined in the query with
`select_related`), or a callable taking the row.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, StreamingHttpResponse
from django.urls import path, reverse

from crm import clock
from crm.admin_access import admin_permission, admin_require
from crm.csv_response import csv_streaming_response

Column = tuple[str, str | Callable[[object], object]]
CHUNK = 2000


def _value(obj: object, path: str) -> object:
    for name in path.split("."):
        obj = getattr(obj, name, None)
        if obj is None:
            return None
    if isinstance(obj, dt.datetime | dt.date):
        return obj.isoformat()
    return obj


def csv_export(
    queryset: QuerySet, *, columns: Sequence[Column], filename: str
) -> StreamingHttpResponse:
    """The rows of `queryset` as a streamed CSV with one column per (header, value)."""
    relations = {
        path.rsplit(".", 1)[0].replace(".", "__")
        for _, path in columns
        if isinstance(path, str) and "." in path
    }
    if relations:  # (select_related() with no names would follow every foreign key)
        queryset = queryset.select_related(*relations)
    rows = queryset.order_by("pk").iterator(chunk_size=CHUNK)
    return csv_streaming_response(
        filename=filename,
        header=[header for header, _ in columns],
        rows=(
            [value(obj) if callable(value) else _value(obj, value) for _, value in columns]
            for obj in rows
        ),
    )


def _filename(model_admin) -> str:
    return f"{model_admin.model._meta.model_name}s-{clock.now():%Y%m%d-%H%M}.csv"


ADDRESSES = "crm.download_addresses"  # a CSV that carries contacts' addresses


@admin.action(description="Download as CSV (the selected, or all the filters show)")
def download_as_csv(model_admin, request: HttpRequest, queryset: QuerySet):
    if model_admin.csv_permission:
        admin_require(request, model_admin.csv_permission)
    return csv_export(queryset, columns=model_admin.csv_columns, filename=_filename(model_admin))


download_as_csv.allowed_permissions = ("view",)


class CsvExportMixin:
    """Adds the "Download CSV" button (its URL: `admin:<app>_<model>_csv`) and the
    "Download as CSV" action to a ModelAdmin with `csv_columns`. The button is drawn by
    the model's `change_list_object_tools.html` (admin/keepers/csv_export_tool.html)."""

    csv_columns: Sequence[Column] = ()
    csv_permission: str | None = ADDRESSES  # None: the list holds no addresses

    def _may_download(self, request) -> bool:
        return self.has_view_permission(request) and (
            not self.csv_permission or request.user.has_perm(self.csv_permission)
        )

    def get_actions(self, request):
        actions = super().get_actions(request)
        if self._may_download(request):
            actions["download_as_csv"] = (
                download_as_csv,
                "download_as_csv",
                download_as_csv.short_description,
            )
        return actions

    def _csv_url_name(self) -> str:
        opts = self.model._meta
        return f"{opts.app_label}_{opts.model_name}_csv"

    def get_urls(self):
        opts = self.model._meta
        needed = [f"{opts.app_label}.view_{opts.model_name}", self.csv_permission]
        view = admin_permission(*filter(None, needed))(self.csv_view)
        return [
            path("csv/", self.admin_site.admin_view(view), name=self._csv_url_name()),
            *super().get_urls(),
        ]

    def csv_view(self, request: HttpRequest) -> StreamingHttpResponse:
        """Every row the changelist shows with the same query string (search, filters,
        date drill-down), not only its page."""
        changelist = self.get_changelist_instance(request)
        return csv_export(
            changelist.get_queryset(request),
            columns=self.csv_columns,
            filename=_filename(self),
        )

    def changelist_view(self, request, extra_context=None):
        query = request.GET.urlencode()
        url = reverse(f"{self.admin_site.name}:{self._csv_url_name()}")
        csv_url = (f"{url}?{query}" if query else url) if self._may_download(request) else None
        extra_context = {**(extra_context or {}), "csv_url": csv_url}
        return super().changelist_view(request, extra_context)
