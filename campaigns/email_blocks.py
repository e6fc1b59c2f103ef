"""The Keepers email blocks: MJML snippets for the block editor and the starter library.

Each block is one `<mj-section>` or `<mj-wrapper>` whose text holds Django template
syntax (`{{ shop.name }}`, `{% recommendations %}`): MJML is compiled once per template
version with mrml, the tags pass through as text, and the compiled HTML is then rendered
per recipient with Django's template language (campaigns.services.rendering). So:

- a Django block tag between MJML elements sits in `<mj-raw>` (mrml keeps it verbatim,
  Django then sees it where the element's HTML starts or ends);
- a tag inside an attribute (`href="{{ shop.url }}"`) has no quotes or `<`/`>` of its own;
- inside `<mj-text>` and `<mj-table>` the content is HTML, where tags are plain text.

The names a block reads are the render context's (`merge_tags()` lists them for the
editor): `shop`, `first_name`, `event.properties.items` (rendering.event_context),
`results.coupon` (the `grant` step), `expiring` (loyalty's expiring reminders).
`shop.logo_url` is optional: the header shows the shop's name when it is absent.

Public API: `blocks()`, `merge_tags()`, `mjml_document()`, and the builders each block is
made from (`header`, `hero`, `text`, `button`, `products`, `cart_items`, `coupon`,
`balance`, `survey`, `footer`), which the starters (campaigns.starters) call with their
own copy. Copy a builder does not take is translated with gettext in the active language,
so a builder called under `translation.override("ja")` writes Japanese."""

from __future__ import annotations

import re
from html import escape

from django.utils.translation import gettext as _

# The shop's look, shared with the HTML base layout (templates/campaigns/email/base.html).
BRAND = "#2f4858"
BACKGROUND = "#f4f1ec"
INK = "#222222"
MUTED = "#666666"
FOOTER_BACKGROUND = "#faf8f5"
# Latin faces first, then the Japanese system faces (macOS/iOS, Windows, Android).
FONTS = (
    "Helvetica, Arial, 'Hiragino Kaku Gothic ProN', 'Hiragino Sans', Meiryo, "
    "'Noto Sans JP', sans-serif"
)

FOOTER_CLASS = "keepers-footer"


_DJANGO_TAG = re.compile(r"(\{\{.*?\}\}|\{%.*?%\})", re.S)


def _attr(value: str) -> str:
    """Copy for an attribute or a head element, HTML-escaped outside its Django tags (a
    tag keeps its quotes: `{{ first_name|default:'friend' }}` must reach Django as is)."""
    return "".join(
        part if index % 2 else escape(part, quote=True)
        for index, part in enumerate(_DJANGO_TAG.split(value))
    )


# --- the builders ------------------------------------------------------------------------


def header() -> str:
    """The shop's logo (when `shop.logo_url` is set) or its name, linked to the shop."""
    return f"""<mj-section css-class="keepers-header" background-color="{BRAND}" padding="16px 0">
  <mj-column>
    <mj-raw>{{% if shop.logo_url %}}</mj-raw>
    <mj-image src="{{{{ shop.logo_url }}}}" alt="{{{{ shop.name }}}}" href="{{{{ shop.url }}}}" width="140px" padding="4px 24px" align="left"></mj-image>
    <mj-raw>{{% else %}}</mj-raw>
    <mj-text color="#ffffff" font-size="20px" font-weight="bold" line-height="28px" padding="4px 24px"><a href="{{{{ shop.url }}}}" style="color:#ffffff;text-decoration:none;">{{{{ shop.name }}}}</a></mj-text>
    <mj-raw>{{% endif %}}</mj-raw>
  </mj-column>
</mj-section>"""


def hero(
    *,
    heading: str | None = None,
    body: str | None = None,
    label: str | None = None,
    url: str = "{{ shop.url }}",
    image: str = "{{ shop.url }}/img/hero.jpg",
    alt: str | None = None,
    image_width: str = "",
    image_if: str = "",
) -> str:
    """A full-width image, a heading, a paragraph and a button. `heading`, `body` and
    `label` are HTML (they may hold Django tags); `image` and `url` are attribute values.
    A product's picture rather than a banner: `image_width` ("280px") keeps it that size
    and centred, and `image_if` (a Django condition, "event.properties.image_url") shows
    it only when the data has one."""
    heading = _("A fresh roast, just for you") if heading is None else heading
    body = _("Tell your customers what is new in a sentence or two.") if body is None else body
    label = _("Visit the shop") if label is None else label
    alt = heading if alt is None else alt
    size = (
        f'width="{image_width}" padding="24px 24px 0" border-radius="6px"'
        if image_width
        else 'padding="0" fluid-on-mobile="true"'
    )
    picture = f'<mj-image src="{image}" alt="{_attr(_plain(alt))}" href="{url}" {size}></mj-image>'
    if image_if:
        picture = f"<mj-raw>{{% if {image_if} %}}</mj-raw>{picture}<mj-raw>{{% endif %}}</mj-raw>"
    return f"""<mj-section css-class="keepers-hero" padding="0">
  <mj-column>
    {picture}
    <mj-text font-size="26px" font-weight="bold" line-height="34px" padding="24px 24px 8px" css-class="keepers-heading">{heading}</mj-text>
    <mj-text padding="0 24px 8px">{body}</mj-text>
    <mj-button href="{url}" padding="16px 24px 24px">{label}</mj-button>
  </mj-column>
</mj-section>"""


def text(*, body: str | None = None, heading: str | None = None) -> str:
    """A paragraph (HTML), with an optional heading above it."""
    body = _("Write your message here.") if body is None else body
    title = (
        f'<mj-text font-size="22px" font-weight="bold" line-height="30px" '
        f'padding="16px 24px 0" css-class="keepers-subheading">{heading}</mj-text>\n    '
        if heading
        else ""
    )
    return f"""<mj-section css-class="keepers-text" padding="8px 0">
  <mj-column>
    {title}<mj-text padding="8px 24px">{body}</mj-text>
  </mj-column>
</mj-section>"""


def button(*, label: str | None = None, url: str = "{{ shop.url }}") -> str:
    """One call to action, centred."""
    label = _("Shop now") if label is None else label
    return f"""<mj-section css-class="keepers-button" padding="8px 0 16px">
  <mj-column>
    <mj-button href="{url}" align="center">{label}</mj-button>
  </mj-column>
</mj-section>"""


def products(*, count: int = 4, heading: str | None = None, label: str | None = None) -> str:
    """Up to `count` products for this contact from `{% recommendations %}` (what goes
    with their orders or cart, bestsellers in their categories, the shop's bestsellers),
    one column each (two a row on a phone); nothing at all when there are none."""
    heading = _("You might also like") if heading is None else heading
    label = _("View product") if label is None else label
    width = f"{100 / max(1, count):.2f}%"
    return f"""<mj-wrapper css-class="keepers-products" padding="8px 0">
  <mj-raw>{{% load keepers %}}{{% recommendations {count} as picks %}}{{% if picks %}}</mj-raw>
  <mj-section padding="8px 0 0">
    <mj-column>
      <mj-text font-size="20px" font-weight="bold" line-height="28px" padding="8px 24px">{heading}</mj-text>
    </mj-column>
  </mj-section>
  <mj-section padding="0 12px 8px">
    <mj-raw>{{% for p in picks %}}</mj-raw>
    <mj-column width="{width}" padding="8px 4px" css-class="keepers-product">
      <mj-raw>{{% if p.image_url %}}</mj-raw>
      <mj-image src="{{{{ p.image_url }}}}" alt="{{{{ p.name }}}}" href="{{{{ p.url|default:shop.url }}}}" width="140px" padding="0 8px" border-radius="4px"></mj-image>
      <mj-raw>{{% endif %}}</mj-raw>
      <mj-text align="center" font-size="15px" line-height="21px" padding="8px 8px 0"><a href="{{{{ p.url|default:shop.url }}}}" style="color:{INK};text-decoration:none;font-weight:bold;">{{{{ p.name }}}}</a></mj-text>
      <mj-text align="center" color="{MUTED}" font-size="14px" line-height="20px" padding="2px 8px 0">{{% if p.price %}}{{{{ p.price|money:p.currency }}}}{{% endif %}}</mj-text>
      <mj-button href="{{{{ p.url|default:shop.url }}}}" font-size="14px" inner-padding="8px 16px" padding="8px 8px 0">{label}</mj-button>
    </mj-column>
    <mj-raw>{{% endfor %}}</mj-raw>
  </mj-section>
  <mj-raw>{{% endif %}}</mj-raw>
</mj-wrapper>"""


def cart_items(*, heading: str | None = None, quantity: str | None = None) -> str:
    """The trigger event's items (a cart, an order: `event.properties.items`, completed
    from the catalog): image, name, quantity and price, one row each. `quantity` holds
    `%(quantity)s` where the number goes ("Quantity: %(quantity)s")."""
    heading = _("Your cart") if heading is None else heading
    quantity = _("Quantity: %(quantity)s") if quantity is None else quantity
    quantity = quantity % {"quantity": "{{ item.quantity }}"}
    return f"""<mj-section css-class="keepers-items" padding="8px 0">
  <mj-column>
    <mj-raw>{{% load keepers %}}{{% if event.properties.items %}}</mj-raw>
    <mj-text font-size="20px" font-weight="bold" line-height="28px" padding="8px 24px 0">{heading}</mj-text>
    <mj-table padding="8px 24px" font-size="15px" line-height="21px" color="{INK}">
      {{% for item in event.properties.items %}}<tr style="border-bottom:1px solid #e6e1d8;">
        <td width="76" style="padding:8px 12px 8px 0;vertical-align:top;">{{% if item.image_url %}}<img src="{{{{ item.image_url }}}}" alt="{{{{ item.name }}}}" width="64" style="display:block;width:64px;max-width:64px;height:auto;border-radius:4px;border:0;">{{% endif %}}</td>
        <td style="padding:8px 8px 8px 0;vertical-align:top;"><a href="{{{{ item.url|default:shop.url }}}}" style="color:{INK};font-weight:bold;text-decoration:none;">{{{{ item.name }}}}</a><br><span style="color:{MUTED};font-size:13px;">{quantity}</span></td>
        <td align="right" style="padding:8px 0;vertical-align:top;white-space:nowrap;">{{% if item.price %}}{{{{ item.price|money:event.properties.currency }}}}{{% endif %}}</td>
      </tr>{{% endfor %}}
    </mj-table>
    <mj-raw>{{% endif %}}</mj-raw>
  </mj-column>
</mj-section>"""


def coupon(
    *,
    intro: str | None = None,
    until: str | None = None,
    code: str | None = None,
    note: str = "",
) -> str:
    """The code a `grant` step made (`results.coupon`) in a dashed box, with its expiry
    (`results.coupon_expires_at`, an ISO stamp: its date is shown); nothing without one.
    A fixed `code` ("WELCOMEBACK15") is shown always, with `note` under it."""
    intro = _("Your code, to enter at checkout") if intro is None else intro
    until = _("Valid until") if until is None else until
    if code is None:
        shown = "{{ results.coupon }}"
        opened, closed = "<mj-raw>{% if results.coupon %}</mj-raw>", "<mj-raw>{% endif %}</mj-raw>"
        note = (
            f"{{% if results.coupon_expires_at %}}{until} "
            "{{ results.coupon_expires_at|slice:':10' }}{% endif %}"
        )
    else:
        shown, opened, closed = _attr(code), "", ""
    return f"""<mj-section css-class="keepers-coupon" padding="8px 24px">
  <mj-column border="2px dashed {BRAND}" border-radius="6px" background-color="{FOOTER_BACKGROUND}">
    {opened}
    <mj-text align="center" color="{MUTED}" font-size="14px" line-height="20px" padding="16px 16px 4px">{intro}</mj-text>
    <mj-text align="center" color="{BRAND}" font-size="28px" font-weight="bold" letter-spacing="2px" line-height="36px" padding="0 16px" css-class="keepers-code">{shown}</mj-text>
    <mj-text align="center" color="{MUTED}" font-size="13px" line-height="20px" padding="4px 16px 16px">{note}</mj-text>
    {closed}
  </mj-column>
</mj-section>"""


def balance(
    *,
    points: str | None = None,
    credit: str | None = None,
    expires: str | None = None,
    total: str | None = None,
    date_format: str | None = None,
) -> str:
    """What is about to expire (loyalty's reminders: `expiring.amount`, `.unit`,
    `.is_points`, `.expires_at`, `.balance`), in a tinted box: the amount large, its date,
    and the whole balance; credit is money in the email's language (`|money`). `points`
    and `credit` are the words after the figure, `total` the line with the whole balance
    (`%(balance)s` where it goes); `date_format` is Django's `date` filter format."""
    points = _("points") if points is None else points
    credit = _("store credit") if credit is None else credit
    expires = _("Expiring on") if expires is None else expires
    total = _("Your balance today: %(balance)s") if total is None else total
    date_format = _("j F Y") if date_format is None else date_format
    in_points = _("%(amount)s points") % {"amount": "{{ expiring.balance }}"}
    whole = total % {
        "balance": f"{{% if expiring.is_points %}}{in_points}{{% else %}}"
        "{{ expiring.balance|money:expiring.unit }}{% endif %}"
    }
    amount = (
        f'{{% if expiring.is_points %}}{{{{ expiring.amount }}}} <span style="font-size:18px;">'
        f"{points}</span>{{% else %}}{{{{ expiring.amount|money:expiring.unit }}}} "
        f'<span style="font-size:18px;">{credit}</span>{{% endif %}}'
    )
    return f"""<mj-section css-class="keepers-balance" padding="8px 24px">
  <mj-column background-color="#e9eff2" border-radius="6px">
    <mj-raw>{{% load keepers %}}{{% if expiring %}}</mj-raw>
    <mj-text align="center" color="{BRAND}" font-size="32px" font-weight="bold" line-height="40px" padding="20px 16px 0">{amount}</mj-text>
    <mj-text align="center" font-size="15px" padding="4px 16px 0">{expires} <strong>{{{{ expiring.expires_at|date:"{date_format}" }}}}</strong></mj-text>
    <mj-text align="center" color="{MUTED}" font-size="13px" padding="8px 16px 20px">{whole}</mj-text>
    <mj-raw>{{% endif %}}</mj-raw>
  </mj-column>
</mj-section>"""


def survey(*, name: str = "NPS", low: str | None = None, high: str | None = None) -> str:
    """The one-click answer row of the survey named `name` (`{% survey_row %}`): its
    question in the contact's language and a link per score. `low` and `high` replace the
    end labels (the tag's own are translated in the language active when it renders)."""
    labels = "".join(
        f' {key}="{_attr(value)}"' for key, value in (("low", low), ("high", high)) if value
    )
    return f"""<mj-section css-class="keepers-survey" padding="8px 0">
  <mj-column>
    <mj-text padding="0 24px">{{% load keepers %}}{{% survey_row "{_attr(name)}"{labels} %}}</mj-text>
  </mj-column>
</mj-section>"""


def footer(*, marketing: bool = True) -> str:
    """The shop's name and postal address and, in marketing mail, why they receive it and
    the links to the email preferences and to unsubscribe. Marked `keepers-footer`: the
    editor keeps it in marketing templates (`required_for` in `blocks()`). A
    transactional email (`marketing=False`: a receipt, a reward earned) has the address
    and the preferences link only."""
    link = f"color:{MUTED};text-decoration:underline;white-space:nowrap;"
    preferences = f'<a href="{{{{ preferences_url }}}}" style="{link}">{_("Email preferences")}</a>'
    if marketing:
        reason = _("You receive this because you signed up at %(shop)s.") % {
            "shop": "{{ shop.name }}"
        }
        unsubscribe = f'<a href="{{{{ unsubscribe_url }}}}" style="{link}">{_("Unsubscribe")}</a>'
        why = f"{reason} {preferences} · {unsubscribe}"
    else:
        why = preferences
    return f"""<mj-section css-class="{FOOTER_CLASS}" background-color="{FOOTER_BACKGROUND}" padding="16px 0">
  <mj-column>
    <mj-text color="{MUTED}" font-size="12px" line-height="18px" padding="4px 24px">{{{{ shop.name }}}} · {{{{ shop.address }}}}</mj-text>
    <mj-text color="{MUTED}" font-size="12px" line-height="18px" padding="4px 24px">{why}</mj-text>
  </mj-column>
</mj-section>"""


def _plain(html: str) -> str:
    """Copy given as HTML, for an attribute (alt text): tags between < and > dropped."""
    out, depth = [], 0
    for char in html:
        if char == "<":
            depth += 1
        elif char == ">" and depth:
            depth -= 1
        elif not depth:
            out.append(char)
    return "".join(out)


# --- the editor's lists ------------------------------------------------------------------


def blocks() -> list[dict]:
    """The blocks for the editor, in the order it offers them: `id`, `label` (in the
    active language), `category`, `mjml` (one `<mj-section>` or `<mj-wrapper>`), and for
    the footer `required_for`: the template categories it cannot be removed from (its
    section has css-class `keepers-footer`)."""
    layout, content, commerce, loyalty = _("Layout"), _("Content"), _("Shop"), _("Rewards")
    return [
        {"id": "keepers-header", "label": _("Header"), "category": layout, "mjml": header()},
        {"id": "keepers-hero", "label": _("Hero"), "category": content, "mjml": hero()},
        {"id": "keepers-text", "label": _("Text"), "category": content, "mjml": text()},
        {"id": "keepers-button", "label": _("Button"), "category": content, "mjml": button()},
        {
            "id": "keepers-products",
            "label": _("Product grid"),
            "category": commerce,
            "mjml": products(),
        },
        {
            "id": "keepers-items",
            "label": _("Cart items"),
            "category": commerce,
            "mjml": cart_items(),
        },
        {"id": "keepers-coupon", "label": _("Coupon code"), "category": loyalty, "mjml": coupon()},
        {
            "id": "keepers-balance",
            "label": _("Points or credit balance"),
            "category": loyalty,
            "mjml": balance(),
        },
        {"id": "keepers-survey", "label": _("Survey row"), "category": content, "mjml": survey()},
        {
            "id": "keepers-footer",
            "label": _("Footer"),
            "category": layout,
            "mjml": footer(),
            "required_for": ["marketing"],
        },
    ]


def merge_tags() -> list[dict]:
    """The names a template can use, as the engine's render context has them
    (rendering.email_render, the `grant` step's results, loyalty's `expiring`):
    `label` (in the active language), `value` (the `{{ … }}` text to insert), `group`.
    `attributes.*` and `event.properties.*` are examples of open-ended names."""
    contact, shop, links = _("Contact"), _("Shop"), _("Links")
    event, rewards = _("Trigger event"), _("Rewards")
    rows = [
        (contact, _("First name"), "first_name"),
        (contact, _("Last name"), "contact.last_name"),
        (contact, _("Email address"), "contact.email"),
        (contact, _("Lifecycle stage"), "stage"),
        (contact, _("Attribute (e.g. city)"), "attributes.city"),
        (shop, _("Shop name"), "shop.name"),
        (shop, _("Shop address"), "shop.address"),
        (shop, _("Shop website"), "shop.url"),
        (shop, _("Shop logo URL"), "shop.logo_url"),
        (links, _("Email preferences link"), "preferences_url"),
        (links, _("Unsubscribe link"), "unsubscribe_url"),
        (links, _("Referral page link"), "referral_url"),
        (event, _("Event name"), "event.name"),
        (event, _("Product name"), "event.properties.name"),
        (event, _("Product link"), "event.properties.url"),
        (event, _("Product image"), "event.properties.image_url"),
        (event, _("Order number"), "event.properties.order_id"),
        (event, _("Order total"), "event.properties.total"),
        (event, _("Currency"), "event.properties.currency"),
        (event, _("Old price"), "event.properties.old_price"),
        (event, _("New price"), "event.properties.new_price"),
        (event, _("Referral reward"), "event.properties.reward"),
        (rewards, _("Coupon code"), "results.coupon"),
        (rewards, _("Coupon expiry"), "results.coupon_expires_at|slice:':10'"),
        (rewards, _("Expiring amount"), "expiring.amount"),
        (rewards, _("Expiring unit (credit currency)"), "expiring.unit"),
        (rewards, _("Expiry date"), "expiring.expires_at|date"),
        (rewards, _("Balance"), "expiring.balance"),
    ]
    return [
        {"label": label, "value": "{{ " + name + " }}", "group": group}
        for group, label, name in rows
    ]


# --- the document ------------------------------------------------------------------------


def mjml_document(sections: str, *, title: str = "", preheader: str = "", lang: str = "en") -> str:
    """A whole MJML document around `sections`: the shop's fonts and colours as
    `mj-attributes`, the preview text (`preheader`, shown after the subject in the inbox),
    the title, and images that never overflow a phone's width. `title` and `preheader`
    are text (they may hold Django tags); `lang` is the document's language (the Japanese
    starters give "ja", so clients pick Japanese faces and line breaking)."""
    return f"""<mjml lang="{_attr(lang)}">
  <mj-head>
    <mj-title>{_attr(title)}</mj-title>
    <mj-preview>{_attr(preheader)}</mj-preview>
    <mj-attributes>
      <mj-all font-family="{FONTS}"></mj-all>
      <mj-section background-color="#ffffff"></mj-section>
      <mj-wrapper background-color="#ffffff"></mj-wrapper>
      <mj-text color="{INK}" font-size="16px" line-height="26px"></mj-text>
      <mj-button background-color="{BRAND}" color="#ffffff" font-size="16px" font-weight="bold" border-radius="4px" inner-padding="12px 24px"></mj-button>
      <mj-table color="{INK}" font-size="15px"></mj-table>
    </mj-attributes>
    <mj-style>
      img {{ max-width: 100%; height: auto; }}
      a {{ color: {BRAND}; }}
      .keepers-code div {{ word-break: break-all; }}
      @media only screen and (max-width: 479px) {{
        .keepers-product {{ width: 50% !important; max-width: 50% !important; }}
        .keepers-heading div {{ font-size: 22px !important; line-height: 30px !important; }}
        .keepers-subheading div {{ font-size: 20px !important; line-height: 28px !important; }}
      }}
    </mj-style>
  </mj-head>
  <mj-body background-color="{BACKGROUND}" width="600px">
{sections}
  </mj-body>
</mjml>"""
