"""Marketing spend for CAC: by API (batch, per-item errors, replace by month) and by CSV
in the admin."""

from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from crm.models import MarketingSpend

pytestmark = pytest.mark.django_db


def test_spend_is_entered_by_api_and_a_month_again_replaces_it(api):
    response = api.post(
        "/api/v1/marketing-spend/",
        [
            {"channel": "paid_search", "month": "2026-03", "amount": "1800", "currency": "USD"},
            {"channel": "social", "month": "2026-13", "amount": "10", "currency": "USD"},
            {"channel": "social", "month": "2026-03", "amount": "900.50", "currency": "usd"},
        ],
        format="json",
    )
    assert response.status_code in (200, 207), response.json()
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["created", "error", "created"]
    assert results[1]["field"] == "[1].month"

    again = api.post(
        "/api/v1/marketing-spend/",
        {"channel": "paid_search", "month": "2026-03-01", "amount": "2000", "currency": "USD"},
        format="json",
    )
    assert again.json()["status"] == "updated"
    assert MarketingSpend.objects.get(channel="paid_search").amount == Decimal("2000")
    listed = api.get("/api/v1/marketing-spend/?channel=social").json()["results"]
    assert [(s["channel"], s["amount"]) for s in listed] == [("social", "900.50")]


def test_spend_is_imported_from_csv_in_the_admin_with_bad_lines_reported(staff_client):
    upload = SimpleUploadedFile(
        "spend.csv",
        b"channel,month,amount,currency,note\n"
        b"paid_search,2026-01,1500,USD,Google Ads\n"
        b"social,January,300,USD,\n"
        b"email,2026-02,120.5,USD,\n",
    )

    response = staff_client.post("/admin/crm/marketingspend/import/", {"file": upload})

    assert response.status_code == 200
    assert "line 3: month is YYYY-MM" in response.content.decode()
    assert sorted(MarketingSpend.objects.values_list("channel", flat=True)) == [
        "email",
        "paid_search",
    ]
    assert staff_client.get("/admin/crm/marketingspend/").status_code == 200
