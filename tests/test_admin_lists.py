"""The large tables' changelists can be narrowed by date and by what staff ask about:
a date hierarchy on each, and its year drill-down answers."""

import pytest
from django.contrib import admin

from campaigns.models import Enrollment, Message
from crm.models import Event, Order
from loyalty.models import LedgerEntry

pytestmark = pytest.mark.django_db

LARGE = {
    Event: ("occurred_at", "contact"),
    Order: ("ordered_at", "status"),
    Message: ("created_at", "broadcast"),
    Enrollment: ("entered_at", "campaign"),
    LedgerEntry: ("created_at", "type"),
}


@pytest.mark.parametrize("model", LARGE, ids=lambda m: m.__name__)
def test_a_large_table_has_a_date_hierarchy_and_filters(model, staff_client):
    field, a_filter = LARGE[model]
    model_admin = admin.site._registry[model]
    assert model_admin.date_hierarchy == field
    assert a_filter in [f[0] if isinstance(f, tuple) else f for f in model_admin.list_filter]
    opts = model._meta
    answer = staff_client.get(
        f"/admin/{opts.app_label}/{opts.model_name}/", {f"{field}__year": 2026}
    )
    assert answer.status_code == 200


def test_the_settings_a_marketer_edits_say_what_they_do():
    from campaigns.models import Campaign
    from loyalty.models import BonusRule, EarnRule, Tier

    for model, names in [
        (
            Campaign,
            ["entry_segment", "reentry", "reentry_days", "attribution_days", "holdout_percent"],
        ),
        (EarnRule, ["currency", "points_per_unit", "rounding"]),
        (BonusRule, ["kind", "points", "active"]),
        (Tier, ["basis", "threshold"]),
    ]:
        for name in names:
            assert model._meta.get_field(name).help_text, f"{model.__name__}.{name}"
    assert Campaign._meta.get_field("reentry_days").verbose_name == "days before entering again"
