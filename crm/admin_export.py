"""CSV export from an admin changelist, one helper for every table (contacts, orders,
messages, ledger entries, segment members): an action, "Download as CSV", on the rows
selected, or on every row the changelist's search and filters show with "Select all".
It needs only the view permission, as reading the list does, and streams
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

from crm import clock
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
    rows = queryset.select_related(*relations).order_by("pk").iterator(chunk_size=CHUNK)
    return csv_streaming_response(
        filename=filename,
        header=[header for header, _ in columns],
        rows=(
            [value(obj) if callable(value) else _value(obj, value) for _, value in columns]
            for obj in rows
        ),
    )


@admin.action(description="Download as CSV (the selected, or all the filters show)")
def download_as_csv(model_admin, request: HttpRequest, queryset: QuerySet):
    opts = model_admin.model._meta
    stamp = clock.now().strftime("%Y%m%d-%H%M")
    return csv_export(
        queryset,
        columns=model_admin.csv_columns,
        filename=f"{opts.model_name}s-{stamp}.csv",
    )


download_as_csv.allowed_permissions = ("view",)


class CsvExportMixin:
    """Adds the "Download as CSV" action to a ModelAdmin with `csv_columns`."""

    csv_columns: Sequence[Column] = ()

    def get_actions(self, request):
        actions = super().get_actions(request)
        if self.has_view_permission(request):
            actions["download_as_csv"] = (
                download_as_csv,
                "download_as_csv",
                download_as_csv.short_description,
            )
        return actions
