"""Staff build a campaign with the steps editor in headless Chromium."""

import json

import pytest

from campaigns.models import Campaign, EmailTemplate

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_build_a_campaign_with_the_steps_editor(live_server, browser_page, django_user_model):
    django_user_model.objects.create_superuser("boss", "boss@example.com", "pw-for-tests")
    EmailTemplate.objects.create(name="hello", subject="Hello", html_body="<p>Hi</p>")
    page = browser_page
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{live_server.url}/admin/login/?next=/admin/campaigns/campaign/add/")
    page.fill("#id_username", "boss")
    page.fill("#id_password", "pw-for-tests")
    page.click("input[type=submit]")
    page.fill("#id_name", "Built in the browser")
    trigger = page.locator('[data-kind-form][data-name="trigger"]')  # crm/kind_form.js
    trigger.get_by_label("Kind").select_option(label="An event happens")
    trigger.get_by_label("Event", exact=True).fill("Signed Up")
    page.fill("#id_steps", "[]")
    page.dispatch_event("#id_steps", "change")
    add = page.get_by_role("button", name="+ Add a step")
    add.click()  # step-1: a wait
    page.wait_for_selector(".se-step")
    add.click()  # step-2, linked from step-1
    page.wait_for_selector(".se-step >> nth=1")
    second = page.locator(".se-step").nth(1)
    second.get_by_label("Type").select_option("send_email")
    second = page.locator(".se-step").nth(1)
    second.get_by_label("Settings").fill(json.dumps({"template": "hello"}))
    second.get_by_label("Settings").dispatch_event("change")
    page.click("input[name=_save]")
    campaign = Campaign.objects.get(name="Built in the browser")
    assert [(s["id"], s["type"]) for s in campaign.steps] == [
        ("step-1", "wait"),
        ("step-2", "send_email"),
    ]
    assert campaign.steps[0]["next"] == "step-2"
    assert campaign.steps[1]["config"] == {"template": "hello"}
    assert campaign.trigger == {"type": "event", "name": "Signed Up"}
