"""Actions that move money or cannot be undone ask first: the changelist's POST shows a
confirmation page and changes nothing; the confirmed POST (post=yes) runs the action on
the same selection."""

import pytest

from campaigns.models import Campaign
from crm.models import ApiKey, Order
from crm.services.api_keys import api_key_create
from loyalty.services.coupons import coupon_create
from tests.factories import ContactFactory, OrderFactory

pytestmark = pytest.mark.django_db


def ask_then_confirm(client, url, action, pks):
    data = {"action": action, "_selected_action": [str(pk) for pk in pks]}
    asked = client.post(url, data)
    assert asked.status_code == 200 and asked.templates[0].name == (
        "admin/keepers/confirm_action.html"
    )
    page = asked.content.decode()
    assert 'name="post" value="yes"' in page and f'value="{action}"' in page
    return page, lambda: client.post(url, {**data, "post": "yes"}, follow=True)


def test_refund_in_full_asks_before_refunding(staff_client):
    orders = [OrderFactory(contact=ContactFactory()) for _ in range(2)]
    page, confirm = ask_then_confirm(
        staff_client, "/admin/crm/order/", "refund_in_full", [o.pk for o in orders]
    )
    assert "Refund the remaining amount of <strong>2</strong> orders" in page
    assert not Order.objects.filter(status="refunded").exists()

    assert "2 orders refunded." in confirm().content.decode()
    assert Order.objects.filter(status="refunded").count() == 2


def test_revoking_api_keys_asks_first(staff_client):
    key, _ = api_key_create(name="shop", scope="write", created_by=staff_client.user)
    page, confirm = ask_then_confirm(staff_client, "/admin/crm/apikey/", "revoke", [key.pk])
    assert "stops at once" in page
    assert ApiKey.objects.get(pk=key.pk).revoked_at is None
    confirm()
    assert ApiKey.objects.get(pk=key.pk).revoked_at is not None


def test_archiving_a_campaign_asks_first(staff_client):
    campaign = Campaign.objects.create(name="Welcome", trigger={"type": "manual"}, steps=[])
    _, confirm = ask_then_confirm(
        staff_client, "/admin/campaigns/campaign/", "archive", [campaign.pk]
    )
    assert Campaign.objects.get().status != Campaign.Status.ARCHIVED
    confirm()
    assert Campaign.objects.get().status == Campaign.Status.ARCHIVED


def test_switching_coupons_off_asks_first(staff_client):
    coupon = coupon_create(kind="percent", value=10)
    _, confirm = ask_then_confirm(staff_client, "/admin/loyalty/coupon/", "switch_off", [coupon.pk])
    coupon.refresh_from_db()
    assert coupon.active
    confirm()
    coupon.refresh_from_db()
    assert not coupon.active
