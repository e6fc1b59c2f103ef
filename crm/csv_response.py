"""CSV downloads from the admin: one response builder, so every download names its file,
declares its type and guards its cells the same way.

The guard: a spreadsheet runs a cell that starts with =, +, -, @, a tab or a carriage
return as a formula, so a contact's name, a campaign's name or an error message typed as
`=HYPERLINK(…)` would run on the computer of whoever opens the file. Such text is written
with a leading apostrophe, which spreadsheets show as text (OWASP, "CSV Injection").
Numbers are written as they are: a negative amount stays a number.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence

from django.http import HttpResponse, StreamingHttpResponse
from django.utils.http import content_disposition_header

CONTENT_TYPE = "text/csv; charset=utf-8"
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> str:
    """A value as an inert CSV cell: None is empty, text that a spreadsheet would run as
    a formula gets a leading apostrophe, anything else is its str()."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return str(value)


def csv_response(
    *,
    filename: str,
    header: Sequence[object],
    rows: Iterable[Sequence[object]],
    content_type: str = CONTENT_TYPE,
) -> HttpResponse:
    """An attachment named `filename` with a header row and `rows`, every cell through
    `csv_cell`. `rows` may be a generator (an `.iterator()` over a queryset): it is
    written row by row."""
    response = HttpResponse(content_type=content_type)
    response["Content-Disposition"] = content_disposition_header(True, filename)
    writer = csv.writer(response)
    writer.writerow([csv_cell(value) for value in header])
    for row in rows:
        writer.writerow([csv_cell(value) for value in row])
    return response


class _Line:
    """A file-like object csv.writer writes one row into; the row is returned as text."""

    def write(self, text: str) -> str:
        return text


def csv_streaming_response(
    *,
    filename: str,
    header: Sequence[object],
    rows: Iterable[Sequence[object]],
) -> StreamingHttpResponse:
    """`csv_response` for tables of any size: each row is written to the client as it is
    read (give `rows` over `queryset.iterator()`), so memory stays flat; the same cells
    and the same guard."""
    writer = csv.writer(_Line())

    def lines():
        yield writer.writerow([csv_cell(value) for value in header])
        for row in rows:
            yield writer.writerow([csv_cell(value) for value in row])

    response = StreamingHttpResponse(lines(), content_type=CONTENT_TYPE)
    response["Content-Disposition"] = content_disposition_header(True, filename)
    return response
