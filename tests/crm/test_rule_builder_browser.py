"""The segment rule builder in headless Chromium, as a marketer: it is generated from the
conditions' descriptions (crm/kinds.py), so every registered condition gets a form with no
JavaScript of its own; a rule is built by clicking, counted live and saved; a new segment
saved with the default condition untouched works."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from playwright.sync_api import expect

from crm.kinds import KINDS
from crm.models import Contact, Segment
from crm.rules import CONDITIONS
from crm.services.contacts import contact_create
from crm.services.roles import roles_sync
from crm.services.segment_library import READY_MADE, segments_install_ready_made
from crm.services.segments import segment_save
from loyalty.models import ContactTier, Referral, ReferralCode, Tier
from loyalty.services.ledger import ledger_grant

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
T0 = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)


def sign_in_as_marketer(page, live_server, django_user_model, next_url: str) -> None:
    roles_sync()
    user = django_user_model.objects.create_user("mia", "mia@example.com", "pw-for-tests")
    user.is_staff = True
    user.save()
    user.groups.add(Group.objects.get(name="marketer"))
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{live_server.url}/admin/login/?next={next_url}")
    page.fill("#id_username", "mia")
    page.fill("#id_password", "pw-for-tests")
    page.click("input[type=submit]")
    expect(page).to_have_url(f"{live_server.url}{next_url}")  # the redirect is done


def rules_in(page) -> dict:
    return json.loads(page.locator("#id_rules").input_value())


def condition(page, n: int):
    return page.locator(".rb-condition").nth(n)


def shown_fields(kind, node: dict) -> list[str]:
    """The labels of the fields the builder shows for `node` (the description's `when`)."""

    def current(key):
        if key in node:
            return node[key]
        return next(
            (f.default for f in kind.fields if f.name == key and f.default is not None), None
        )

    return [
        str(f.label)
        for f in kind.fields
        if all(
            any(str(v) == str(current(k)) for v in values) for k, values in (f.when or {}).items()
        )
    ]


def test_the_builder_draws_every_registered_condition_from_its_description(
    live_server, browser_page, django_user_model
):
    Tier.objects.create(name="Gold", rank=1, threshold=Decimal("10"))
    page = browser_page
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    sign_in_as_marketer(page, live_server, django_user_model, "/admin/crm/segment/add/")
    assert set(CONDITIONS) == set(KINDS["segment_condition"])
    for name, kind in KINDS["segment_condition"].items():
        condition(page, 0).get_by_label("Condition", exact=True).select_option(name)
        node = rules_in(page)["all"][0]
        assert node["type"] == name
        labels = condition(page, 0).locator(".rb-field > label, .rb-field legend")
        expect(labels).to_have_text(["Condition", *shown_fields(kind, node)])
        expect(page.locator("#rb-preview .rb-count, #rb-preview .errornote")).to_be_visible()
    assert not errors


def test_a_marketer_builds_a_loyalty_rule_by_clicking_and_its_members_are_right(
    live_server, browser_page, django_user_model
):
    gold = Tier.objects.create(name="Gold", rank=2, threshold=Decimal("100"))
    silver = Tier.objects.create(name="Silver", rank=1, threshold=Decimal("10"))
    people = {n: contact_create(email=f"{n}@example.com") for n in ("ann", "bob", "cy", "di", "ed")}
    for name, tier in (("ann", gold), ("bob", gold), ("di", silver)):
        ContactTier.objects.create(contact=people[name], tier=tier, since=T0, updated_at=T0)
    for name, credit in (("ann", 20), ("bob", 5), ("di", 50)):
        ledger_grant(contact=people[name], unit="USD", amount=credit, reason="gift", key=name)
    code = ReferralCode.objects.create(contact=people["cy"], code="CY234567", created_at=T0)
    Referral.objects.create(referrer=people["cy"], friend=people["ed"], code=code, created_at=T0)

    page = browser_page
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    sign_in_as_marketer(page, live_server, django_user_model, "/admin/crm/segment/add/")
    page.fill("#id_name", "Gold with credit, or referrers")

    # (tier is Gold AND store-credit balance > 10) OR referred at least 1 friend
    page.locator(".rb-group").first.get_by_label("Match").first.select_option("any")
    page.locator(".rb-group").first.locator("> .rb-add .rb-add-group").click()
    inner = page.locator(".rb-group .rb-group")
    inner.locator(".rb-condition").first.get_by_label("Condition", exact=True).select_option("tier")
    inner.locator(".rb-condition").first.get_by_label("Operator", exact=True).select_option("eq")
    inner.locator(".rb-condition").first.get_by_label("Tier").select_option("Gold")
    inner.locator("> .rb-add .rb-add-condition").click()
    balance = inner.locator(".rb-condition").nth(1)
    balance.get_by_label("Condition", exact=True).select_option("loyalty_balance")
    balance = inner.locator(".rb-condition").nth(1)
    balance.get_by_label("Balance").select_option("USD")
    balance.get_by_label("Operator", exact=True).select_option("gt")
    balance.get_by_label("Amount").fill("10")
    referred = condition(page, 0)
    referred.get_by_label("Condition", exact=True).select_option("referral_count")
    condition(page, 0).get_by_label("Operator", exact=True).select_option("gte")
    condition(page, 0).get_by_label("Friends").fill("1")

    assert rules_in(page) == {
        "any": [
            {"type": "referral_count", "op": "gte", "value": 1},
            {
                "all": [
                    {"type": "tier", "op": "eq", "value": "Gold"},
                    {"type": "loyalty_balance", "unit": "USD", "op": "gt", "value": 10},
                ]
            },
        ]
    }
    expect(page.locator("#rb-preview .rb-count strong")).to_have_text("2")
    page.get_by_role("button", name="Count and show a sample").click()
    expect(page.locator("#rb-preview")).to_contain_text("ann@example.com")
    expect(page.locator("#rb-preview")).to_contain_text("cy@example.com")

    page.locator("input[name=_save]").click()
    expect(page.locator(".messagelist .success")).to_be_visible()
    segment = Segment.objects.get(name="Gold with credit, or referrers")
    members = Contact.objects.filter(
        memberships__segment=segment, memberships__exited_at__isnull=True
    )
    assert sorted(members.values_list("email", flat=True)) == ["ann@example.com", "cy@example.com"]
    assert not errors


def test_a_new_segment_saved_with_the_default_condition_untouched_works(
    live_server, browser_page, django_user_model
):
    contact_create(email="new@example.com")
    page = browser_page
    sign_in_as_marketer(page, live_server, django_user_model, "/admin/crm/segment/add/")
    page.fill("#id_name", "Untouched")
    page.locator("input[name=_save]").click()
    expect(page.locator(".messagelist .success")).to_be_visible()
    segment = Segment.objects.get(name="Untouched")
    assert segment.rules == {"all": [KINDS["segment_condition"]["field"].extra["example"]]}


def test_a_hand_written_condition_the_form_cannot_show_is_kept_as_written(
    live_server, browser_page, django_user_model
):
    # "is filled in: false" (no address): the form offers no field for exists' value
    written = {"type": "field", "field": "email", "op": "exists", "value": False}
    segment = segment_save(name="By hand", rules={"all": [written]})
    page = browser_page
    sign_in_as_marketer(
        page, live_server, django_user_model, f"/admin/crm/segment/{segment.pk}/change/"
    )
    expect(condition(page, 0)).to_contain_text("edit it as JSON below")
    page.locator(".rb-add-condition").click()
    assert rules_in(page)["all"][0] == written
    assert len(rules_in(page)["all"]) == 2


def test_every_ready_made_segment_opens_in_the_builder_as_forms(
    live_server, browser_page, django_user_model
):
    segments_install_ready_made(active=False)
    page = browser_page
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    ids = list(Segment.objects.filter(is_template=True).values_list("pk", "rules"))
    assert len(ids) == len(READY_MADE)
    sign_in_as_marketer(page, live_server, django_user_model, "/admin/crm/segment/")
    for pk, rules in ids:
        page.goto(f"{live_server.url}/admin/crm/segment/{pk}/change/")
        expect(page.locator(".rb-condition").first).to_be_visible()
        assert page.locator(".rb-json").count() == 0, rules
        assert rules_in(page) == rules
    assert not errors


def test_a_marketer_builds_an_attribute_in_a_list_of_texts_by_clicking(
    live_server, browser_page, django_user_model
):
    plans = {"ann": "gold", "bob": "silver", "cy": "bronze", "di": None}
    for name, plan in plans.items():
        contact_create(email=f"{name}@example.com", attributes={"plan": plan} if plan else {})
    page = browser_page
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    sign_in_as_marketer(page, live_server, django_user_model, "/admin/crm/segment/add/")
    page.fill("#id_name", "Gold or silver plans")

    # given the example "plan is gold", when "is one of" is chosen, gold is the first tag
    condition(page, 0).get_by_label("Condition", exact=True).select_option("attribute")
    condition(page, 0).get_by_label("Attribute").fill("plan")
    condition(page, 0).get_by_label("Operator", exact=True).select_option("in")
    values = condition(page, 0).get_by_role("textbox", name="Values", exact=True)
    expect(condition(page, 0).locator(".rb-token")).to_have_text(["gold✕"])
    values.fill("silver")
    values.press("Enter")
    values.fill("bronze")
    condition(page, 0).get_by_role("button", name="Add", exact=True).click()
    condition(page, 0).get_by_role("button", name="Remove bronze").click()
    expect(condition(page, 0).locator(".rb-token")).to_have_text(["gold✕", "silver✕"])
    assert rules_in(page) == {
        "all": [{"type": "attribute", "key": "plan", "op": "in", "value": ["gold", "silver"]}]
    }
    expect(page.locator("#rb-preview .rb-count strong")).to_have_text("2")

    page.locator("input[name=_save]").click()
    expect(page.locator(".messagelist .success")).to_be_visible()
    segment = Segment.objects.get(name="Gold or silver plans")
    members = Contact.objects.filter(
        memberships__segment=segment, memberships__exited_at__isnull=True
    )
    assert sorted(members.values_list("email", flat=True)) == ["ann@example.com", "bob@example.com"]

    # and "is none of" keeps the tags, and matches those without the attribute too
    page.goto(f"{live_server.url}/admin/crm/segment/{segment.pk}/change/")
    condition(page, 0).get_by_label("Operator", exact=True).select_option("not_in")
    assert rules_in(page)["all"][0]["value"] == ["gold", "silver"]
    expect(page.locator("#rb-preview .rb-count strong")).to_have_text("2")
    assert not errors
