"""`manage.py demo --catalog-only`: the demo shop's products on an empty database, with
nothing else, the same as the full demo's."""

import io

import pytest
from django.core.management import call_command

from crm.models import Contact, Order, Product

pytestmark = pytest.mark.django_db


def test_the_catalog_alone_and_again():
    out = io.StringIO()
    call_command("demo", "--catalog-only", stdout=out)
    count = Product.objects.count()
    assert count > 10 and f"{count} demo products" in out.getvalue()
    assert not Contact.objects.exists() and not Order.objects.exists()

    call_command("demo", "--catalog-only", stdout=io.StringIO())
    assert Product.objects.count() == count  # upserted, not doubled
    first = Product.objects.order_by("product_id").first()
    assert first.product_id == "SKU-001" and first.image_url.startswith("https://")
