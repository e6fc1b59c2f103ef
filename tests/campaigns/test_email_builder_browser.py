"""The block editor in headless Chromium: a marketer opens Add email template, picks the
MJML format, drags a hero, a product grid and a coupon block onto the canvas (real
drags: the mouse, not GrapesJS' API), puts a merge tag in the hero's text through the
picker in the text toolbar, previews on a phone and back, and saves. The saved MJML holds
the blocks, the merge tag and the footer a marketing template keeps; the page raises no
Content-Security-Policy violation (the `browser_page` fixture fails the test on one)."""

from __future__ import annotations

import re

import mrml
import pytest
from django.utils import translation
from playwright.sync_api import expect

from campaigns.email_blocks import balance, cart_items, footer, header, mjml_document
from campaigns.models import EmailTemplate

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def marketer(marketer_page):
    """Mia, the marketer (tests/conftest.py), on Add email template, the window tall
    enough for the editor."""
    page = marketer_page
    page.set_viewport_size({"width": 1280, "height": 1000})
    page.goto(f"{page.base}/admin/campaigns/emailtemplate/add/")
    expect(page.locator("#id_name")).to_be_visible()
    return page


def drag_block(page, label: str, mark: str) -> None:
    """Drag a block from the blocks panel to the foot of the canvas with the mouse (the
    editor keeps the footer last, so the block lands just above it); wait for its MJML
    (its css-class `mark`) in the textarea."""
    block = page.locator(".gjs-block", has_text=label).first
    block.scroll_into_view_if_needed()  # inside the blocks panel
    page.evaluate("document.querySelector('.kpe-editor').scrollIntoView({block: 'start'})")
    page.evaluate("document.querySelector('.gjs-frame').contentWindow.scrollTo(0, 1e6)")
    block.hover()
    canvas = page.locator(".gjs-frame").bounding_box()  # where it is after the hover's scroll
    page.mouse.down()
    x, y = canvas["x"] + canvas["width"] / 2, canvas["y"] + canvas["height"] - 40
    page.mouse.move(x, y, steps=12)  # dragover on the way, as a hand gives
    page.mouse.move(x + 5, y + 8, steps=4)
    page.mouse.up()
    expect(page.locator("#id_mjml_body")).to_have_value(re.compile(f'css-class="{mark}"'))


@pytest.mark.xfail(
    reason="flaky (issue 17, open): GrapesJS' sorter misses some mouse drags in CI; see the "
    "stop note of 2026-12-07",
    strict=False,
)
def test_a_marketer_builds_an_email_from_blocks_by_dragging(marketer):
    page = marketer
    builder = page.locator("[data-email-builder]")
    expect(builder).to_be_hidden()  # an HTML template has no block editor
    page.fill("#id_name", "Spring newsletter")
    page.fill("#id_subject", "New this spring")
    page.select_option("#id_format", "mjml")  # no reload: the editor appears
    expect(builder).to_have_attribute("data-ready", "true")
    canvas = page.frame_locator(".gjs-frame")
    # a marketing template starts with its footer, which has no delete button
    expect(canvas.locator(".keepers-footer").first).to_be_visible()

    for label, mark in [
        ("Hero", "keepers-hero"),
        ("Product grid", "keepers-products"),
        ("Coupon code", "keepers-coupon"),
    ]:
        drag_block(page, label, mark)
    source = page.locator("#id_mjml_body")
    mjml = source.input_value()
    order = [mjml.index(f'css-class="keepers-{name}"') for name in ("hero", "products", "coupon")]
    assert order == sorted(order)
    assert mjml.index('css-class="keepers-footer"') > order[-1]  # the footer stays last

    # a merge tag from the picker in the text toolbar, at the end of the hero's text
    text = canvas.locator("[data-gjs-type=mj-text]", has_text="Tell your customers")
    text.scroll_into_view_if_needed()
    text.dblclick()
    page.keyboard.press("End")
    picker = page.locator(".gjs-rte-toolbar [data-kpe-merge-tags]")
    expect(picker).to_be_visible()
    picker.select_option(label="First name")
    expect(text).to_contain_text("{{ first_name }}")

    # the footer and its parts cannot be deleted: its text stays after Delete
    footer_text = canvas.locator("[data-gjs-type=mj-text]", has_text="Unsubscribe")
    footer_text.click()
    page.keyboard.press("Delete")
    expect(footer_text).to_be_visible()
    assert page.evaluate(
        "document.querySelector('[data-email-builder]').kpEmailBuilder.editor.getWrapper()"
        ".findType('mj-section').filter((c) => c.getAttributes()['css-class'] === "
        "'keepers-footer').map((c) => c.get('removable'))"
    ) == [False]

    page.get_by_role("button", name="Mobile (375 px)").click()
    expect(page.locator(".gjs-frame")).to_have_css("width", "375px")
    page.get_by_role("button", name="Desktop").click()
    expect(page.locator(".gjs-frame")).not_to_have_css("width", "375px")

    page.click("input[name=_continue]")
    expect(page.locator(".messagelist .success")).to_be_visible()
    template = EmailTemplate.objects.get(name="Spring newsletter")
    assert template.format == "mjml"
    for mark in ("keepers-hero", "keepers-products", "keepers-coupon", "keepers-footer"):
        assert f'css-class="{mark}"' in template.mjml_body
    assert "{% recommendations 4 as picks %}" in template.mjml_body  # the grid's tags kept
    assert "Tell your customers what is new in a sentence or two.{{ first_name }}" in (
        template.mjml_body
    )
    assert "<mj-attributes>" in template.mjml_body  # a new template has the shop's look
    assert "{{ results.coupon }}" in template.html_body  # compiled at save, tags kept

    # reopened, the editor draws the saved blocks again
    expect(builder).to_have_attribute("data-ready", "true")
    expect(canvas.locator("[data-gjs-type=mj-text]", has_text="{{ first_name }}")).to_be_visible()


def test_a_saved_template_goes_through_the_editor_unchanged_in_japanese(marketer):
    """A block template from the starters' builders (its head's mj-attributes, the cart's
    table rows, a text's size equal to MJML's default) is saved again as it was, with
    the editor in the admin's language."""
    with translation.override("ja"):
        source = mjml_document(
            header() + cart_items() + balance() + footer(), title="{{ shop.name }}", lang="ja"
        )
    template = EmailTemplate.objects.create(
        name="Cart reminder", subject="Your cart", format="mjml", mjml_body=source
    )
    page = marketer
    page.set_extra_http_headers({"Accept-Language": "ja"})
    page.goto(
        page.url.split("/admin/")[0] + f"/admin/campaigns/emailtemplate/{template.pk}/change/"
    )
    expect(page.locator("[data-email-builder]")).to_have_attribute("data-ready", "true")
    expect(page.get_by_role("button", name="スマートフォン（375 px）")).to_be_visible()
    expect(page.locator(".gjs-block-category", has_text="レイアウト").first).to_be_visible()
    canvas = page.frame_locator(".gjs-frame")
    expect(canvas.locator("[data-gjs-type=mj-table]")).to_contain_text("{{ item.quantity }}")

    page.click("input[name=_continue]")
    expect(page.locator(".messagelist .success")).to_be_visible()
    template.refresh_from_db()
    assert "<mj-attributes>" in template.mjml_body
    assert '{% for item in event.properties.items %}<tr style="border-bottom' in (
        template.mjml_body
    )
    assert template.mjml_body.count('css-class="keepers-footer"') == 1

    def same(mjml: str) -> str:
        return re.sub(r"\s+", " ", mrml.to_html(mjml).content)

    assert same(template.mjml_body) == same(source)
