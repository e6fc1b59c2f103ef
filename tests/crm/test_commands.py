"""Operator commands: create_api_key, import_contacts (progress and per-row errors),
import_products, recompute_stages, demo (idempotent)."""

from io import StringIO

import pytest
from django.core.management import call_command

from crm.models import ApiKey, Contact, Event, Order, Product
from crm.services.api_keys import api_key_authenticate

pytestmark = pytest.mark.django_db


def run(*args) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_create_api_key_prints_the_key_once_on_the_last_line():
    out, _err = run("create_api_key", "shop", "--scope", "write")
    raw = out.strip().splitlines()[-1]
    key = api_key_authenticate(raw)
    assert key is not None and key.scope == "write" and key.name == "shop"
    assert raw not in ApiKey.objects.get().key_hash


def test_import_contacts_shows_progress_and_reports_bad_rows(tmp_path, monkeypatch):
    monkeypatch.setattr("crm.services.imports.CHUNK", 50)
    rows = ["email,first_name,birthday,tags,plan"]
    rows += [f"user{n}@example.com,User{n},1990-01-{n % 28 + 1:02d},club,gold" for n in range(180)]
    rows += ["nope,Bad,,,", "ok@example.com,Ok,31/12/1990,,"]
    path = tmp_path / "contacts.csv"
    path.write_text("\n".join(rows) + "\n")
    out, err = run("import_contacts", str(path))
    assert "182/182 rows (100.0%)" in err
    assert "50/182" in err  # progress along the way
    assert "line 182: email: 'nope' is not a valid email address." in out
    assert "line 183: birthday:" in out
    assert "180 created, 0 updated, 2 rows with errors, of 182 rows." in out
    assert Contact.objects.filter(attributes__plan="gold").count() == 180
    # running it again updates instead of duplicating
    out, _ = run("import_contacts", str(path))
    assert "0 created, 180 updated" in out


def test_import_products(tmp_path):
    path = tmp_path / "catalog.csv"
    path.write_text(
        "product_id,name,price,currency,in_stock\nP1,Mug,12.5,USD,yes\nP2,Cup,abc,USD,no\n"
    )
    out, _ = run("import_products", str(path))
    assert "1 created" in out and "line 3: price" in out
    assert Product.objects.get().in_stock is True


def test_demo_is_idempotent():
    out, _err = run("demo", "--contacts", "120")
    assert "login: admin / keepers-demo" in out
    counts = (Contact.objects.count(), Order.objects.count(), Event.objects.count())
    assert counts[0] == 120 and counts[1] > 50 and counts[2] > 200
    stages = set(Contact.objects.values_list("stage", flat=True))
    assert stages >= {"subscriber", "first_time", "repeat", "loyal", "at_risk", "lapsed"}
    out, err = run("demo", "--contacts", "120")
    assert "already there" in err
    assert (Contact.objects.count(), Order.objects.count(), Event.objects.count()) == counts


def test_recompute_stages_command():
    out, _ = run("recompute_stages")
    assert "contacts changed stage" in out
