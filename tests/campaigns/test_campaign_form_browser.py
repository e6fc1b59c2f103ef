"""The campaign form's kinds forms in headless Chromium, under the admin's CSP: a trigger
kind and a goal chosen in the form are saved, and an invalid value comes back on its
input."""

import json

import pytest
from playwright.sync_api import expect

from campaigns.models import Campaign, EmailTemplate
from crm.models import Segment

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

STEPS = [{"id": "hello", "type": "send_email", "config": {"template": "hello"}}]


def open_add_page(page, live_server, django_user_model):
    django_user_model.objects.create_superuser("boss", "boss@example.com", "pw-for-tests")
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{live_server.url}/admin/login/?next=/admin/campaigns/campaign/add/")
    page.fill("#id_username", "boss")
    page.fill("#id_password", "pw-for-tests")
    page.click("input[type=submit]")
    page.fill("#id_name", "Chosen in the form")
    # the steps as the journey builder's advanced view takes them (its textarea is folded)
    page.locator("#id_steps").evaluate(
        "(area, steps) => { area.value = steps; area.dispatchEvent(new Event('change')); }",
        json.dumps(STEPS),
    )


def test_a_trigger_kind_and_a_goal_are_chosen_and_saved(
    live_server, browser_page, django_user_model
):
    EmailTemplate.objects.create(name="hello", subject="Hello", html_body="<p>Hi</p>")
    readers = Segment.objects.create(name="Newsletter readers")
    page = browser_page
    open_add_page(page, live_server, django_user_model)

    trigger = page.locator('[data-kind-form][data-name="trigger"]')
    expect(trigger.locator("textarea")).to_be_hidden()  # the JSON is the advanced view
    trigger.get_by_label("Kind").select_option(label="Joins a segment")
    trigger.get_by_label("Segment").select_option(label="Newsletter readers")

    goals = page.locator('[data-kind-form][data-name="goals"]')
    goals.get_by_role("button", name="Add a goal").click()
    goals.get_by_label("Event", exact=True).fill("Order Completed")
    goals.get_by_label("Same as the trigger's").fill("cart")

    exits = page.locator('[data-kind-form][data-name="exits"]')
    exits.get_by_role("button", name="Add an exit").click()
    exits.get_by_label("Kind").select_option(label="Lifecycle stage changes")
    exits.get_by_label("To stage").select_option(label="Lapsed")

    days = page.locator(".field-reentry_days")
    expect(days).to_be_hidden()  # only "once every N days" reads it
    page.select_option("#id_reentry", "once_per_n_days")
    expect(days).to_be_visible()

    # the advanced view shows what the form holds
    trigger.get_by_label("Edit as JSON (advanced)").check()
    assert json.loads(trigger.locator("textarea").input_value()) == {
        "type": "segment_entered",
        "segment": readers.pk,
    }
    trigger.get_by_label("Edit as JSON (advanced)").uncheck()

    page.click("input[name=_save]")
    expect(page.locator(".messagelist")).to_contain_text("was added successfully")
    campaign = Campaign.objects.get(name="Chosen in the form")
    assert campaign.trigger == {"type": "segment_entered", "segment": readers.pk}
    assert campaign.goals == [{"event": "Order Completed", "match": "cart"}]
    assert campaign.exits == [{"type": "stage_changed", "to": "lapsed"}]


def test_an_invalid_value_is_shown_on_its_input(live_server, browser_page, django_user_model):
    EmailTemplate.objects.create(name="hello", subject="Hello", html_body="<p>Hi</p>")
    page = browser_page
    open_add_page(page, live_server, django_user_model)
    trigger = page.locator('[data-kind-form][data-name="trigger"]')
    trigger.get_by_label("Kind").select_option(label="A yearly date")
    trigger.get_by_label("Date", exact=True).fill("wedding day")

    page.click("input[name=_save]")

    field = page.locator('[data-kind-form][data-name="trigger"] [data-path="trigger.field"]')
    expect(field.locator(".kf-error")).to_contain_text("field is birthday, created_at")
    expect(field.locator("input")).to_have_attribute("aria-invalid", "true")
    expect(field.locator("input")).to_have_value("wedding day")  # as typed
    assert not Campaign.objects.exists()


def test_a_field_appears_when_another_calls_for_it(live_server, browser_page, django_user_model):
    EmailTemplate.objects.create(name="hello", subject="Hello", html_body="<p>Hi</p>")
    page = browser_page
    open_add_page(page, live_server, django_user_model)
    trigger = page.locator('[data-kind-form][data-name="trigger"]')
    trigger.get_by_label("Kind").select_option(label="A product is back or cheaper")
    lately = trigger.get_by_label("“Lately” means within (days)")
    expect(lately).to_have_count(0)  # those who asked need no window

    trigger.get_by_label("Who hears about it").select_option(label="Both")
    expect(lately).to_have_value("30")  # its default, once it applies
    lately.fill("14")
    page.click("input[name=_save]")

    expect(page.locator(".messagelist")).to_contain_text("was added successfully")
    assert Campaign.objects.get().trigger == {
        "type": "product_event",
        "event": "Product Restocked",
        "audience": "both",
        "days": 14,
    }
