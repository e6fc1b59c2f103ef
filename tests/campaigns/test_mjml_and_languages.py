"""Block (MJML) templates compiled once per version, and templates in each customer's
language: the variant chosen by the rule the public pages use, the layout, footer and
dates in that language."""

import datetime as dt

import pytest
from django.utils import timezone

from campaigns.mjml import mjml_problems
from campaigns.models import EmailTemplate, EmailTemplateVariant
from campaigns.services import rendering
from campaigns.services.rendering import email_render
from crm.links import contact_language, language_choose
from tests.campaigns.conftest import shopper, template_form

pytestmark = pytest.mark.django_db

MJML = """<mjml>
  <mj-head><mj-preview>{{ first_name }}, new in</mj-preview></mj-head>
  <mj-body>
    <mj-section><mj-column>
      <mj-text>Hello {{ first_name }}, sale ends {{ ends|date:"DATE_FORMAT" }}</mj-text>
      <mj-button href="https://shop.example/sale">Shop</mj-button>
    </mj-column></mj-section>
    <mj-section css-class="keepers-footer"><mj-column>
      <mj-text>{{ shop.address }} <a href="{{ unsubscribe_url }}">Unsubscribe</a></mj-text>
    </mj-column></mj-section>
  </mj-body>
</mjml>"""


def test_mjml_problems_name_the_line():
    assert mjml_problems(MJML) == []
    broken = "<mjml>\n<mj-body>\n<mj-section>\n<mj-colum>\n</mj-section>\n</mj-body>\n</mjml>"
    assert mjml_problems(broken) == ["Line 4: <mj-colum> is not an MJML element."]
    unclosed = "<mjml>\n<mj-body>\n<mj-section>\n<mj-column>\n<mj-text>x</mj-text>\n</mj-section>"
    assert "Line 4: <mj-column> is not closed before </mj-section> on line 6." in (
        mjml_problems(unclosed + "\n</mj-body></mjml>")
    )
    misplaced = "<mjml><mj-body>\n<mj-text>x</mj-text></mj-body></mjml>"
    assert mjml_problems(misplaced) == [
        "Line 2: <mj-text> goes inside <mj-column> or <mj-hero>, not <mj-body>."
    ]
    assert mjml_problems("<mjml><mj-body><p>hi</p></mj-body></mjml>") == [
        "Line 1: <p> is HTML; put it inside an <mj-text> (or <mj-raw>)."
    ]


def _blocks(**fields) -> EmailTemplate:
    return EmailTemplate.objects.create(
        name=fields.pop("name", "sale"),
        subject=fields.pop("subject", "Sale, {{ first_name }}"),
        format=EmailTemplate.Format.MJML,
        mjml_body=fields.pop("mjml_body", MJML),
        html_body="",
        **fields,
    )


def test_a_block_template_is_compiled_at_save_and_sent_without_the_html_layout():
    template = _blocks()
    assert "<mj-" not in template.html_body and "{{ first_name }}" in template.html_body

    rendered = email_render(
        template=template,
        contact=shopper("ada@example.com", "Ada"),
        extra={"ends": dt.date(2026, 12, 24)},
    )

    assert "Hello Ada, sale ends Dec. 24, 2026" in rendered.html
    assert 'class="head"' not in rendered.html  # not inside the HTML templates' layout
    assert "@media" in rendered.html  # the mobile layout's media queries kept
    # the text part is derived from the blocks, with the footer's link in it
    assert "Hello Ada, sale ends Dec. 24, 2026" in rendered.text
    assert "Unsubscribe (http" in rendered.text and rendered.text.count("/u/") == 1


def test_language_choose_is_the_one_rule():
    available = ["en", "ja", "pt-br", "zh-hans"]
    assert language_choose("ja-JP", available, "en") == "ja"
    assert language_choose("ja_JP", available, "en") == "ja"
    assert language_choose("pt-BR", available, "en") == "pt-br"
    assert language_choose("pt", available, "en") == "pt-br"
    assert language_choose("zh", available, "en") == "zh-hans"
    assert language_choose("fr-CA", available, "en") == "en"
    assert language_choose("", available, "ja") == "ja"
    assert contact_language(shopper("j@example.com", "J", locale="ja-JP")) == "ja"
    assert contact_language(shopper("f@example.com", "F", locale="fr")) == "en"


def test_each_contact_gets_the_variant_in_their_language_else_the_templates_own():
    template = EmailTemplate.objects.create(
        name="welcome",
        subject="Welcome {{ first_name }}",
        html_body="<p>Your points expire {{ ends|date:'DATE_FORMAT' }}.</p>",
        category="marketing",
    )
    EmailTemplateVariant.objects.create(
        template=template,
        language="ja",
        subject="{{ first_name }}さん、ようこそ",
        html_body="<p>ポイントの有効期限は{{ ends|date:'DATE_FORMAT' }}です。</p>",
    )
    template.refresh_from_db()
    assert template.variant_languages == "ja"
    extra = {"ends": dt.date(2026, 12, 24)}

    ja = email_render(
        template=template, contact=shopper("hana@example.com", "花", locale="ja-JP"), extra=extra
    )
    en = email_render(
        template=template, contact=shopper("ada@example.com", "Ada", locale="en-GB"), extra=extra
    )
    fr = email_render(
        template=template, contact=shopper("zoe@example.com", "Zoé", locale="fr"), extra=extra
    )

    assert ja.subject == "花さん、ようこそ"
    assert "ポイントの有効期限は2026年12月24日です。" in ja.html
    assert 'lang="ja"' in ja.html and "配信停止" in ja.html  # the layout's footer
    assert "配信停止: " in ja.text
    assert en.subject == "Welcome Ada" and "Dec. 24, 2026" in en.html
    assert 'lang="en"' in en.html and ">Unsubscribe<" in en.html
    assert fr.subject == "Welcome Zoé"  # no French version: the template's own


def test_a_variant_saved_or_deleted_is_a_new_version_for_the_renderers():
    template = EmailTemplate.objects.create(name="t", subject="Hi", html_body="<p>Hi</p>")
    hana = shopper("hana@example.com", "花", locale="ja")
    assert email_render(template=template, contact=hana).subject == "Hi"

    variant = EmailTemplateVariant.objects.create(
        template=template, language="ja", subject="こんにちは", html_body="<p>こんにちは</p>"
    )
    template.refresh_from_db()
    assert email_render(template=template, contact=hana).subject == "こんにちは"

    variant.delete()
    template.refresh_from_db()
    assert template.variant_languages == ""
    assert email_render(template=template, contact=hana).subject == "Hi"


def test_a_block_variant_is_compiled_too_and_b_subjects_are_per_language():
    template = _blocks()
    EmailTemplateVariant.objects.create(
        template=template,
        language="ja",
        subject="{{ first_name }}さん、セール",
        subject_b="セールは明日まで",
        mjml_body=MJML.replace("Hello", "こんにちは"),
    )
    template.refresh_from_db()
    hana = shopper("hana@example.com", "花", locale="ja")
    extra = {"ends": timezone.now()}

    a = email_render(template=template, contact=hana, extra=extra)
    b = email_render(template=template, contact=hana, extra=extra, ab_side="b")

    assert "こんにちは 花" in a.html and "<mj-" not in a.html
    assert (a.subject, b.subject) == ("花さん、セール", "セールは明日まで")


def test_templates_without_variants_read_none(django_assert_num_queries):
    template = EmailTemplate.objects.create(name="plain", subject="Hi", html_body="<p>Hi</p>")
    rendering._compiled.cache_clear()
    contact = shopper("ja@example.com", "J", locale="ja")
    with django_assert_num_queries(0):
        email_render(template=template, contact=contact)


# --- the admin and the API: checks at save, versions per language ----------------------
def _admin_post(staff_client, url, **fields):
    return staff_client.post(
        url, template_form(**{"format": "mjml", "mjml_body": MJML, "html_body": "", **fields})
    )


def test_the_admin_saves_blocks_and_a_japanese_version_and_names_the_line_of_an_error(
    staff_client,
):
    url = "/admin/campaigns/emailtemplate/add/"
    broken = MJML.replace("<mj-column>", "<mj-colum>", 1)
    response = _admin_post(staff_client, url, mjml_body=broken)
    assert response.status_code == 200
    assert "Line 4: &lt;mj-colum&gt; is not an MJML element." in response.content.decode()

    response = _admin_post(
        staff_client,
        url,
        **{
            "variants-TOTAL_FORMS": "1",
            "variants-0-language": "ja",
            "variants-0-subject": "お知らせ",
            "variants-0-subject_b": "",
            "variants-0-preheader": "",
            "variants-0-mjml_body": MJML.replace("Hello", "こんにちは"),
            "variants-0-html_body": "",
            "variants-0-text_body": "",
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    template = EmailTemplate.objects.get(name="news")
    assert template.format == "mjml" and "<mj-" not in template.html_body
    assert template.variant_languages == "ja"
    assert "こんにちは" in template.variants.get().html_body

    own_language = _admin_post(
        staff_client,
        url,
        name="news2",
        **{
            "variants-TOTAL_FORMS": "1",
            "variants-0-language": "en",
            "variants-0-subject": "again",
            "variants-0-mjml_body": MJML,
        },
    )
    assert "the template&#x27;s own language" in own_language.content.decode()

    listing = staff_client.get("/admin/campaigns/emailtemplate/")
    assert "en, ja" in listing.content.decode()


def test_an_html_template_still_needs_its_body(staff_client):
    response = _admin_post(
        staff_client, "/admin/campaigns/emailtemplate/add/", format="html", mjml_body=""
    )
    assert "Write the email&#x27;s HTML body." in response.content.decode()


def test_the_api_takes_blocks_and_versions_and_refuses_bad_mjml_with_the_field(api):
    body = {
        "name": "news",
        "subject": "News",
        "format": "mjml",
        "mjml_body": MJML,
        "variants": [{"language": "ja", "subject": "お知らせ", "mjml_body": MJML}],
    }
    created = api.post("/api/v1/email-templates/", body, format="json")
    assert created.status_code == 201, created.json()
    assert created.json()["variants"][0]["language"] == "ja"
    assert "<mj-" not in created.json()["html_body"]

    bad = {
        **body,
        "name": "bad",
        "variants": [{"language": "ja", "subject": "x", "mjml_body": "<mjml><mj-body><p>"}],
    }
    refused = api.post("/api/v1/email-templates/", bad, format="json")
    assert refused.status_code == 400
    assert "variants[0].mjml_body" in str(refused.json())

    again = api.post(
        "/api/v1/email-templates/",
        {
            **body,
            "name": "twice",
            "variants": [{"language": "en", "subject": "x", "mjml_body": MJML}],
        },
        format="json",
    )
    assert again.status_code == 400 and "variants" in str(again.json())

    pk = created.json()["id"]
    cleared = api.patch(f"/api/v1/email-templates/{pk}/", {"variants": []}, format="json")
    assert cleared.status_code == 200 and cleared.json()["variants"] == []


def test_saving_shows_the_quality_warnings_of_each_language(staff_client):
    response = staff_client.post(
        "/admin/campaigns/emailtemplate/add/",
        template_form(
            name="pics",
            html_body='<p><img src="https://shop.example/a.png"> <a href="http://shop.example">x</a></p>',
            **{
                "variants-TOTAL_FORMS": "1",
                "variants-0-language": "ja",
                "variants-0-subject": "写真",
                "variants-0-html_body": '<p><img src="https://shop.example/a.png" alt="写真"></p>',
            },
        ),
        follow=True,
    )
    page = response.content.decode()
    assert "[en] the image" in page and "[ja] the image" not in page
    assert "[en] the link http://shop.example" in page


def test_the_api_preview_carries_the_warnings(api):
    template = EmailTemplate.objects.create(
        name="pics", subject="Pics", html_body='<p><img src="https://shop.example/a.png"></p>'
    )
    shopper("ada@example.com", "Ada")
    response = api.post(
        f"/api/v1/email-templates/{template.pk}/preview/",
        {"email": "ada@example.com"},
        format="json",
    )
    assert response.status_code == 200
    assert "image_no_alt" in [w["code"] for w in response.json()["warnings"]]


def test_money_is_written_the_way_the_contacts_language_writes_it(settings):
    settings.KEEPERS_BASE_CURRENCY = "JPY"
    template = EmailTemplate.objects.create(
        name="price",
        subject="Price",
        html_body="{% load keepers %}<p>{{ price|money }} / {{ price|money:'USD' }} / {{ 'n/a'|money }}</p>",
    )
    EmailTemplateVariant.objects.create(
        template=template, language="ja", subject="価格", html_body=template.html_body
    )
    template.refresh_from_db()
    ja = email_render(
        template=template,
        contact=shopper("j@example.com", "J", locale="ja"),
        extra={"price": "1234.5"},
    )
    en = email_render(
        template=template,
        contact=shopper("e@example.com", "E", locale="en"),
        extra={"price": "1234.5"},
    )
    assert "￥1,234 / $1,234.50 / n/a" in ja.html
    assert "¥1,234 / $1,234.50 / n/a" in en.html
