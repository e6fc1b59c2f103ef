"""The journey builder in headless Chromium: a marketer builds the abandoned-cart escalation
by clicking, saves, publishes, and watches an enrolment's counts appear on the nodes; and
the side panel has a form for every registered step type (no per-kind JavaScript)."""

from __future__ import annotations

import json
import os
import re
from datetime import timedelta

import pytest
import time_machine
from playwright.sync_api import expect

from campaigns.models import Campaign, EmailTemplate, Enrollment, Message, StepRun
from campaigns.services.definitions import campaign_publish
from campaigns.services.triggers import enrollment_start
from campaigns.steps import REGISTRY
from crm.kinds import KINDS
from crm.models import Contact
from crm.rules import compile_rules
from crm.services.contacts import contact_create
from tests.campaigns.conftest import T0, shopper, track
from tests.campaigns.test_step_kinds import new_config, shown

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# KEEPERS_BUILDER_SCREENSHOT=docs/journey-builder.png saves the built journey's picture
SCREENSHOT = os.environ.get("KEEPERS_BUILDER_SCREENSHOT", "")


@pytest.fixture
def marketer(marketer_page):
    """The marketer (tests/conftest.py) on a new campaign's page."""
    page = marketer_page
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(f"{page.base}/admin/campaigns/campaign/add/")
    expect(page.locator("#id_name")).to_be_visible()
    return page


def add_step(page, after: str, kind: str) -> None:
    """Click the + on a branch (its label names it), then the kind in the palette."""
    page.get_by_role("button", name=after).click()
    page.locator(f'.kpj-palette .kpj-choice[data-kind="{kind}"]').click()


def field(page, name: str):
    return page.locator(f'.kpj-panel [data-field="{name}"]')


def test_a_marketer_builds_the_abandoned_cart_escalation_by_clicking(marketer, run, settings):
    page = marketer
    for name, subject in [
        ("cart reminder", "You left something behind"),
        ("cart coupon", "10% off your cart: {{ results.coupon }}"),
        ("cart last call", "Your cart is about to expire"),
    ]:
        EmailTemplate.objects.create(name=name, subject=subject, html_body="<p>Hi</p>")
    page.reload()
    page.fill("#id_name", "Abandoned cart escalation")
    trigger = page.locator('[data-kind-form][data-name="trigger"]')  # the forms, no JSON
    trigger.get_by_label("Kind").select_option(label="An event happens")
    trigger.get_by_label("Event", exact=True).fill("Checkout Started")
    goals = page.locator('[data-kind-form][data-name="goals"]')
    goals.get_by_role("button", name="Add a goal").click()
    goals.get_by_label("Event", exact=True).fill("Order Completed")
    goals.get_by_label("Same as the trigger's").fill("cart_id")
    expect(page.locator(".kpj-empty")).to_contain_text("Start with a step")

    page.get_by_role("button", name="Add the first step").click()
    page.locator('.kpj-palette .kpj-choice[data-kind="wait"]').click()  # 1 hour by default
    expect(field(page, "duration").locator("input")).to_have_value("1")
    field(page, "name").locator("input").fill("Wait an hour")
    add_step(page, "Add a step on “Then” after Wait an hour", "send_email")
    field(page, "template").locator("select").select_option("cart reminder")
    add_step(page, "Add a step on “Then” after send_email-1", "wait")
    field(page, "duration").locator("input").fill("1")
    field(page, "duration").locator("select").select_option("days")
    add_step(page, "Add a step on “Then” after wait-2", "random_split")
    expect(field(page, "paths").locator("fieldset")).to_have_count(2)  # A and B, 50/50
    add_step(page, "Add a step on “A” after random_split-1", "grant")
    expect(field(page, "reward").locator("select")).to_have_value("coupon")
    field(page, "value").locator("input").fill("15")
    add_step(page, "Add a step on “Then” after grant-1", "send_email")
    field(page, "template").locator("select").select_option("cart coupon")
    add_step(page, "Add a step on “B” after random_split-1", "send_email")
    field(page, "template").locator("select").select_option("cart last call")
    expect(page.locator("#kp-journey")).to_have_attribute("data-state", "valid")
    node = page.locator('.kpj-node[data-step="send_email-1"]')
    expect(node).to_contain_text("You left something behind")  # the template's subject
    expect(page.locator('.kpj-node[data-step="wait-2"]')).to_contain_text("1 day")

    # a wrong value is shown on its node and field, with the server's message
    page.locator('.kpj-node[data-step="wait-2"]').press("Enter")
    field(page, "duration").locator("input").fill("0")
    expect(page.locator("#kp-journey")).to_have_attribute("data-state", "invalid")
    expect(page.locator('.kpj-node[data-step="wait-2"] .kpj-error')).to_contain_text("positive")
    expect(field(page, "duration").locator(".errorlist")).to_be_visible()
    field(page, "duration").locator("input").fill("1")
    expect(page.locator("#kp-journey")).to_have_attribute("data-state", "valid")

    page.click("input[name=_continue]")
    campaign = Campaign.objects.get(name="Abandoned cart escalation")
    steps = {s["id"]: s for s in campaign.steps}
    assert campaign.steps[0]["id"] == "wait-1"
    assert steps["wait-1"] == {
        "id": "wait-1",
        "type": "wait",
        "config": {"hours": 1},
        "name": "Wait an hour",
        "next": "send_email-1",
    }
    assert steps["send_email-1"]["config"] == {"template": "cart reminder"}
    assert steps["wait-2"]["config"] == {"days": 1}
    assert steps["random_split-1"]["config"]["paths"] == [
        {"name": "A", "weight": 50, "next": "grant-1"},
        {"name": "B", "weight": 50, "next": "send_email-3"},
    ]
    assert steps["grant-1"]["config"]["reward"] == "coupon"
    assert steps["grant-1"]["next"] == "send_email-2"

    # publish with the admin action
    page.goto(page.url.split("/admin/")[0] + "/admin/campaigns/campaign/")
    page.locator(f'input[name=_selected_action][value="{campaign.pk}"]').check()
    page.select_option("select[name=action]", "publish")
    page.click("button[name=index]")
    expect(page.locator(".messagelist")).to_contain_text("version 1 is live")
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.ACTIVE

    page.goto(page.url.split("/admin/")[0] + f"/admin/campaigns/campaign/{campaign.pk}/change/")
    expect(page.locator('.kpj-node[data-step="wait-1"] .kpj-counts')).to_be_empty()
    with time_machine.travel(T0, tick=False) as clock:
        shopper("cart@example.com")
        track("cart@example.com", "Checkout Started", T0, "co-1", cart_id="c-1")
        clock.shift(timedelta(minutes=2))
        run()  # enrolled, through the first wait
        clock.shift(timedelta(hours=1))
        run()  # the reminder goes out
    enrollment = Enrollment.objects.get()
    assert enrollment.current_step == "random_split-1"  # due there after the day's wait
    assert Message.objects.get().step_id == "send_email-1"
    # the page polls its counts: no reload
    expect(page.locator('.kpj-node[data-step="wait-1"] [data-figure=passed]')).to_have_text(
        "passed 1", timeout=15_000
    )
    expect(page.locator('.kpj-node[data-step="send_email-1"] [data-figure=sent]')).to_have_text(
        "sent 1"
    )
    expect(page.locator('.kpj-node[data-step="wait-2"] [data-figure=passed]')).to_have_text(
        "passed 1"
    )
    expect(
        page.locator('.kpj-node[data-step="random_split-1"] [data-figure=waiting]')
    ).to_have_text("waiting 1")
    if SCREENSHOT:
        page.locator("#toggle-nav-sidebar").click()
        page.locator('.kpj-node[data-step="random_split-1"]').click()
        page.locator(".kpj-goals").evaluate("e => e.scrollIntoView()")
        page.screenshot(path=SCREENSHOT)


def test_the_side_panel_has_a_form_for_every_registered_step_type(marketer):
    page = marketer
    EmailTemplate.objects.create(name="hello", subject="Hello", html_body="<p>Hi</p>")
    page.reload()
    page.get_by_role("button", name="Add the first step").click()
    for name in REGISTRY:  # the palette offers every type
        expect(page.locator(f'.kpj-palette .kpj-choice[data-kind="{name}"]')).to_have_count(1)
    page.keyboard.press("Escape")
    for name in REGISTRY:
        kind = KINDS["step"][name]
        config = new_config(kind)
        steps = [{"id": "only", "type": name, "config": config}]
        page.locator("#id_steps").evaluate(
            "(area, steps) => { area.value = steps; area.dispatchEvent(new Event('change')); }",
            json.dumps(steps),
        )
        node = page.locator('.kpj-node[data-step="only"]')
        expect(node).to_contain_text(str(kind.label))
        node.focus()
        node.press("Enter")
        panel = page.locator(".kpj-panel")
        expect(panel.locator(".kpj-panel-title")).to_have_text(str(kind.label))
        for described in kind.fields:
            if shown(described, config):
                expect(panel.locator(f'[data-field="{described.name}"]')).to_have_count(1)
        for key, label in kind.branches:
            expect(panel.locator(f'[data-field="{key}"] label')).to_have_text(str(label))
        expect(page.locator("#kp-journey")).to_have_attribute("data-state", "valid")
    # Delete on a focused node removes it, after the confirmation
    page.locator('.kpj-node[data-step="only"]').press("Delete")
    expect(page.locator(".kpj-node[data-step]")).to_have_count(0)
    assert re.search(r"^\[\]$", page.locator("#id_steps").input_value().strip())

    # an unreachable step is marked; reconnecting a branch in the panel fixes it
    steps = [
        {"id": "a", "type": "wait", "config": {"hours": 1}, "next": "b"},
        {"id": "b", "type": "send_email", "config": {"template": "hello"}},
        {"id": "c", "type": "exit", "config": {}},
    ]
    page.locator("#id_steps").evaluate(
        "(area, steps) => { area.value = steps; area.dispatchEvent(new Event('change')); }",
        json.dumps(steps),
    )
    expect(page.locator('.kpj-node[data-step="c"] .kpj-error')).to_contain_text("cannot be reached")
    page.locator('.kpj-node[data-step="b"]').click()
    page.locator('.kpj-panel [data-field="next"] select').select_option("c")
    expect(page.locator("#kp-journey")).to_have_attribute("data-state", "valid")
    assert json.loads(page.locator("#id_steps").input_value())[1]["next"] == "c"


def test_a_condition_step_matches_a_rule_built_by_clicking_in_the_panel(marketer, run):
    """The condition "matches a rule" is edited with the segment rule builder inside the
    side panel (tag is vip), its JSON under "Advanced"; the saved step holds the rule, and
    once published it says yes to the contact with the tag and no to the other."""
    vip = contact_create(email="vip@example.com", tags=["vip"])
    other = contact_create(email="other@example.com", tags=["new"])
    page = marketer
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.reload()
    page.fill("#id_name", "VIPs only")
    trigger = page.locator('[data-kind-form][data-name="trigger"]')
    trigger.get_by_label("Kind").select_option(label="An event happens")
    trigger.get_by_label("Event", exact=True).fill("Checkout Started")

    page.get_by_role("button", name="Add the first step").click()
    page.locator('.kpj-palette .kpj-choice[data-kind="condition"]').click()
    field(page, "condition").locator("select").first.select_option("rule")
    rule = field(page, "rule")
    expect(rule.locator(".rb-condition")).to_have_count(1)  # the kind's default, as a form
    rule.locator(".rb-condition").first.get_by_label("Condition", exact=True).select_option("tag")
    rule.locator(".rb-condition").first.get_by_label("Operator", exact=True).select_option("has")
    rule.locator(".rb-condition").first.get_by_label("Tag", exact=True).select_option("vip")
    built = {"all": [{"type": "tag", "op": "has", "value": "vip"}]}
    rule.locator("summary").click()  # the advanced view: the same rule, as JSON
    expect(rule.locator("textarea")).to_be_visible()
    assert json.loads(rule.locator("textarea").input_value()) == built
    expect(page.locator("#kp-journey")).to_have_attribute("data-state", "valid")
    expect(page.locator('.kpj-node[data-step="condition-1"]')).to_contain_text("Tag has vip")

    page.click("input[name=_continue]")
    expect(page.locator(".messagelist .success")).to_be_visible()
    campaign = Campaign.objects.get(name="VIPs only")
    assert campaign.steps[0]["type"] == "condition"
    assert campaign.steps[0]["config"] == {"kind": "rule", "rule": built}
    assert list(Contact.objects.filter(compile_rules(built).q)) == [vip]

    # the condition step runs: yes for the VIP, no for the other
    campaign_publish(campaign=campaign)
    campaign.refresh_from_db()
    for contact in (vip, other):
        enrollment_start(campaign=campaign, contact=contact, key=contact.email)
    run()
    decisions = dict(
        StepRun.objects.filter(step_id="condition-1").values_list("enrollment__contact", "decision")
    )
    assert decisions == {vip.pk: "yes", other.pk: "no"}
    # the page opens again with the rule as a form
    page.locator('.kpj-node[data-step="condition-1"]').click()
    expect(field(page, "rule").locator(".rb-condition")).to_have_count(1)
    expect(field(page, "rule").get_by_label("Tag", exact=True)).to_have_value("vip")
    assert not errors


def test_a_split_path_s_rule_is_built_with_the_rule_builder_too(marketer):
    contact_create(email="vip@example.com", tags=["vip"])
    page = marketer
    page.reload()
    page.get_by_role("button", name="Add the first step").click()
    page.locator('.kpj-palette .kpj-choice[data-kind="split"]').click()
    path = page.locator(".kpj-panel fieldset.kpj-item").first
    path.locator('[data-field="condition"] select').first.select_option("rule")
    rule = path.locator('[data-field="rule"]')
    rule.locator(".rb-condition").first.get_by_label("Condition", exact=True).select_option("tag")
    rule.locator(".rb-condition").first.get_by_label("Tag", exact=True).select_option("vip")
    expect(page.locator("#kp-journey")).to_have_attribute("data-state", "valid")
    steps = json.loads(page.locator("#id_steps").input_value())
    assert steps[0]["config"]["paths"][0]["condition"] == {
        "kind": "rule",
        "rule": {"all": [{"type": "tag", "op": "has", "value": "vip"}]},
    }


def test_a_condition_node_says_its_rule_in_words_truncated_with_the_whole_in_its_title(marketer):
    """The node shows the condition as a sentence made from the kinds' labels and choices
    (never the rule's JSON), cut to the node's width, the whole sentence in its title; in
    Japanese with the page's words."""
    page = marketer
    stage = {"type": "field", "field": "stage", "op": "in", "value": ["repeat", "loyal"]}
    ordered = {"type": "event", "name": "Order Completed", "op": "at_least", "count": 1, "days": 30}
    steps = [
        {"id": "a", "type": "condition", "config": {"kind": "rule", "rule": {"all": [stage]}}},
        {"id": "b", "type": "condition", "config": {"kind": "rule", "rule": {"all": [ordered]}}},
        {
            "id": "c",
            "type": "condition",
            "config": {"kind": "rule", "rule": {"all": [stage, {"not": ordered}]}},
        },
        {"id": "d", "type": "condition", "config": {"kind": "engaged", "step": "a"}},
        {
            "id": "e",
            "type": "condition",
            "config": {
                "kind": "rule",
                "rule": {"any": [{"type": "order", "measure": "count", "op": "gte", "value": 2}]},
            },
        },
    ]
    for step, onward in zip(steps, ["b", "c", "d", "e", None], strict=True):
        step.update(yes=onward, no=None)

    def draw():
        page.locator("#id_steps").evaluate(
            "(area, steps) => { area.value = steps; area.dispatchEvent(new Event('change')); }",
            json.dumps(steps),
        )

    def summary(step: str):
        return page.locator(f'.kpj-node[data-step="{step}"] .kpj-summary')

    draw()
    expect(summary("a")).to_have_text("Lifecycle stage is one of Repeat customer, Loyal")
    expect(summary("b")).to_have_text("Event Order Completed at least 1 times in the last 30 days")
    whole = (
        "all of 2 conditions: Lifecycle stage is one of Repeat customer, Loyal; not: Event Order "
        "Completed at least 1 times in the last 30 days"
    )
    expect(summary("c")).to_have_text(whole)
    expect(summary("c")).to_have_attribute("title", whole)
    # cut to the node's width with an ellipsis, not wrapped or spilling over the edge
    assert summary("c").evaluate("e => e.scrollWidth > e.clientWidth")
    assert summary("c").evaluate("e => getComputedStyle(e).textOverflow") == "ellipsis"
    expect(summary("d")).to_have_text("Opened or clicked an email a opened it")
    # a choice that names what is compared stands for the kind; the sentence starts upper
    expect(summary("e")).to_have_text("Number of orders at least 2")
    for step in "abcde":
        assert "{" not in summary(step).inner_text()

    page.set_extra_http_headers({"Accept-Language": "ja"})
    page.reload()
    draw()
    expect(summary("c")).to_contain_text("2 件の条件すべて: ")
    expect(summary("a")).to_contain_text("がいずれか")


def test_a_rule_s_error_from_the_server_is_shown_on_the_row_it_names(marketer):
    """The server names the rule node in its error (steps[0].config.rule.all[1].count): the
    message is on that row of the rule builder, not on the whole condition field; fixing
    the row clears it."""
    page = marketer
    stage = {"type": "field", "field": "stage", "op": "in", "value": ["repeat"]}
    never = {"type": "event", "name": "Order Completed", "op": "at_least", "count": 0}
    steps = [
        {
            "id": "vip",
            "type": "condition",
            "config": {"kind": "rule", "rule": {"all": [stage, never]}},
            "yes": None,
            "no": None,
        }
    ]
    page.locator("#id_steps").evaluate(
        "(area, steps) => { area.value = steps; area.dispatchEvent(new Event('change')); }",
        json.dumps(steps),
    )
    expect(page.locator("#kp-journey")).to_have_attribute("data-state", "invalid")
    page.locator('.kpj-node[data-step="vip"]').click()
    rows = field(page, "rule").locator(".rb-condition")
    expect(rows).to_have_count(2)
    expect(rows.nth(1)).to_have_class(re.compile(r"\brb-error\b"))
    expect(rows.nth(1).locator(".errorlist")).to_be_visible()
    expect(rows.nth(1).get_by_label("Times", exact=True)).to_have_attribute("aria-invalid", "true")
    expect(rows.nth(0).locator(".errorlist")).to_have_count(0)
    expect(rows.nth(0)).not_to_have_class(re.compile(r"\brb-error\b"))
    # not repeated on the whole condition field
    expect(field(page, "condition")).not_to_have_class(re.compile(r"kpj-field-invalid"))
    expect(page.locator('.kpj-panel [data-field="condition"] > .errorlist')).to_have_count(0)

    rows.nth(1).get_by_label("Times", exact=True).fill("1")
    expect(page.locator("#kp-journey")).to_have_attribute("data-state", "valid")
    expect(field(page, "rule").locator(".rb-error")).to_have_count(0)
    expect(field(page, "rule").locator(".errorlist")).to_have_count(0)


def test_an_error_on_the_condition_without_a_rule_row_stays_on_the_field(marketer):
    page = marketer
    steps = [
        {
            "id": "plan",
            "type": "condition",
            "config": {"kind": "attribute", "key": "plan", "op": "in", "value": []},
            "yes": None,
            "no": None,
        }
    ]
    page.locator("#id_steps").evaluate(
        "(area, steps) => { area.value = steps; area.dispatchEvent(new Event('change')); }",
        json.dumps(steps),
    )
    expect(page.locator("#kp-journey")).to_have_attribute("data-state", "invalid")
    page.locator('.kpj-node[data-step="plan"]').click()
    expect(page.locator('.kpj-panel [data-field="condition"] > .errorlist')).to_be_visible()


def test_a_contact_field_condition_takes_one_of_a_list_typed_one_a_line(marketer):
    """ "A contact field" offers "one of" / "none of" from its description; the values are
    typed one a line (no JSON), the value typed for "equal to" carried over."""
    page = marketer
    page.get_by_role("button", name="Add the first step").click()
    page.locator('.kpj-palette .kpj-choice[data-kind="condition"]').click()
    condition = field(page, "condition")
    condition.locator("select").first.select_option("attribute")
    condition.locator('[data-field="key"] input').fill("plan")
    condition.locator('[data-field="value"] input').fill("gold")
    condition.locator('[data-field="op"] select').select_option("in")
    values = condition.locator('[data-field="value"] textarea')
    expect(values).to_have_value("gold")  # carried over as the first line
    values.fill("gold\nsilver\n")
    expect(page.locator("#kp-journey")).to_have_attribute("data-state", "valid")
    steps = json.loads(page.locator("#id_steps").input_value())
    assert steps[0]["config"] == {
        "kind": "attribute",
        "key": "plan",
        "op": "in",
        "value": ["gold", "silver"],
    }
    summary = page.locator('.kpj-node[data-step="condition-1"] .kpj-summary')
    expect(summary).to_have_text("A contact field plan one of gold, silver")
    condition.locator('[data-field="op"] select').select_option("not_in")
    expect(summary).to_have_text("A contact field plan none of gold, silver")
    expect(page.locator("#kp-journey")).to_have_attribute("data-state", "valid")
    # back to "equal to": the first value, as text
    condition.locator('[data-field="op"] select').select_option("eq")
    expect(condition.locator('[data-field="value"] input')).to_have_value("gold")
    expect(page.locator("#kp-journey")).to_have_attribute("data-state", "valid")


def test_a_split_path_s_rule_error_is_shown_on_its_row_too(marketer):
    page = marketer
    never = {"type": "event", "name": "Order Completed", "op": "at_least", "count": 0}
    stage = {"type": "field", "field": "stage", "op": "in", "value": ["repeat"]}
    good = {"name": "A", "condition": {"kind": "rule", "rule": {"all": [stage]}}}
    bad = {"name": "B", "condition": {"kind": "rule", "rule": {"any": [stage, never]}}}
    steps = [{"id": "which", "type": "split", "config": {"paths": [good, bad]}}]
    page.locator("#id_steps").evaluate(
        "(area, steps) => { area.value = steps; area.dispatchEvent(new Event('change')); }",
        json.dumps(steps),
    )
    expect(page.locator("#kp-journey")).to_have_attribute("data-state", "invalid")
    page.locator('.kpj-node[data-step="which"]').click()
    paths = page.locator(".kpj-panel fieldset.kpj-item")
    expect(paths.nth(1).locator(".rb-condition").nth(1)).to_have_class(re.compile(r"\brb-error\b"))
    expect(page.locator(".kpj-panel .rb-error")).to_have_count(1)  # that row only
    expect(paths.nth(1).locator(".rb-condition").nth(1).locator(".errorlist")).to_be_visible()
    expect(page.locator('.kpj-panel [data-field="paths"] > .errorlist')).to_have_count(0)
