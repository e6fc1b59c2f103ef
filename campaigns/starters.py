"""The starter library: every playbook's email (campaigns.playbooks) as an MJML template
built from the Keepers blocks (campaigns.email_blocks), in English and in Japanese.

`starters()` lists them; `starter_install(key=…)` makes one into an EmailTemplate (format
"mjml") with a variant in the other language, for staff to adapt. `starter_sample(key)`
is the event and context a starter is written for (a cart for the cart emails, a grant
for the coupon), so a preview, a test or a screenshot shows it as a customer would.

The Japanese copy is written as a Japanese shop writes to its customers (the surname and
様, polite forms, dates as 3月9日), not translated word for word. Copy the blocks do not
take (button labels, the footer) comes from the blocks' gettext strings, built under
`translation.override("ja")`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from django.conf import settings
from django.db import transaction
from django.utils import translation

from campaigns.email_blocks import (
    BRAND,
    MUTED,
    balance,
    button,
    cart_items,
    coupon,
    footer,
    header,
    hero,
    mjml_document,
    products,
    survey,
    text,
)
from campaigns.models import EmailTemplate, EmailTemplateVariant
from crm.errors import KeepersError

M, T = EmailTemplate.Category.MARKETING, EmailTemplate.Category.TRANSACTIONAL


@dataclass(frozen=True)
class Starter:
    """One starter template: English and Japanese copy of the same email. `mjml` and
    `mjml_ja` are whole MJML documents; subjects, preheaders and text parts hold Django
    template syntax like the bodies."""

    key: str
    name: str
    category: str
    subject: str
    preheader: str
    mjml: str
    text_body: str
    subject_ja: str
    preheader_ja: str
    mjml_ja: str
    text_body_ja: str


# A copy chooser: t("English", "日本語") gives the language being built.
Copy = Callable[[str, str], str]

# How a Japanese shop addresses a customer: the surname and 様, else the given name.
JA_NAME = (
    "{% if contact.last_name %}{{ contact.last_name }}様{% elif first_name %}"
    "{{ first_name }}様{% else %}お客様{% endif %}"
)
FIRST = "{% if first_name %}, {{ first_name }}{% endif %}"


@dataclass(frozen=True)
class _Spec:
    key: str
    name: str
    category: str
    subject: tuple[str, str]
    preheader: tuple[str, str]
    sections: Callable[[Copy], list[str]]
    text: tuple[str, str]


def _tiers(t: Copy) -> str:
    """The loyalty programme's tiers side by side (the demo's: Insider, VIB, Rouge), as
    copy for the shop to adjust: a template reads no tier data."""
    tiers = [
        (
            "Insider",
            t("From your first order", "初回のご注文から"),
            t("1 point per $1", "1ドルごとに1ポイント"),
        ),
        ("VIB", t("$350 a year", "年間350ドル以上"), t("1.25× points", "ポイント1.25倍")),
        (
            "Rouge",
            t("$1,000 a year", "年間1,000ドル以上"),
            t("1.5× points and early access", "ポイント1.5倍・新商品の先行案内"),
        ),
    ]
    columns = "\n".join(
        f"""    <mj-column width="33.33%" padding="4px">
      <mj-text align="center" color="{BRAND}" font-size="18px" font-weight="bold" line-height="24px" padding="12px 8px 0">{name}</mj-text>
      <mj-text align="center" color="{MUTED}" font-size="13px" line-height="19px" padding="2px 8px 0">{reach}</mj-text>
      <mj-text align="center" font-size="15px" line-height="21px" padding="4px 8px 12px">{earn}</mj-text>
    </mj-column>"""
        for name, reach, earn in tiers
    )
    return f"""<mj-section css-class="keepers-tiers" padding="0 20px 8px">
{columns}
</mj-section>"""


def _tip(t: Copy) -> str:
    return t(
        '<ol style="margin:0;padding-left:20px;"><li>Grind just before brewing.</li>'
        "<li>Use water just off the boil.</li><li>Weigh: 60 g of coffee per litre.</li></ol>",
        '<ol style="margin:0;padding-left:20px;"><li>豆は淹れる直前に挽く</li>'
        "<li>お湯は沸騰直後、少し落ち着いてから注ぐ</li><li>粉はお湯1リットルに対して60gが目安</li></ol>",
    )


PRODUCT_URL = "{{ event.properties.url|default:shop.url }}"
PRODUCT_IMAGE = {
    "image": "{{ event.properties.image_url }}",
    "image_if": "event.properties.image_url",
    "image_width": "280px",
    "url": PRODUCT_URL,
}

ITEMS_TEXT = (
    "{% load keepers %}{% for item in event.properties.items %}- {{ item.name }} × "
    "{{ item.quantity }}{% if item.price %}  {{ item.price|money:event.properties.currency }}"
    "{% endif %}\n{% endfor %}"
)

SPECS: list[_Spec] = [
    _Spec(
        key="welcome",
        name="Welcome, with the loyalty tiers",
        category=M,
        subject=("Welcome, {{ first_name|default:'friend' }}", "{{ shop.name }}へようこそ"),
        preheader=(
            "Your rewards start with your first order",
            "初回のご注文からポイントが貯まります",
        ),
        sections=lambda t: [
            header(),
            hero(
                image="{{ shop.url }}/img/hero-welcome.jpg",
                heading=t(f"Welcome{FIRST}!", "ご登録ありがとうございます"),
                body=t(
                    "Thanks for joining {{ shop.name }}. We roast small batches every week "
                    "and ship them the same day.",
                    f"{JA_NAME}、{{{{ shop.name }}}}にご登録いただき誠にありがとうございます。"
                    "毎週少量ずつ焙煎し、焙煎したその日のうちに発送しています。",
                ),
                label=t("Visit the shop", "商品を見る"),
            ),
            text(
                heading=t("Rewards that grow with you", "ご利用に応じて広がる特典"),
                body=t(
                    "Every order earns points, and the more you enjoy our coffee, the more "
                    "you get back:",
                    "ご注文ごとにポイントが貯まり、年間のご利用額に応じて会員ランクが上がります。",
                ),
            ),
            _tiers(t),
            products(heading=t("Our most loved coffees", "人気のコーヒー")),
            footer(),
        ],
        text=(
            "Welcome{% if first_name %}, {{ first_name }}{% endif %}!\n\n"
            "Thanks for joining {{ shop.name }}. We roast small batches every week and ship "
            "them the same day.\n\nEvery order earns points:\n"
            "- Insider, from your first order: 1 point per $1\n"
            "- VIB, $350 a year: 1.25x points\n"
            "- Rouge, $1,000 a year: 1.5x points and early access\n\n"
            "Visit the shop: {{ shop.url }}",
            f"{JA_NAME}\n\n{{{{ shop.name }}}}にご登録いただき誠にありがとうございます。\n"
            "毎週少量ずつ焙煎し、焙煎したその日のうちに発送しています。\n\n"
            "ご注文ごとにポイントが貯まります。\n"
            "・Insider（初回のご注文から）：1ドルごとに1ポイント\n"
            "・VIB（年間350ドル以上）：ポイント1.25倍\n"
            "・Rouge（年間1,000ドル以上）：ポイント1.5倍・新商品の先行案内\n\n"
            "商品を見る：\n{{ shop.url }}",
        ),
    ),
    _Spec(
        key="welcome-origins",
        name="Welcome: where our coffee comes from",
        category=M,
        subject=("How we choose our beans", "コーヒー豆の選び方"),
        preheader=("From the farm to your cup", "農園から、お手元の一杯まで"),
        sections=lambda t: [
            header(),
            hero(
                image="{{ shop.url }}/img/hero-origins.jpg",
                heading=t("Where our coffee comes from", "私たちのコーヒーのふるさと"),
                body=t(
                    "We buy directly from farms we visit, and pay above fair-trade prices.",
                    "私たちは実際に訪れた農園から直接豆を買い付け、"
                    "フェアトレード基準を上回る価格でお取引しています。",
                ),
                label=t("Meet the farmers", "生産者を紹介"),
                url="{{ shop.url }}/origins",
            ),
            text(
                body=t(
                    "Every bag names its farm, its altitude and the day we roasted it, so "
                    "you know exactly what is in your cup.",
                    "どの袋にも農園名・標高・焙煎日を記載していますので、"
                    "一杯のコーヒーがどこから来たのかをお確かめいただけます。",
                )
            ),
            footer(),
        ],
        text=(
            "Where our coffee comes from\n\nWe buy directly from farms we visit, and pay "
            "above fair-trade prices. Every bag names its farm, its altitude and the day we "
            "roasted it.\n\nMeet the farmers: {{ shop.url }}/origins",
            "私たちのコーヒーのふるさと\n\n私たちは実際に訪れた農園から直接豆を買い付け、"
            "フェアトレード基準を上回る価格でお取引しています。"
            "どの袋にも農園名・標高・焙煎日を記載しています。\n\n"
            "生産者の紹介：\n{{ shop.url }}/origins",
        ),
    ),
    _Spec(
        key="welcome-first-order",
        name="Welcome: free shipping on the first order",
        category=M,
        subject=("Your first bag ships free", "初回のご注文は送料無料です"),
        preheader=("This week only", "今週限りのご案内です"),
        sections=lambda t: [
            header(),
            hero(
                image="{{ shop.url }}/img/hero-first-order.jpg",
                heading=t("Ready for your first bag?", "最初のひと袋はお決まりですか？"),
                body=t(
                    "Shipping is free on your first order this week.",
                    "今週中の初回ご注文は、送料無料でお届けします。",
                ),
                label=t("Choose your coffee", "コーヒーを選ぶ"),
            ),
            products(heading=t("Where to start", "はじめての方におすすめ")),
            footer(),
        ],
        text=(
            "Ready for your first bag?\n\nShipping is free on your first order this week.\n\n"
            "Choose your coffee: {{ shop.url }}",
            "最初のひと袋はお決まりですか？\n\n今週中の初回ご注文は、送料無料でお届けします。\n\n"
            "コーヒーを選ぶ：\n{{ shop.url }}",
        ),
    ),
    _Spec(
        key="browse-abandonment",
        name="Browse abandonment",
        category=M,
        subject=("Still thinking it over?", "気になる商品はございましたか？"),
        preheader=(
            "The {{ event.properties.name|default:'coffee' }} you looked at",
            "ご覧になった{{ event.properties.name|default:'商品' }}のご案内",
        ),
        sections=lambda t: [
            header(),
            hero(
                **PRODUCT_IMAGE,
                alt="{{ event.properties.name }}",
                heading=t("Still thinking it over?", "まだお悩み中ですか？"),
                body=t(
                    "You were looking at <strong>{{ event.properties.name|default:'something "
                    "nice' }}</strong>. It is still here, roasted fresh this week.",
                    "先日ご覧いただいた<strong>{{ event.properties.name|default:'商品' }}</strong>"
                    "は、まだ在庫がございます。今週焙煎したての豆をお届けします。",
                ),
                label=t("Take another look", "もう一度見る"),
            ),
            products(),
            footer(),
        ],
        text=(
            "Still thinking it over?\n\nYou were looking at "
            "{{ event.properties.name|default:'something nice' }}.\n\n"
            "Take another look: {{ event.properties.url|default:shop.url }}",
            f"{JA_NAME}\n\n先日ご覧いただいた{{{{ event.properties.name|default:'商品' }}}}は、"
            "まだ在庫がございます。\n\n"
            "もう一度見る：\n{{ event.properties.url|default:shop.url }}",
        ),
    ),
    _Spec(
        key="cart-reminder",
        name="Abandoned cart: reminder",
        category=M,
        subject=("You left something behind", "カートに商品が残っています"),
        preheader=("Your cart is waiting", "お買い忘れはございませんか？"),
        sections=lambda t: [
            header(),
            text(
                heading=t("Your cart is waiting", "お買い忘れはございませんか？"),
                body=t(
                    "{% if first_name %}{{ first_name }}, you{% else %}You{% endif %} left "
                    "these in your cart. They are ready when you are.",
                    f"{JA_NAME}、以下の商品がカートに入ったままになっています。",
                ),
            ),
            cart_items(),
            button(label=t("Back to your cart", "カートを見る"), url="{{ shop.url }}/cart"),
            products(),
            footer(),
        ],
        text=(
            "Your cart is waiting\n\n" + ITEMS_TEXT + "\nBack to your cart: {{ shop.url }}/cart",
            f"{JA_NAME}\n\n以下の商品がカートに入ったままになっています。\n\n"
            + ITEMS_TEXT
            + "\nカートを見る：\n{{ shop.url }}/cart",
        ),
    ),
    _Spec(
        key="cart-free-shipping",
        name="Abandoned cart: free shipping",
        category=M,
        subject=("Free shipping on your cart", "カートの商品を送料無料で"),
        preheader=("On us, until Sunday", "日曜日までの特典です"),
        sections=lambda t: [
            header(),
            text(
                heading=t("Shipping is on us", "送料無料でお届けします"),
                body=t(
                    "Complete your order this week and we ship it for free.",
                    "今週中にご注文を完了いただくと、送料無料でお届けします。",
                ),
            ),
            cart_items(),
            button(label=t("Complete your order", "ご注文手続きへ"), url="{{ shop.url }}/cart"),
            footer(),
        ],
        text=(
            "Shipping is on us\n\nComplete your order this week and we ship it for free.\n\n"
            + ITEMS_TEXT
            + "\nComplete your order: {{ shop.url }}/cart",
            "送料無料でお届けします\n\n今週中にご注文を完了いただくと、送料無料でお届けします。\n\n"
            + ITEMS_TEXT
            + "\nご注文手続きへ：\n{{ shop.url }}/cart",
        ),
    ),
    _Spec(
        key="cart-discount",
        name="Abandoned cart: a coupon",
        category=M,
        subject=("10% off what's in your cart", "カートの商品が10%オフに"),
        preheader=("A last nudge, with a code", "期間限定のクーポンをお送りします"),
        sections=lambda t: [
            header(),
            text(
                heading=t("10% off your cart", "カートの商品が10%オフ"),
                body=t(
                    "Here is 10% off the coffee in your cart: enter the code at checkout "
                    "before it expires.",
                    "カートの商品にお使いいただける10%オフのクーポンをお送りします。"
                    "有効期限までに、ご注文手続きの画面でご入力ください。",
                ),
            ),
            coupon(),
            cart_items(),
            button(label=t("Use my code", "クーポンを使う"), url="{{ shop.url }}/cart"),
            footer(),
        ],
        text=(
            "10% off your cart\n\nUse code {{ results.coupon }} at checkout"
            "{% if results.coupon_expires_at %} by {{ results.coupon_expires_at|slice:':10' }}"
            "{% endif %}.\n\n" + ITEMS_TEXT + "\nBack to your cart: {{ shop.url }}/cart",
            "カートの商品が10%オフ\n\nクーポンコード：{{ results.coupon }}"
            "{% if results.coupon_expires_at %}（有効期限：{{ results.coupon_expires_at|slice:':10' }}）"
            "{% endif %}\n\n" + ITEMS_TEXT + "\nカートを見る：\n{{ shop.url }}/cart",
        ),
    ),
    _Spec(
        key="order-thanks",
        name="Post-purchase: thank you",
        category=T,
        subject=("Thank you for your order", "ご注文ありがとうございます"),
        preheader=("Here is what happens next", "今後の流れをご案内します"),
        sections=lambda t: [
            header(),
            text(
                heading=t(f"Thank you{FIRST}!", "ご注文ありがとうございます"),
                body=t(
                    "We are preparing your order{% if event.properties.order_id %} "
                    "{{ event.properties.order_id }}{% endif %}. Most orders leave the "
                    "roastery the same day, and we email you the tracking link when it ships.",
                    f"{JA_NAME}、このたびはご注文いただき誠にありがとうございます"
                    "{% if event.properties.order_id %}（ご注文番号：{{ event.properties.order_id }}）"
                    "{% endif %}。ほとんどのご注文は当日中に発送し、発送時に配送状況を確認できる"
                    "リンクをメールでお知らせします。",
                ),
            ),
            cart_items(heading=t("Your order", "ご注文内容")),
            text(
                body=t(
                    "Questions about your order? Just reply to this email.",
                    "ご不明な点がございましたら、このメールにそのままご返信ください。",
                )
            ),
            footer(marketing=False),
        ],
        text=(
            "Thank you{% if first_name %}, {{ first_name }}{% endif %}!\n\n"
            "We are preparing your order{% if event.properties.order_id %} "
            "{{ event.properties.order_id }}{% endif %}.\n\n" + ITEMS_TEXT + "\n"
            "Questions? Just reply to this email.",
            f"{JA_NAME}\n\nこのたびはご注文いただき誠にありがとうございます。"
            "{% if event.properties.order_id %}\nご注文番号：{{ event.properties.order_id }}{% endif %}"
            "\n\n" + ITEMS_TEXT + "\nご不明な点がございましたら、このメールにご返信ください。",
        ),
    ),
    _Spec(
        key="brewing-tips",
        name="Post-purchase: brewing tips",
        category=M,
        subject=("Three tips for a better cup", "おいしく淹れる3つのコツ"),
        preheader=("Three brewing tips", "ご自宅のコーヒーをもっとおいしく"),
        sections=lambda t: [
            header(),
            hero(
                image="{{ shop.url }}/img/hero-brewing.jpg",
                heading=t("Three tips for a better cup", "もっとおいしく淹れる3つのコツ"),
                body=_tip(t),
                label=t("Read our brewing guides", "淹れ方ガイドを見る"),
                url="{{ shop.url }}/brew",
            ),
            products(heading=t("For your next brew", "次の一杯におすすめ")),
            footer(),
        ],
        text=(
            "Three tips for a better cup\n\n1. Grind just before brewing.\n"
            "2. Use water just off the boil.\n3. Weigh: 60 g of coffee per litre.\n\n"
            "Our brewing guides: {{ shop.url }}/brew",
            "もっとおいしく淹れる3つのコツ\n\n1. 豆は淹れる直前に挽く\n"
            "2. お湯は沸騰直後、少し落ち着いてから注ぐ\n3. 粉はお湯1リットルに対して60gが目安\n\n"
            "淹れ方ガイド：\n{{ shop.url }}/brew",
        ),
    ),
    _Spec(
        key="review-request",
        name="Post-purchase: review request",
        category=M,
        subject=("How was your order?", "商品はいかがでしたか？"),
        preheader=("Tell us in one click", "ワンクリックでお答えいただけます"),
        sections=lambda t: [
            header(),
            text(
                heading=t("How was your order?", "ご注文の商品はいかがでしたか？"),
                body=t(
                    "One click tells us how we did.",
                    "下の数字をひとつ選ぶだけでお答えいただけます。",
                ),
            ),
            survey(name="Post-purchase CSAT"),
            text(
                body=t(
                    "Your review helps other coffee lovers choose.",
                    "いただいたレビューは、ほかのお客様の商品選びの参考になります。",
                )
            ),
            button(label=t("Write a review", "レビューを書く"), url="{{ shop.url }}/reviews"),
            footer(),
        ],
        text=(
            "How was your order?\n\nYour review helps other coffee lovers choose.\n\n"
            "Write a review: {{ shop.url }}/reviews",
            "ご注文の商品はいかがでしたか？\n\nいただいたレビューは、ほかのお客様の商品選びの"
            "参考になります。\n\nレビューを書く：\n{{ shop.url }}/reviews",
        ),
    ),
    _Spec(
        key="win-back",
        name="Win-back: we miss you",
        category=M,
        subject=("We miss you, {{ first_name|default:'friend' }}", "お久しぶりです"),
        preheader=("New harvests are in", "今季の新豆が入荷しました"),
        sections=lambda t: [
            header(),
            hero(
                image="{{ shop.url }}/img/hero-harvest.jpg",
                heading=t("It has been a while", "お久しぶりです"),
                body=t(
                    "The new harvests from Huila and Sidamo have arrived. Come and taste them.",
                    f"{JA_NAME}、お元気でお過ごしでしょうか。コロンビア・ウイラと"
                    "エチオピア・シダモから今季の新豆が届きました。ぜひ味わってみてください。",
                ),
                label=t("See what is new", "新入荷を見る"),
            ),
            products(heading=t("Picked for you", "あなたへのおすすめ")),
            footer(),
        ],
        text=(
            "It has been a while\n\nThe new harvests from Huila and Sidamo have arrived. "
            "Come and taste them: {{ shop.url }}",
            f"{JA_NAME}\n\nお元気でお過ごしでしょうか。コロンビア・ウイラとエチオピア・シダモから"
            "今季の新豆が届きました。\n\n新入荷を見る：\n{{ shop.url }}",
        ),
    ),
    _Spec(
        key="win-back-offer",
        name="Win-back: 15% to come back",
        category=M,
        subject=("15% to welcome you back", "おかえりなさい特典15%オフ"),
        preheader=("Only this week", "今週限りのクーポンです"),
        sections=lambda t: [
            header(),
            text(
                heading=t("15% off, just for you", "特別に15%オフでご案内します"),
                body=t(
                    "We would love to roast for you again. Take 15% off your next order this week.",
                    "またご利用いただけましたら幸いです。今週中のご注文に、"
                    "15%オフのクーポンをお使いいただけます。",
                ),
            ),
            coupon(code="WELCOMEBACK15", note=t("This week only", "今週限り有効")),
            button(),
            footer(),
        ],
        text=(
            "15% off, just for you\n\nUse code WELCOMEBACK15 this week: {{ shop.url }}",
            "特別に15%オフでご案内します\n\nクーポンコード：WELCOMEBACK15（今週限り有効）\n"
            "{{ shop.url }}",
        ),
    ),
    _Spec(
        key="re-engagement",
        name="Re-engagement: still want our emails?",
        category=M,
        subject=("Still want to hear from us?", "今後もメールをお送りしてよろしいですか？"),
        preheader=("Stay or go, one click", "配信の継続・停止はワンクリックで"),
        sections=lambda t: [
            header(),
            text(
                heading=t("Still want our emails?", "今後もメールをお届けしてよろしいですか？"),
                body=t(
                    "If you do, just open this email: that is all. If not, "
                    '<a href="{{ unsubscribe_url }}">unsubscribe here</a> and we will not '
                    "write again.",
                    f"{JA_NAME}、しばらくメールをご覧いただいていないようでしたので、ご連絡いたしました。"
                    "引き続きお受け取りいただける場合は、このメールを開くだけで結構です。"
                    '配信を停止される場合は<a href="{{ unsubscribe_url }}">こちら</a>からお手続きください。',
                ),
            ),
            button(
                label=t("Choose what we send", "受け取るメールを選ぶ"), url="{{ preferences_url }}"
            ),
            footer(),
        ],
        text=(
            "Still want our emails? If you do, just open this one. If not, unsubscribe: "
            "{{ unsubscribe_url }}",
            f"{JA_NAME}\n\n引き続きメールをお受け取りいただける場合は、このメールを開くだけで"
            "結構です。配信停止はこちら：\n{{ unsubscribe_url }}",
        ),
    ),
    _Spec(
        key="re-engagement-last",
        name="Re-engagement: the last email",
        category=M,
        subject=("Last email from us", "最後のご案内です"),
        preheader=("Unless you say otherwise", "このメールを開いていただければ配信を続けます"),
        sections=lambda t: [
            header(),
            text(
                heading=t("This is our last email", "これが最後のメールです"),
                body=t(
                    "We will stop writing unless you open this one. We would be sorry to see "
                    "you go, and you are welcome back any time.",
                    "このメールを開いていただけない場合、今後のメール配信を停止いたします。"
                    "またいつでもお気軽にご登録ください。",
                ),
            ),
            button(label=t("Keep me subscribed", "配信を続ける"), url="{{ preferences_url }}"),
            footer(),
        ],
        text=(
            "This is our last email: we will stop writing unless you open this one.\n\n"
            "Keep me subscribed: {{ preferences_url }}",
            "これが最後のメールです。このメールを開いていただけない場合、今後の配信を停止いたします。"
            "\n\n配信を続ける：\n{{ preferences_url }}",
        ),
    ),
    _Spec(
        key="birthday",
        name="Birthday",
        category=M,
        subject=(
            "Happy birthday, {{ first_name|default:'friend' }}!",
            "お誕生日おめでとうございます",
        ),
        preheader=("A treat from us", "ささやかな贈り物をご用意しました"),
        sections=lambda t: [
            header(),
            hero(
                image="{{ shop.url }}/img/hero-birthday.jpg",
                heading=t(f"Happy birthday{FIRST}!", "お誕生日おめでとうございます"),
                body=t(
                    "Enjoy a free tasting box with your next order this month: our way of "
                    "saying thank you.",
                    f"{JA_NAME}、お誕生日おめでとうございます。日頃の感謝を込めて、"
                    "今月中のご注文にテイスティングボックスを無料でお付けします。",
                ),
                label=t("Choose your treat", "プレゼントを選ぶ"),
            ),
            footer(),
        ],
        text=(
            "Happy birthday{% if first_name %}, {{ first_name }}{% endif %}!\n\n"
            "Enjoy a free tasting box with your next order this month: {{ shop.url }}",
            f"{JA_NAME}\n\nお誕生日おめでとうございます。日頃の感謝を込めて、"
            "今月中のご注文にテイスティングボックスを無料でお付けします。\n\n{{ shop.url }}",
        ),
    ),
    _Spec(
        key="back-in-stock",
        name="Back in stock",
        category=M,
        subject=(
            "{{ event.properties.name|default:'It'|truncatechars:22 }} is back",
            "{{ event.properties.name|default:'ご希望の商品'|truncatechars:18 }}が再入荷しました",
        ),
        preheader=("You asked us to tell you", "入荷のお知らせをご希望いただいた商品です"),
        sections=lambda t: [
            header(),
            hero(
                **PRODUCT_IMAGE,
                alt="{{ event.properties.name }}",
                heading=t("It is back in stock", "再入荷のお知らせ"),
                body=t(
                    "<strong>{{ event.properties.name }}</strong> is back, and you asked us "
                    "to let you know. Stock is limited: the last batch went in days.",
                    "入荷のお知らせをご希望いただいていた<strong>{{ event.properties.name }}"
                    "</strong>が再入荷しました。前回は数日で完売しましたので、お早めにどうぞ。",
                ),
                label=t("Get yours", "今すぐ購入する"),
            ),
            footer(),
        ],
        text=(
            "{{ event.properties.name }} is back in stock. Stock is limited.\n\n"
            "Get yours: {{ event.properties.url|default:shop.url }}",
            "{{ event.properties.name }}が再入荷しました。数に限りがございますので、お早めにどうぞ。\n\n"
            "商品ページ：\n{{ event.properties.url|default:shop.url }}",
        ),
    ),
    _Spec(
        key="price-drop",
        name="Price drop",
        category=M,
        subject=(
            "The price just dropped",
            "お値下げのお知らせ",
        ),
        preheader=(
            "{{ event.properties.name|default:'What you looked at' }}, for less",
            "{{ event.properties.name|default:'ご覧になった商品' }}がお求めやすくなりました",
        ),
        sections=lambda t: [
            header(),
            hero(
                **PRODUCT_IMAGE,
                alt="{{ event.properties.name }}",
                heading=t("The price just dropped", "お値下げのお知らせ"),
                body=t(
                    "{% load keepers %}<strong>{{ event.properties.name }}</strong> was "
                    "<s>{{ event.properties.old_price|money:event.properties.currency }}</s>, now "
                    "<strong>{{ event.properties.new_price|money:event.properties.currency }}</strong>.",
                    "{% load keepers %}ご覧いただいた<strong>{{ event.properties.name }}"
                    "</strong>がお求めやすくなりました。<br>通常価格 "
                    "<s>{{ event.properties.old_price|money:event.properties.currency }}</s> → "
                    "<strong>{{ event.properties.new_price|money:event.properties.currency }}</strong>",
                ),
                label=t("Take a look", "商品を見る"),
            ),
            footer(),
        ],
        text=(
            "{% load keepers %}{{ event.properties.name }}: was "
            "{{ event.properties.old_price|money:event.properties.currency }}, now "
            "{{ event.properties.new_price|money:event.properties.currency }}.\n\n"
            "Take a look: {{ event.properties.url|default:shop.url }}",
            "{% load keepers %}{{ event.properties.name }}がお求めやすくなりました。\n通常価格 "
            "{{ event.properties.old_price|money:event.properties.currency }} → "
            "{{ event.properties.new_price|money:event.properties.currency }}\n\n商品を見る：\n{{ event.properties.url|default:shop.url }}",
        ),
    ),
    _Spec(
        key="credit-reminder",
        name="Points and store credit reminder",
        category=M,
        subject=(
            "Your {% if expiring.is_points %}points expire{% else %}credit expires{% endif %} "
            "{{ expiring.expires_at|date:'j M' }}",
            "{% if expiring.is_points %}ポイント{% else %}ストアクレジット{% endif %}"
            "の有効期限が近づいています",
        ),
        preheader=(
            "Use {% if expiring.is_points %}them before they are{% else %}it before it is"
            "{% endif %} gone",
            "{{ expiring.expires_at|date:'n月j日' }}に失効します",
        ),
        sections=lambda t: [
            header(),
            text(
                heading=t(f"Don't let it go to waste{FIRST}", "失効前にぜひご利用ください"),
                body=t(
                    "Part of your balance expires soon. Treat yourself before it is gone.",
                    f"{JA_NAME}、お持ちの{{% if expiring.is_points %}}ポイント{{% else %}}"
                    "ストアクレジット{% endif %}の一部がまもなく有効期限を迎えます。"
                    "失効する前に、ぜひお買い物にご利用ください。",
                ),
            ),
            balance(),
            button(),
            products(heading=t("Spend it on", "こちらの商品はいかがですか")),
            footer(),
        ],
        text=(
            "{% load keepers %}{% if expiring.is_points %}{{ expiring.amount }} of your points "
            "expire{% else %}{{ expiring.amount|money:expiring.unit }} of your store credit "
            "expires{% endif %} on {{ expiring.expires_at|date:'j F Y' }}.\n"
            "In all you have {% if expiring.is_points %}{{ expiring.balance }} points"
            "{% else %}{{ expiring.balance|money:expiring.unit }}{% endif %} to spend today.\n\nShop now: {{ shop.url }}",
            f"{{% load keepers %}}{JA_NAME}\n\n{{% if expiring.is_points %}}"
            "{{ expiring.amount }}ポイント{% else %}{{ expiring.amount|money:expiring.unit }}分の"
            "ストアクレジット{% endif %}"
            "が{{ expiring.expires_at|date:'Y年n月j日' }}に失効します。\n"
            "現在の残高：{% if expiring.is_points %}{{ expiring.balance }}ポイント"
            "{% else %}{{ expiring.balance|money:expiring.unit }}{% endif %}\n\nお買い物はこちら：\n{{ shop.url }}",
        ),
    ),
    _Spec(
        key="referral-reward",
        name="Referral reward",
        category=T,
        subject=("You earned {{ event.properties.reward }}", "紹介特典を獲得しました"),
        preheader=("Thanks for spreading the word", "ご紹介ありがとうございます"),
        sections=lambda t: [
            header(),
            text(
                heading=t(f"Thank you{FIRST}!", "ご紹介ありがとうございます"),
                body=t(
                    "{% if event.properties.side == 'referrer' %}"
                    "{{ event.properties.friend_name|default:'Your friend' }} placed their "
                    "first order with your link.{% else %}Welcome again: your first order came "
                    "through a friend's link.{% endif %} You earned <strong>"
                    "{{ event.properties.reward }}</strong>{% if event.properties.coupon %} with "
                    "the code <strong>{{ event.properties.coupon }}</strong>{% endif %}"
                    "{% if event.properties.expires_at %}, to use by "
                    "{{ event.properties.expires_at|slice:':10' }}{% endif %}.",
                    "{% if event.properties.side == 'referrer' %}"
                    "{{ event.properties.friend_name|default:'ご友人' }}様が、あなたの紹介リンク"
                    "から初めてご注文くださいました。{% else %}ご友人の紹介リンクからの初回ご注文、"
                    "誠にありがとうございました。{% endif %}特典として<strong>"
                    "{{ event.properties.reward }}</strong>をお贈りします"
                    "{% if event.properties.coupon %}（クーポンコード：<strong>"
                    "{{ event.properties.coupon }}</strong>）{% endif %}"
                    "{% if event.properties.expires_at %}。有効期限は"
                    "{{ event.properties.expires_at|slice:':10' }}です{% endif %}。",
                ),
            ),
            button(label=t("See your rewards", "特典を確認する"), url="{{ referral_url }}"),
            footer(marketing=False),
        ],
        text=(
            "Thank you! You earned {{ event.properties.reward }}"
            "{% if event.properties.coupon %} with the code {{ event.properties.coupon }}"
            "{% endif %}.\n\nSee your rewards: {{ referral_url }}",
            "ご紹介ありがとうございます。特典として{{ event.properties.reward }}をお贈りします"
            "{% if event.properties.coupon %}（クーポンコード：{{ event.properties.coupon }}）"
            "{% endif %}。\n\n特典を確認する：\n{{ referral_url }}",
        ),
    ),
    _Spec(
        key="nps",
        name="NPS survey",
        category=M,
        subject=(
            "One quick question, {{ first_name|default:'friend' }}",
            "ひとつだけ質問させてください",
        ),
        preheader=("Answer in one click", "ワンクリックで回答できます"),
        sections=lambda t: [
            header(),
            text(
                heading=t("How are we doing?", "当店はいかがでしょうか？"),
                body=t(
                    "It takes one click: choose a number below.",
                    "下の数字をひとつ選ぶだけでお答えいただけます。",
                ),
            ),
            survey(name="NPS"),
            text(
                body=t(
                    "Thank you for helping us roast better coffee.",
                    "より良いコーヒーづくりのため、ご協力をお願いいたします。",
                )
            ),
            footer(),
        ],
        text=(
            "How are we doing? Open this email to answer in one click.\n\n"
            "Thank you for helping us roast better coffee.",
            "当店はいかがでしょうか？ このメールを開いて、ワンクリックでお答えください。\n\n"
            "より良いコーヒーづくりのため、ご協力をお願いいたします。",
        ),
    ),
    _Spec(
        key="survey-detractor",
        name="NPS follow-up: sorry, can we help?",
        category=T,
        subject=("Sorry, can we help?", "ご期待に沿えず申し訳ございません"),
        preheader=("A person reads your reply", "いただいたご返信には担当者が目を通します"),
        sections=lambda t: [
            header(),
            text(
                body=t(
                    "Hi {{ first_name|default:'there' }},<br><br>Thank you for your honest "
                    "answer. We are sorry we let you down{% if event.properties.score is not None %}"
                    " (you gave us {{ event.properties.score }} out of "
                    "{% if event.properties.kind == 'nps' %}10{% else %}5{% endif %}){% endif %}."
                    "<br><br><strong>Just reply to this email</strong> and tell us what went "
                    "wrong: it goes straight to the people who roast and ship your coffee, and we "
                    "answer within one working day. If an order is the problem, include its "
                    "number and we will put it right.<br><br>The {{ shop.name }} team",
                    f"{JA_NAME}<br><br>アンケートに率直なご回答をいただき、ありがとうございました。"
                    "ご期待に沿えず、誠に申し訳ございません"
                    "{% if event.properties.score is not None %}（{% if event.properties.kind == 'nps' %}"
                    "10{% else %}5{% endif %}点中{{ event.properties.score }}点）{% endif %}。"
                    "<br><br>よろしければ<strong>このメールにご返信</strong>いただき、"
                    "お気づきの点をお聞かせください。焙煎と発送を担当するスタッフが直接拝読し、"
                    "1営業日以内にお返事いたします。ご注文に関することでしたら、"
                    "ご注文番号をお書き添えいただけますと幸いです。<br><br>{{ shop.name }} スタッフ一同",
                )
            ),
            footer(marketing=False),
        ],
        text=(
            "Hi {{ first_name|default:'there' }},\n\nThank you for your honest answer. We are "
            "sorry we let you down.\n\nJust reply to this email and tell us what went wrong: "
            "we answer within one working day.\n\nThe {{ shop.name }} team",
            f"{JA_NAME}\n\nアンケートにご回答いただき、ありがとうございました。"
            "ご期待に沿えず、誠に申し訳ございません。\n\nこのメールにご返信いただければ、"
            "担当者が1営業日以内にお返事いたします。\n\n{{ shop.name }} スタッフ一同",
        ),
    ),
    _Spec(
        key="survey-promoter",
        name="NPS follow-up: invite your friends",
        category=M,
        subject=(
            "Share the love, {{ first_name|default:'friend' }}?",
            "ご友人にもご紹介いただけませんか？",
        ),
        preheader=("Your friends get a welcome gift", "ご友人には初回特典をご用意しています"),
        sections=lambda t: [
            header(),
            text(
                heading=t(
                    "Thank you for the {{ event.properties.score|default:'kind words' }}!",
                    "高い評価をありがとうございます",
                ),
                body=t(
                    "It means a lot to a small roastery. If you know someone who would enjoy "
                    "our coffee, share your personal link: your friend gets a welcome gift on "
                    "their first order, and you are rewarded when they order.",
                    f"{JA_NAME}、小さな焙煎所にとって何よりの励みです。"
                    "当店のコーヒーを気に入ってくださりそうな方がいらっしゃいましたら、"
                    "あなた専用の紹介リンクをお伝えください。ご友人には初回のご注文で"
                    "ウェルカムギフトを、あなたにはご友人のご注文時に特典をお贈りします。",
                ),
            ),
            button(label=t("Invite your friends", "ご友人を招待する"), url="{{ referral_url }}"),
            text(
                body=t(
                    "Your link, your code and your rewards are all on that page.",
                    "紹介リンク・紹介コード・獲得した特典は、すべてこちらのページでご確認いただけます。",
                )
            ),
            footer(),
        ],
        text=(
            "Thank you! If you know someone who would enjoy our coffee, share your personal "
            "link: your friend gets a welcome gift on their first order.\n\n"
            "Invite your friends: {{ referral_url }}",
            f"{JA_NAME}\n\n高い評価をありがとうございます。ご友人に紹介リンクをお伝えいただくと、"
            "ご友人には初回特典を、あなたには特典をお贈りします。\n\n"
            "ご友人を招待する：\n{{ referral_url }}",
        ),
    ),
    _Spec(
        key="newsletter",
        name="Monthly newsletter",
        category=M,
        subject=("This month: new harvests", "{{ shop.name }}の今月のお便り"),
        preheader=(
            "New harvests, brewing notes and picks for you",
            "新豆、淹れ方のヒント、おすすめ商品",
        ),
        sections=lambda t: [
            header(),
            hero(
                image="{{ shop.url }}/img/hero-newsletter.jpg",
                heading=t("This month at {{ shop.name }}", "今月のお便り"),
                body=t(
                    "The new harvests from Huila and Sidamo are in, roasted this week.",
                    "コロンビア・ウイラとエチオピア・シダモの新豆が入荷し、今週焙煎しました。",
                ),
                label=t("Shop the new harvest", "新豆を見る"),
            ),
            text(
                heading=t("Brewing note", "淹れ方メモ"),
                body=t(
                    "Try a 1:16 ratio for the Sidamo: bright, with bergamot.",
                    "シダモは豆とお湯を1:16の比率で淹れるのがおすすめです。"
                    "ベルガモットのような明るい香りが広がります。",
                ),
            ),
            products(heading=t("Picked for you", "あなたへのおすすめ")),
            footer(),
        ],
        text=(
            "This month at {{ shop.name }}\n\nThe new harvests from Huila and Sidamo are in, "
            "roasted this week.\n\nBrewing note: try a 1:16 ratio for the Sidamo.\n\n"
            "{{ shop.url }}",
            "{{ shop.name }} 今月のお便り\n\nコロンビア・ウイラとエチオピア・シダモの新豆が入荷し、"
            "今週焙煎しました。\n\n淹れ方メモ：シダモは1:16の比率で淹れるのがおすすめです。\n\n"
            "{{ shop.url }}",
        ),
    ),
]


def _build(spec: _Spec, language: str) -> tuple[str, str, str, str]:
    """(subject, preheader, mjml, text) of a spec in one language."""
    ja = language == "ja"

    def t(en: str, japanese: str) -> str:
        return japanese if ja else en

    pick = 1 if ja else 0
    with translation.override(language):
        sections = "\n".join(spec.sections(t))
    document = mjml_document(
        sections, title=spec.subject[pick], preheader=spec.preheader[pick], lang=language
    )
    return spec.subject[pick], spec.preheader[pick], document, spec.text[pick]


def starters() -> list[Starter]:
    """Every starter, in the order of the playbooks (welcome, browsing, cart, after the
    order, win-back, re-engagement, dates, products, rewards, surveys and their follow-ups,
    the newsletter)."""
    return list(_starters())


@cache
def _starters() -> tuple[Starter, ...]:
    """Built once per process: the copy is code, and the blocks' words come from the
    catalogues of the two languages, which do not change while it runs."""
    made = []
    for spec in SPECS:
        subject, preheader, mjml, text_body = _build(spec, "en")
        subject_ja, preheader_ja, mjml_ja, text_body_ja = _build(spec, "ja")
        made.append(
            Starter(
                key=spec.key,
                name=spec.name,
                category=spec.category,
                subject=subject,
                preheader=preheader,
                mjml=mjml,
                text_body=text_body,
                subject_ja=subject_ja,
                preheader_ja=preheader_ja,
                mjml_ja=mjml_ja,
                text_body_ja=text_body_ja,
            )
        )
    return tuple(made)


def starter_get(key: str) -> Starter:
    """The starter of that key; KeepersError (naming the keys) when there is none."""
    for starter in starters():
        if starter.key == key:
            return starter
    known = ", ".join(s.key for s in starters())
    raise KeepersError(f"There is no starter {key!r} (the starters: {known}).", field="key")


@transaction.atomic
def starter_install(*, key: str, name: str | None = None) -> EmailTemplate:
    """A new block template (format "mjml") from the starter `key`, in the shop's
    language (LANGUAGE_CODE: Japanese when it is "ja", else English) with a variant in the
    other, each compiled at save. Staff duplicate a starter this way, so it never
    overwrites: without `name`, the starter's name, numbered when taken ("Birthday 2");
    a `name` that is taken is refused (KeepersError on "name")."""
    starter = starter_get(key)
    if name is not None:
        name = name.strip()
        if not name:
            raise KeepersError("Give the new template a name.", field="name")
        if EmailTemplate.objects.filter(name=name).exists():
            raise KeepersError(f'A template named "{name}" exists already.', field="name")
    else:
        name = _free_name(starter.name)
    english = (starter.subject, starter.preheader, starter.mjml, starter.text_body)
    japanese = (starter.subject_ja, starter.preheader_ja, starter.mjml_ja, starter.text_body_ja)
    own, other = ("ja", "en") if settings.LANGUAGE_CODE.startswith("ja") else ("en", "ja")
    first, second = (japanese, english) if own == "ja" else (english, japanese)
    template = EmailTemplate.objects.create(
        name=name,
        category=starter.category,
        format=EmailTemplate.Format.MJML,
        language=own,
        subject=first[0],
        preheader=first[1],
        mjml_body=first[2],
        text_body=first[3],
    )
    EmailTemplateVariant.objects.create(
        template=template,
        language=other,
        subject=second[0],
        preheader=second[1],
        mjml_body=second[2],
        text_body=second[3],
    )
    template.refresh_from_db()  # the variant stamped its languages and a new version
    return template


def _free_name(base: str) -> str:
    taken = set(EmailTemplate.objects.filter(name__startswith=base).values_list("name", flat=True))
    if base not in taken:
        return base
    n = 2
    while f"{base} {n}" in taken:
        n += 1
    return f"{base} {n}"


# --- what each starter is written for: the demo shop's catalog (crm.services.demo) ------
_ITEMS = [
    {"product_id": "SKU-001", "quantity": 2},
    {"product_id": "SKU-005", "quantity": 1},
]
_PRODUCT = {
    "product_id": "SKU-002",
    "name": "Single-origin Ethiopia 250g",
    "url": "https://shop.example.com/p/SKU-002",
    "image_url": "https://shop.example.com/img/SKU-002.jpg",
    "price": 16.5,
    "currency": "USD",
}
_SAMPLES: dict[str, dict] = {
    "browse-abandonment": {"event": ("Product Viewed", _PRODUCT)},
    "cart-reminder": {"event": ("Checkout Started", {"currency": "USD", "items": _ITEMS})},
    "cart-free-shipping": {"event": ("Checkout Started", {"currency": "USD", "items": _ITEMS})},
    "cart-discount": {
        "event": ("Checkout Started", {"currency": "USD", "items": _ITEMS}),
        "results": {"coupon": "CART-7QX2M", "coupon_expires_at": "2026-03-16T23:59:00+00:00"},
    },
    "order-thanks": {
        "event": (
            "Order Completed",
            {"order_id": "1042", "total": 47.5, "currency": "USD", "items": _ITEMS},
        )
    },
    "back-in-stock": {"event": ("Product Restocked", _PRODUCT)},
    "price-drop": {
        "event": (
            "Price Dropped",
            {**_PRODUCT, "old_price": "19.00", "new_price": "16.50"},
        )
    },
    "credit-reminder": {
        "expiring": {
            "amount": "250",
            "unit": "points",
            "is_points": True,
            "expires_at": dt.datetime(2026, 3, 16, 12, tzinfo=dt.UTC),
            "balance": "900",
        }
    },
    "survey-detractor": {
        "event": ("Survey Answered", {"score": 4, "kind": "nps", "category": "detractor"})
    },
    "survey-promoter": {
        "event": ("Survey Answered", {"score": 10, "kind": "nps", "category": "promoter"})
    },
    "referral-reward": {
        "event": (
            "Referral Rewarded",
            {
                "side": "referrer",
                "friend_name": "Kenji",
                "reward": "$10 store credit",
                "expires_at": "2026-06-30T23:59:00+00:00",
            },
        )
    },
}


def starter_sample(key: str) -> dict:
    """What the starter `key` is written for, to preview, test or screenshot it:
    `event` (an event name and its properties, or None) and the context its send step
    adds (`results` of a grant step, loyalty's `expiring`)."""
    starter_get(key)
    sample = _SAMPLES.get(key, {})
    return {
        "event": sample.get("event"),
        "results": sample.get("results", {}),
        **({"expiring": sample["expiring"]} if "expiring" in sample else {}),
    }
