"""`manage.py import_orders`: valid rows stored, bad rows reported by line and field,
unknown contacts created, orders already stored skipped, a second run a no-op, and a
bounded number of queries per batch whatever its size."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from decimal import Decimal
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from crm.models import Contact, ContactChange, Order, Stage, StageChange
from crm.services.order_imports import orders_import_file
from tests.factories import ContactFactory, OrderFactory

pytestmark = pytest.mark.django_db
HEADER = "external_id,contact_external_id,contact_email,ordered_at,total,currency"


def write(path: Path, *rows: str, header: str = HEADER) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def run(*args) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("import_orders", *map(str, args), stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def report_rows(path: Path) -> list[list[str]]:
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def test_valid_rows_are_stored_with_their_contacts(tmp_path):
    # given ann, known by email, and a file with her orders and a new customer's
    ann = ContactFactory(email="ann@example.com", external_id=None)
    path = write(
        tmp_path / "orders.csv",
        "o1,,ANN@example.com,2024-03-01T10:00:00+02:00,120.50,usd",
        "o2,,ann@example.com,2024-03-05,30,USD",
        "o3,shop-7,bo@example.com,2024-03-06T12:00:00Z,15.2500,EUR",
        "o4,shop-7,,2024-04-01 08:30,99,",
    )

    out, err = run(path)

    # then four orders, ann's by her email (any case), bo created with both identities
    assert "4 orders created, 0 skipped (already stored or repeated), 0 rows with errors" in out
    assert "1 contacts created" in out
    assert "4/4 rows (100.0%)" in err and "rows/s" in err
    o1 = Order.objects.get(external_id="o1")
    assert o1.contact == ann
    assert (o1.total, o1.currency, o1.source) == (Decimal("120.5"), "USD", "import")
    assert o1.ordered_at == datetime(2024, 3, 1, 8, 0, tzinfo=UTC)  # +02:00 stored in UTC
    assert Order.objects.get(external_id="o2").ordered_at == datetime(2024, 3, 5, tzinfo=UTC)
    bo = Contact.objects.get(external_id="shop-7")
    assert bo.email == "bo@example.com" and bo.source == "import"
    assert bo.stage == Stage.SUBSCRIBER  # stages are not recomputed per batch…
    assert StageChange.objects.filter(contact=bo, to_stage=Stage.SUBSCRIBER).exists()
    o4 = Order.objects.get(external_id="o4")
    assert o4.contact == bo and o4.currency == "USD"  # an empty currency is the base one
    assert o4.ordered_at == datetime(2024, 4, 1, 8, 30, tzinfo=UTC)
    # …the command says how to do it; segments that read orders get change marks
    assert "manage.py recompute_stages" in out
    assert set(ContactChange.objects.filter(kind="order").values_list("contact_id", flat=True)) == {
        ann.pk,
        bo.pk,
    }
    # and the error report beside the file has only its header
    assert report_rows(tmp_path / "orders.errors.csv") == [["line", "field", "message"]]


def test_bad_rows_are_reported_with_line_and_field_and_the_rest_imported(tmp_path):
    path = write(
        tmp_path / "orders.csv",
        "g1,c1,,2024-01-01,10,USD",  # line 2: good
        "b1,c1,,2024-01-02,ten,USD",  # line 3: total
        "b2,c1,,yesterday,10,USD",  # line 4: ordered_at
        "b3,c1,,2024-01-03,10,XYZ",  # line 5: currency
        "b4,,not-an-email,2024-01-03,10,USD",  # line 6: contact_email
        "b5,,,2024-01-03,10,USD",  # line 7: no contact at all
        ",c1,,2024-01-03,10,USD",  # line 8: external_id
        "b6,c1,,2024-01-03,-5,USD",  # line 9: total
        "b7,c1,2024-01-03,10",  # line 10: too few fields
        "",  # a blank line is skipped
        "b8,c1,,,10,USD",  # line 12: ordered_at missing
        "g2,c2,,2024-01-04,0,USD",  # line 13: good (a free order)
    )
    errors = tmp_path / "report.csv"

    out, _ = run(path, "--errors", errors)

    assert "2 orders created" in out and "9 rows with errors" in out
    assert f"Error report: {errors}" in out
    rows = report_rows(errors)
    assert rows[0] == ["line", "field", "message"]
    assert [(line, field) for line, field, _ in rows[1:]] == [
        ("3", "total"),
        ("4", "ordered_at"),
        ("5", "currency"),
        ("6", "contact_email"),
        ("7", "contact_email"),
        ("8", "external_id"),
        ("9", "total"),
        ("10", ""),
        ("12", "ordered_at"),
    ]
    messages = {line: message for line, _field, message in rows[1:]}
    assert messages["3"] == "'ten' is not an amount."
    assert "ISO 8601" in messages["4"]
    assert "ISO 4217" in messages["5"]
    assert messages["6"] == "'not-an-email' is not a valid email address."
    assert "contact_external_id or contact_email" in messages["7"]
    assert messages["8"] == "This field is required."
    assert messages["9"] == "The amount must be positive."
    assert messages["10"] == "The row has 4 fields; the header has 6."
    assert messages["12"] == "This field is required."
    assert sorted(Order.objects.values_list("external_id", flat=True)) == ["g1", "g2"]


def test_a_file_it_cannot_read_is_refused_before_any_row(tmp_path):
    with pytest.raises(CommandError, match="Unknown column 'amount'"):
        run(
            write(
                tmp_path / "a.csv",
                "o1,c1,2024-01-01,10",
                header="external_id,contact_external_id,ordered_at,amount",
            )
        )
    with pytest.raises(CommandError, match="no 'total' column"):
        run(
            write(
                tmp_path / "b.csv",
                "o1,c1,2024-01-01",
                header="external_id,contact_external_id,ordered_at",
            )
        )
    with pytest.raises(CommandError, match="contact_external_id or a contact_email column"):
        run(write(tmp_path / "c.csv", "o1,2024-01-01,10", header="external_id,ordered_at,total"))
    with pytest.raises(CommandError, match="No such file"):
        run(tmp_path / "missing.csv")
    assert not Order.objects.exists()


def test_unknown_contacts_are_created_once_and_email_only_contacts_gain_the_external_id(
    tmp_path,
):
    # given cy known by email only, and dee known by external id
    cy = ContactFactory(email="cy@example.com", external_id=None)
    dee = ContactFactory(email="dee@example.com", external_id="shop-dee")
    path = write(
        tmp_path / "orders.csv",
        "o1,shop-cy,cy@example.com,2024-01-01,10,USD",  # cy takes the external id
        "o2,shop-cy,,2024-01-02,10,USD",  # …so this resolves to her too
        "o3,shop-dee,other@example.com,2024-01-03,10,USD",  # the external id wins
        "o4,new-1,new@example.com,2024-01-04,10,USD",
        "o5,new-1,,2024-01-05,10,USD",
        "o6,,new@example.com,2024-01-06,10,USD",
        "o7,,only-email@example.com,2024-01-07,10,USD",
        "o8,new-2,NEW@example.com,2024-01-08,10,USD",  # the email is taken by new-1
    )

    out, _ = run(path, "--batch-size", "3")

    assert "8 orders created" in out and "2 contacts created" in out
    cy.refresh_from_db()
    assert cy.external_id == "shop-cy"
    owner = dict(Order.objects.values_list("external_id", "contact_id"))
    assert owner["o1"] == owner["o2"] == cy.pk
    assert owner["o3"] == dee.pk
    new = Contact.objects.get(external_id="new-1")
    assert new.email == "new@example.com"
    assert owner["o4"] == owner["o5"] == owner["o6"] == owner["o8"] == new.pk
    assert Contact.objects.get(email="only-email@example.com").external_id is None
    assert owner["o7"] == Contact.objects.get(email="only-email@example.com").pk
    assert not Contact.objects.filter(external_id="new-2").exists()
    assert Contact.objects.count() == 4


def test_duplicates_are_skipped_and_counted_and_a_second_run_is_a_no_op(tmp_path):
    # given an order already stored through the API, with another total
    OrderFactory(external_id="o1", total=Decimal("77"))
    path = write(
        tmp_path / "orders.csv",
        "o1,c1,,2024-01-01,10,USD",  # already stored: kept as it is
        "o2,c1,,2024-01-02,20,USD",
        "o2,c2,,2024-01-03,30,USD",  # repeated in the file: the first row wins
        "o3,c2,,2024-01-04,40,USD",
    )

    out, _ = run(path, "--batch-size", "2")

    assert "2 orders created, 2 skipped" in out
    assert Order.objects.get(external_id="o1").total == Decimal("77")
    o2 = Order.objects.get(external_id="o2")
    assert (o2.total, o2.contact.external_id) == (Decimal("20"), "c1")
    before = (Order.objects.count(), Contact.objects.count(), StageChange.objects.count())

    # when the same file is imported again
    out, _ = run(path)

    # then nothing changes
    assert "0 orders created, 4 skipped" in out and "0 contacts created" in out
    assert "recompute_stages" not in out
    assert (Order.objects.count(), Contact.objects.count(), StageChange.objects.count()) == before


def test_recompute_flag_moves_stages_once_at_the_end(tmp_path):
    path = write(
        tmp_path / "orders.csv",
        "o1,c1,,2024-01-01,10,USD",
        "o2,c1,,2024-02-01,10,USD",
        "o3,c2,,2099-01-01,10,USD",
    )
    out, _ = run(path, "--recompute")
    assert "contacts changed stage" in out and "customers RFM-scored" in out
    # c1's last order is long ago: lapsed; c2 has one recent order
    assert Contact.objects.get(external_id="c1").stage == Stage.LAPSED
    assert Contact.objects.get(external_id="c2").stage == Stage.FIRST_TIME


def _rows(start: int, count: int) -> str:
    """Two orders per customer: customers by external id, by email, and every fifth
    email customer with an external id too (known by email only: the id is attached)."""
    lines = [HEADER]
    for n in range(start, start + count):
        k = n // 2
        if n % 4 < 2:
            who = f"c{k},"
        elif k % 5:
            who = f",e{k}@example.com"
        else:
            who = f"x{k},e{k}@example.com"
        lines.append(f"o{n},{who},2024-01-{n % 28 + 1:02d},{n % 90}.5,USD")
    return "\n".join(lines) + "\n"


# Constant per batch on PostgreSQL (array parameters); SQLite's 999-parameter limit splits
# every bulk statement, so there the count grows with the batch by design.
@pytest.mark.postgres
@pytest.mark.parametrize("size", [200, 2000])
def test_queries_per_batch_do_not_grow_with_the_batch(
    tmp_path, size, django_assert_max_num_queries
):
    # given the customers with an external id and an email, known by email only
    attached = [k for k in range(size // 2) if k % 2 and not k % 5]
    Contact.objects.bulk_create(
        [ContactFactory.build(email=f"e{k}@example.com", external_id=None) for k in attached]
    )
    path = tmp_path / "orders.csv"
    path.write_text(_rows(0, size))

    # when one batch of `size` rows is imported
    with django_assert_max_num_queries(16):
        report = orders_import_file(path, errors_to=io.StringIO(), batch_size=size)

    # then a bounded number of queries, the same for 200 rows as for 2,000
    assert (report.created, report.skipped, report.errors) == (size, 0, 0)
    assert report.contacts_created == size // 2 - len(attached)
    assert Contact.objects.filter(external_id__startswith="x").count() == len(attached)

    # and a second batch, half of it already stored, stays within the same bound
    path.write_text(_rows(size // 2, size))
    with django_assert_max_num_queries(16):
        report = orders_import_file(path, errors_to=io.StringIO(), batch_size=size)
    assert (report.created, report.skipped) == (size // 2, size // 2)


@pytest.mark.postgres
def test_a_full_default_batch_of_new_customers(tmp_path, django_assert_max_num_queries):
    # 5,000 rows (the default batch), each a new customer
    path = tmp_path / "orders.csv"
    path.write_text(
        "\n".join([HEADER, *(f"o{n},c{n},,2024-01-01,1,USD" for n in range(5000))]) + "\n"
    )
    with django_assert_max_num_queries(16):
        report = orders_import_file(path, errors_to=io.StringIO())
    assert (report.created, report.contacts_created) == (5000, 5000)
