"""The one CSV download builder: the file's name and type, and no cell a spreadsheet would
run as a formula, whichever download it is."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest

from crm.csv_response import csv_cell, csv_response
from crm.models import ImportJob


def rows_of(response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(response.content.decode())))


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ("=HYPERLINK(1)", "'=HYPERLINK(1)"),
        ("+1", "'+1"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("Win-back", "Win-back"),
        ("", ""),
        (None, ""),
        (-5, "-5"),  # numbers stay numbers
        (Decimal("-1.50"), "-1.50"),
        (2.5, "2.5"),
    ],
)
def test_a_cell_that_would_run_as_a_formula_is_written_as_text(value, cell):
    assert csv_cell(value) == cell


def test_the_response_names_the_file_and_guards_every_cell():
    response = csv_response(
        filename="keepers-x.csv",
        header=["name", "=total"],
        rows=iter([["=cmd|' /C calc'!A0", Decimal("-3")], [None, 4]]),
    )

    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="keepers-x.csv"'
    assert rows_of(response) == [["name", "'=total"], ["'=cmd|' /C calc'!A0", "-3"], ["", "4"]]


@pytest.mark.django_db
def test_the_import_error_report_is_guarded_too(staff_client):
    job = ImportJob.objects.create(
        kind=ImportJob.Kind.CONTACTS,
        file="contacts.csv",
        errors=[{"row": 2, "field": "email", "message": "=1+1 is not an email address"}],
    )

    response = staff_client.get(f"/admin/crm/importjob/{job.pk}/errors.csv")

    assert response["Content-Disposition"] == f'attachment; filename="import-{job.pk}-errors.csv"'
    assert rows_of(response) == [
        ["line", "field", "message"],
        ["2", "email", "'=1+1 is not an email address"],
    ]
