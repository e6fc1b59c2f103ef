"""Quality checks on a template's rendered email (campaigns.services.quality): each check
warns on an email that has the problem and says nothing on one that has not, naming the
place (and the line of the rendered HTML); `template_quality` checks what a send renders,
for a contact or a sample one."""

import pytest
from django.test import override_settings
from django.utils import translation

from campaigns.models import SUBJECT_WARNING, EmailTemplate, EmailTemplateVariant, Survey
from campaigns.services.quality import (
    GMAIL_CLIP_BYTES,
    GMAIL_CLIP_NEAR_BYTES,
    QualityWarning,
    template_quality,
    template_warnings,
)
from campaigns.services.rendering import contact_links
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db

UNSUBSCRIBE = "https://keep.example/u/abc:def/"

HEAD = """<!doctype html>
<html><head><title>Cart</title></head>
<body>
"""
FOOT = f"""<p><a href="https://keep.example/p/abc/">Email preferences</a>
<a href="{UNSUBSCRIBE}">Unsubscribe</a></p>
</body></html>
"""
TEXT = "Your cart is waiting for you, with the blue mug in it.\n\n--\nShop\n1 Market Street\n"


def html(body: str = "<p>Hello</p>\n") -> str:
    """A document with `body` on line 4 onwards, and the unsubscribe link in its footer."""
    return HEAD + body + FOOT


def check(**given) -> list[QualityWarning]:
    """template_warnings on an email with none of the problems, but for what is `given`."""
    return template_warnings(
        **{
            "subject": "Your cart is waiting",
            "preheader": "The blue mug is still there",
            "html": html(),
            "text": TEXT,
            "own_text": True,
            "category": "marketing",
            "unsubscribe_url": UNSUBSCRIBE,
            **given,
        }
    )


def codes(warnings: list[QualityWarning]) -> list[str]:
    return [w.code for w in warnings]


def test_an_email_with_none_of_the_problems_has_no_warnings():
    assert check() == []


# --- subject and preheader ------------------------------------------------------------


def test_a_subject_longer_than_the_inbox_shows_is_warned_with_its_length():
    long = "x" * (SUBJECT_WARNING + 1)

    assert check(subject=long) == [
        QualityWarning(
            "subject_long",
            "warning",
            f"The subject is {SUBJECT_WARNING + 1} characters long as rendered; mobile "
            f"inboxes show only the first {SUBJECT_WARNING} or so.",
            "subject",
        )
    ]
    assert check(subject="x" * SUBJECT_WARNING) == []


def test_an_empty_preheader_is_information():
    for empty in ("", "   "):
        (warning,) = check(preheader=empty)
        assert (warning.code, warning.level, warning.place) == (
            "preheader_empty",
            "info",
            "preheader",
        )


# --- the text part -----------------------------------------------------------------------


def test_a_text_part_derived_from_the_html_is_information():
    (warning,) = check(own_text=False)

    assert (warning.code, warning.level, warning.place) == ("text_derived", "info", "text part")
    assert "derived from the HTML" in warning.message
    assert check(own_text=True) == []


def test_a_derived_text_part_that_is_almost_empty_is_warned_the_signature_not_counted():
    # an image-only email: its derived text is a link, then the renderer's footer
    text = (
        " (https://shop.example/sale)\n\n--\nKeepers Demo Shop\n1 Market Street, Springfield\n"
        "Unsubscribe: https://keep.example/u/abc/\n"
    )

    warnings = check(own_text=False, text=text)

    assert codes(warnings) == ["text_derived", "text_near_empty"]
    assert warnings[1].level == "warning" and warnings[1].place == "text part"
    assert "(0 letters besides links)" in warnings[1].message
    assert codes(check(own_text=False, text="Our summer sale starts today." + text)) == [
        "text_derived"
    ]


def test_an_own_text_part_that_renders_almost_empty_is_warned():
    (warning,) = check(text="Hi Ada\n\n--\nShop\n")

    assert warning.code == "text_near_empty" and "renders almost empty (5 letters" in (
        warning.message
    )


def test_japanese_text_counts_its_letters():
    assert check(text="カートに青いマグカップが残っています。お早めにどうぞ。\n\n--\nShop\n") == []


# --- unsubscribe -----------------------------------------------------------------------


def test_marketing_mail_without_a_link_to_the_contacts_unsubscribe_address_is_warned():
    no_link = HEAD + "<p>Hello</p>\n<p>Unsubscribe: https://keep.example/u/abc:def/</p></body>"
    elsewhere = html().replace(UNSUBSCRIBE, "https://keep.example/u/someone-else/")

    for document in (no_link, elsewhere):
        (warning,) = check(html=document)
        assert (warning.code, warning.level, warning.place) == (
            "unsubscribe_missing",
            "warning",
            "HTML",
        )
    assert check(html=no_link, category="transactional") == []


def test_the_unsubscribe_link_is_found_with_its_entities_decoded():
    url = "https://keep.example/u/?t=1&c=2"
    document = html().replace(UNSUBSCRIBE, "https://keep.example/u/?t=1&amp;c=2")

    assert check(html=document, unsubscribe_url=url) == []


# --- images ------------------------------------------------------------------------------


def test_an_image_without_alt_text_is_warned_with_its_file_and_line():
    body = '<p>Hello</p>\n<img src="https://cdn.example/img/logo.png?v=2" width="120">\n'

    (warning,) = check(html=html(body))

    assert (warning.code, warning.level) == ("image_no_alt", "warning")
    assert warning.place == "the image logo.png (line 5)"
    assert check(html=html('<img src="https://cdn.example/logo.png" alt="Keepers">\n')) == []
    assert check(html=html('<img src="https://cdn.example/rule.png" alt="">\n')) == []


def test_an_image_with_empty_alt_as_all_a_link_holds_leaves_the_link_without_a_name():
    nameless = '<a href="https://shop.example/sale">\n  <img src="https://cdn.example/hero.jpg" alt="">\n</a>\n'

    (warning,) = check(html=html(nameless))

    assert (warning.code, warning.level) == ("link_no_name", "warning")
    assert warning.place == "the image hero.jpg (line 5)"
    for named in (
        nameless.replace('alt=""', 'alt="The summer sale"'),
        nameless.replace("</a>", "Shop the sale</a>"),
        nameless.replace("<a ", '<a aria-label="The summer sale" '),
    ):
        assert check(html=html(named)) == []


def test_an_image_without_alt_in_a_link_is_warned_once():
    body = '<a href="https://shop.example/"><img src="https://cdn.example/logo.png"></a>\n'

    assert codes(check(html=html(body))) == ["image_no_alt"]


# --- links -------------------------------------------------------------------------------


def test_a_link_over_http_is_warned_with_its_address_and_line():
    body = '<p>Hello</p>\n<p>\n<a href="http://shop.example/cart">Back to your cart</a></p>\n'

    (warning,) = check(html=html(body))

    assert (warning.code, warning.level) == ("link_not_https", "warning")
    assert warning.place == "the link http://shop.example/cart (line 6)"


def test_a_relative_scheme_less_or_empty_link_is_warned():
    for href in ("/cart", "www.shop.example/cart", "//shop.example/cart", ""):
        (warning,) = check(html=html(f'<a href="{href}">Your cart</a>\n'))
        assert warning.code == "link_relative", href
        assert warning.place == f"the link {href} (line 4)"


def test_https_mail_phone_and_anchor_links_pass():
    for href in (
        "https://shop.example/cart",
        "HTTPS://SHOP.EXAMPLE/",
        "mailto:help@shop.example",
        "tel:+81-3-1234-5678",
        "#top",
    ):
        assert check(html=html(f'<a href="{href}">Go</a>\n')) == [], href
    assert check(html=html('<a name="top">An anchor without href</a>\n')) == []


def test_a_long_address_is_cut_in_the_place():
    href = "http://shop.example/" + "a" * 200

    (warning,) = check(html=html(f'<a href="{href}">Go</a>\n'))

    assert warning.place.startswith("the link http://shop.example/aaa")
    assert warning.place.endswith("… (line 4)") and len(warning.place) < 100


# --- size ---------------------------------------------------------------------------------


def padded(size: int) -> str:
    """The email's HTML, padded to `size` bytes in UTF-8 with a three-byte character."""
    base = len(html("<p></p>\n").encode("utf-8"))
    characters, rest = divmod(size - base, 3)
    document = html("<p>" + "あ" * characters + "x" * rest + "</p>\n")
    assert len(document.encode("utf-8")) == size
    return document


def test_html_over_gmails_clipping_limit_is_warned_counted_in_utf8_bytes():
    (warning,) = check(html=padded(GMAIL_CLIP_BYTES + 1))

    assert (warning.code, warning.level, warning.place) == ("html_clipped", "warning", "HTML")
    assert warning.message.startswith("The HTML is 102.0 KB: Gmail clips an email over 102 KB")


def test_html_close_to_the_limit_is_warned_from_90_kb():
    for size in (GMAIL_CLIP_BYTES, GMAIL_CLIP_NEAR_BYTES):
        (warning,) = check(html=padded(size))
        assert warning.code == "html_near_clip" and warning.level == "warning"
    assert GMAIL_CLIP_BYTES == 102 * 1024 and GMAIL_CLIP_NEAR_BYTES == 90 * 1024
    assert check(html=padded(GMAIL_CLIP_NEAR_BYTES - 1)) == []


def test_the_messages_are_translated():
    with translation.override("ja"):
        (warning,) = check(html=html('<img src="https://cdn.example/logo.png">\n'))

    assert warning.code == "image_no_alt"
    assert "代替テキスト" in warning.message and warning.place == "画像 logo.png(4行目)"


# --- template_quality: the email a send renders ----------------------------------------


def template(**fields) -> EmailTemplate:
    return EmailTemplate.objects.create(
        **{
            "name": "cart",
            "category": "marketing",
            "subject": "Your cart, {{ first_name }}",
            "preheader": "Still thinking about it?",
            "html_body": (
                "<p>Hi {{ first_name }}, your cart is waiting.</p>\n"
                '<p><a href="https://shop.example/cart">Back to your cart</a></p>\n'
            ),
            "text_body": "Hi {{ first_name }}, your cart is waiting: https://shop.example/cart",
            **fields,
        }
    )


@override_settings(KEEPERS_PUBLIC_URL="https://keep.example")
def test_a_good_template_passes_for_a_sample_contact_and_for_a_saved_one():
    good = template()
    contact = ContactFactory(first_name="Ada")

    assert template_quality(template=good) == []
    assert template_quality(template=good, contact=contact) == []


@override_settings(KEEPERS_PUBLIC_URL="https://keep.example")
def test_the_subject_is_measured_as_rendered_not_as_its_source():
    short_source = template(subject="Hi {{ first_name }}")  # 19 characters of source
    long_source = template(name="long", subject="{% if first_name %}Hi {{ first_name }}{% endif %}")
    contact = ContactFactory(first_name="Maximiliane-Josephine-Charlotte")

    (warning,) = template_quality(template=short_source, contact=contact)
    assert warning.code == "subject_long" and "is 34 characters" in warning.message
    assert template_quality(template=long_source) == []  # "Hi Alex", for the sample


@override_settings(KEEPERS_PUBLIC_URL="https://keep.example")
def test_what_the_rendered_email_has_is_checked_the_text_part_derived_and_the_preheader_rendered():
    image_only = template(
        subject="Sale",
        preheader="{{ attributes.missing }}",  # renders empty
        text_body="",
        html_body=(
            '<a href="https://shop.example/sale"><img src="https://cdn.example/hero.jpg" alt="">'
            "</a>"
        ),
    )

    warnings = template_quality(template=image_only)

    assert codes(warnings) == ["preheader_empty", "text_derived", "text_near_empty", "link_no_name"]
    assert warnings[-1].place.startswith("the image hero.jpg (line ")


def test_the_layouts_footer_is_checked_too_an_http_public_address_is_warned():
    with override_settings(KEEPERS_PUBLIC_URL="http://keep.example"):
        warnings = template_quality(template=template())
        unsubscribe = contact_links(ContactFactory.build(pk=0))["unsubscribe_url"]

    assert codes(warnings) == ["link_not_https", "link_not_https"]  # preferences, unsubscribe
    assert warnings[0].place.startswith("the link http://keep.example/p/")
    assert warnings[1].place.startswith(f"the link {unsubscribe} (line ")


def test_a_survey_row_renders_for_the_sample_contact_and_its_links_are_checked():
    Survey.objects.create(name="NPS", kind="nps", question="Would you recommend us?")
    asks = template(
        html_body='{% load keepers %}<p>One question, {{ first_name }}.</p>{% survey_row "NPS" %}'
    )

    with override_settings(KEEPERS_PUBLIC_URL="https://keep.example"):
        assert template_quality(template=asks) == []
    with override_settings(KEEPERS_PUBLIC_URL="http://keep.example"):
        warnings = template_quality(template=asks)

    # the scores 0 to 10 are links signed for the sample (pk 0), then the footer's two
    assert codes(warnings) == ["link_not_https"] * 13
    assert all(w.place.startswith("the link http://keep.example/s/") for w in warnings[:11])


@override_settings(KEEPERS_PUBLIC_URL="https://keep.example")
def test_a_transactional_template_has_no_unsubscribe_link_and_is_not_warned_for_it():
    receipt = template(category="transactional")

    assert template_quality(template=receipt) == []


def test_a_template_that_cannot_be_rendered_gives_one_warning_saying_why():
    broken = template(html_body="<p>{% if first_name %}Hi</p>")
    empty_subject = template(name="empty", subject="{{ attributes.missing }}")

    (warning,) = template_quality(template=broken)
    assert (warning.code, warning.level, warning.place) == ("render_failed", "warning", "template")
    assert warning.message.startswith("The email could not be rendered, so it was not checked: ")
    assert "endif" in warning.message
    (warning,) = template_quality(template=empty_subject)
    assert warning.code == "render_failed" and "The subject rendered empty." in warning.message


# --- block (MJML) templates carry their own footer and preheader; variants per language --
BLOCKS = """<mjml>
  <mj-head><mj-preview>{{ first_name }}, the summer sale</mj-preview></mj-head>
  <mj-body>
    <mj-section><mj-column>
      <mj-image src="https://cdn.example/hero.jpg" alt="The summer sale" href="https://shop.example/sale" />
      <mj-text>Hello {{ first_name }}, everything is 20% off until Sunday.</mj-text>
      <mj-button href="https://shop.example/sale">Shop the sale</mj-button>
    </mj-column></mj-section>
    <mj-section css-class="keepers-footer"><mj-column>
      <mj-text>{{ shop.address }} <a href="{{ unsubscribe_url }}">Unsubscribe</a></mj-text>
    </mj-column></mj-section>
  </mj-body>
</mjml>"""


def blocks(mjml: str = BLOCKS, **fields) -> EmailTemplate:
    return template(
        **{
            "format": EmailTemplate.Format.MJML,
            "mjml_body": mjml,
            "html_body": "",
            "text_body": "",
            **fields,
        }
    )


@override_settings(KEEPERS_PUBLIC_URL="https://keep.example")
def test_a_block_template_with_its_footer_and_preview_passes():
    assert codes(template_quality(template=blocks())) == ["text_derived"]


@override_settings(KEEPERS_PUBLIC_URL="https://keep.example")
def test_a_block_template_without_the_unsubscribe_link_in_its_footer_is_warned():
    no_footer = blocks(BLOCKS.replace('<a href="{{ unsubscribe_url }}">Unsubscribe</a>', ""))

    assert codes(template_quality(template=no_footer)) == ["text_derived", "unsubscribe_missing"]


@override_settings(KEEPERS_PUBLIC_URL="https://keep.example")
def test_a_block_templates_preheader_is_its_preview_and_its_images_are_checked():
    no_preview = blocks(
        BLOCKS.replace(
            "<mj-head><mj-preview>{{ first_name }}, the summer sale</mj-preview></mj-head>", ""
        ).replace(' alt="The summer sale"', ""),  # mrml writes no alt then
        preheader="Not shown: a block template's preheader is its mj-preview",
    )

    warnings = template_quality(template=no_preview)

    assert codes(warnings) == ["preheader_empty", "text_derived", "image_no_alt"]
    assert warnings[-1].place.startswith("the image hero.jpg (line ")
    decorative = blocks(BLOCKS.replace('alt="The summer sale"', 'alt=""'), name="decorative")
    assert codes(template_quality(template=decorative)) == ["text_derived", "link_no_name"]


@override_settings(KEEPERS_PUBLIC_URL="https://keep.example")
def test_the_variant_in_the_contacts_language_is_the_one_checked():
    english = template(text_body="", preheader="")
    EmailTemplateVariant.objects.create(
        template=english,
        language="ja",
        subject="{{ first_name }}さん、カートに商品が残っています",
        preheader="お早めにどうぞ",
        html_body='<p>カートに青いマグカップが残っています。</p><p><a href="https://shop.example/cart">カートを見る</a></p>',
        text_body="カートに青いマグカップが残っています。お早めにどうぞ: https://shop.example/cart",
    )
    english.refresh_from_db()
    hana = ContactFactory(first_name="花", locale="ja-JP")

    assert codes(template_quality(template=english)) == ["preheader_empty", "text_derived"]
    assert template_quality(template=english, language="ja") == []
    assert template_quality(template=english, contact=hana) == []
