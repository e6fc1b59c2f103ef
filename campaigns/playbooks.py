"""The classic lifecycle sequences, with their templates and surveys, installed by
`manage.py demo` (idempotent: an existing survey, template or campaign of the same name is
left alone)."""

from __future__ import annotations

import datetime as dt

from django.db import transaction

from campaigns.models import Broadcast, Campaign, EmailTemplate, Survey
from campaigns.services.definitions import TRIGGERS, campaign_publish
from campaigns.steps import REGISTRY
from crm import clock
from crm.models import Topic

ITEMS = """{% if event.properties.items %}<table role="presentation" width="100%">
{% for item in event.properties.items %}<tr>
<td width="72">{% if item.image_url %}<img src="{{ item.image_url }}" alt="" width="64">{% endif %}</td>
<td><a href="{{ item.url|default:shop.url }}">{{ item.name }}</a></td>
<td align="right">{% if item.price %}{{ item.price }}{% endif %}</td></tr>{% endfor %}</table>{% endif %}"""

# Products the contact may like (campaigns.templatetags.keepers): bought together with
# what they bought or left in the cart, bestsellers in their categories, recently viewed.
RECOMMENDED = """{% load keepers %}{% recommendations 3 as picks %}{% if picks %}
<h2>You might also like</h2><table role="presentation" width="100%">
{% for p in picks %}<tr>
<td width="72">{% if p.image_url %}<img src="{{ p.image_url }}" alt="" width="64">{% endif %}</td>
<td><a href="{{ p.url|default:shop.url }}">{{ p.name }}</a></td>
<td align="right">{% if p.price %}{{ p.price|floatformat:2 }} {{ p.currency }}{% endif %}</td></tr>{% endfor %}</table>{% endif %}"""

PRODUCT = """<table role="presentation" width="100%"><tr>
<td width="140">{% if event.properties.image_url %}<img src="{{ event.properties.image_url }}" alt="" width="128">{% endif %}</td>
<td><h2>{{ event.properties.name }}</h2></td></tr></table>"""

M, T = EmailTemplate.Category.MARKETING, EmailTemplate.Category.TRANSACTIONAL
TEMPLATES = [
    (
        "welcome-1",
        M,
        "Welcome, {{ first_name|default:'friend' }}",
        "Here is what we are about",
        "<h1>Welcome{% if first_name %}, {{ first_name }}{% endif %}!</h1><p>Thanks for joining {{ shop.name }}. "
        "We roast small batches every week and ship them the same day.</p>"
        '<p><a class="button" href="{{ shop.url }}">Visit the shop</a></p>',
    ),
    (
        "welcome-2",
        M,
        "How we choose our beans",
        "From the farm to your cup",
        "<h1>Where our coffee comes from</h1><p>We buy directly from farms we visit, and pay above fair-trade prices.</p>",
    ),
    (
        "welcome-3",
        M,
        "Your first order, on us*",
        "Free shipping this week",
        "<h1>Ready for your first bag?</h1><p>Shipping is free on your first order this week.</p>"
        '<p><a class="button" href="{{ shop.url }}">Choose your coffee</a></p>',
    ),
    (
        "browse-1",
        M,
        "Still thinking it over?",
        "The product you looked at",
        "<h1>Still thinking it over?</h1><p>You were looking at {{ event.properties.name|default:'something nice' }}.</p>"
        '<p><a class="button" href="{{ event.properties.url|default:shop.url }}">Take another look</a></p>',
    ),
    (
        "cart-1",
        M,
        "You left something behind",
        "Your cart is waiting",
        "<h1>Your cart is waiting</h1>"
        + ITEMS
        + '<p><a class="button" href="{{ shop.url }}/cart">Back to your cart</a></p>'
        + RECOMMENDED,
    ),
    (
        "cart-2",
        M,
        "Free shipping on your cart",
        "On us, until Sunday",
        "<h1>Shipping is on us</h1><p>Complete your order this week and we ship it for free.</p>"
        + ITEMS,
    ),
    (
        "cart-3",
        M,
        "10% off what's in your cart",
        "A last nudge",
        "<h1>10% off your cart</h1><p>Use code <strong>{{ results.coupon }}</strong> at checkout"
        "{% if results.coupon_expires_at %} by {{ results.coupon_expires_at|slice:':10' }}{% endif %}.</p>"
        + ITEMS,
    ),
    (
        "post-1",
        T,
        "Thank you for your order",
        "Here is what happens next",
        "<h1>Thank you{% if first_name %}, {{ first_name }}{% endif %}!</h1><p>We are preparing your order.</p>"
        + ITEMS,
    ),
    (
        "post-2",
        M,
        "Getting the best from your coffee",
        "Three brewing tips",
        "<h1>Three tips for a better cup</h1><ol><li>Grind just before brewing.</li><li>Use water just off the boil."
        "</li><li>Weigh: 60 g of coffee per litre.</li></ol>" + RECOMMENDED,
    ),
    (
        "post-3",
        M,
        "How was it?",
        "Tell us in one click",
        '<h1>How was your order?</h1>{% load keepers %}{% survey_row "Post-purchase CSAT" %}'
        "<p>Your review helps other coffee lovers choose.</p>"
        '<p><a class="button" href="{{ shop.url }}/reviews">Write a review</a></p>',
    ),
    (
        "winback-1",
        M,
        "We miss you, {{ first_name|default:'friend' }}",
        "New harvests are in",
        "<h1>It has been a while</h1><p>The new harvests have arrived. Come and taste them.</p>"
        + RECOMMENDED,
    ),
    (
        "winback-2",
        M,
        "15% to welcome you back",
        "Only this week",
        "<h1>15% off, just for you</h1><p>Use code WELCOMEBACK15 this week.</p>",
    ),
    (
        "birthday",
        M,
        "Happy birthday, {{ first_name|default:'friend' }}!",
        "A treat from us",
        "<h1>Happy birthday!</h1><p>Enjoy a free tasting box with your next order this month.</p>",
    ),
    (
        "reengage-1",
        M,
        "Still want to hear from us?",
        "Stay or go, one click",
        "<h1>Still want our emails?</h1><p>If you do, just open this email — that is all. "
        'If not, <a href="{{ unsubscribe_url }}">unsubscribe here</a>.</p>',
    ),
    (
        "reengage-2",
        M,
        "Last email from us",
        "Unless you say otherwise",
        "<h1>This is our last email</h1><p>We will stop writing unless you open this one.</p>",
    ),
]

TEMPLATES += [
    (
        "back-in-stock",
        M,
        "{{ event.properties.name|default:'It' }} is back",
        "You asked us to tell you",
        "<h1>It is back in stock</h1>"
        + PRODUCT
        + "<p>You asked us to let you know. Stock is limited: the last batch went in days.</p>"
        '<p><a class="button" href="{{ event.properties.url|default:shop.url }}">Get yours</a></p>',
    ),
    (
        "price-drop",
        M,
        "A lower price on {{ event.properties.name|default:'something you liked' }}",
        "Now {{ event.properties.new_price }} {{ event.properties.currency }}",
        "<h1>The price just dropped</h1>"
        + PRODUCT
        + "<p>Was <s>{{ event.properties.old_price }}</s>, now "
        "<strong>{{ event.properties.new_price }} {{ event.properties.currency }}</strong>.</p>"
        '<p><a class="button" href="{{ event.properties.url|default:shop.url }}">Take a look</a></p>',
    ),
    (
        "newsletter",
        M,
        "This month at {{ shop.name }}",
        "New harvests, brewing notes and picks for you",
        "<h1>This month at {{ shop.name }}</h1>"
        "<p>The new harvests from Huila and Sidamo are in, roasted this week.</p>"
        "<h2>Brewing note</h2><p>Try a 1:16 ratio for the Sidamo: bright, with bergamot.</p>"
        + RECOMMENDED,
    ),
]

TEMPLATES += [
    (
        "referral-rewarded",
        T,
        "You earned {{ event.properties.reward }}",
        "Thanks for spreading the word",
        "<h1>Thank you{% if first_name %}, {{ first_name }}{% endif %}!</h1>"
        "{% if event.properties.side == 'referrer' %}<p>{{ event.properties.friend_name|default:'Your friend' }} "
        "placed their first order with your link.</p>"
        "{% else %}<p>Welcome again: your first order came through a friend's link.</p>{% endif %}"
        "<p>You earned <strong>{{ event.properties.reward }}</strong>"
        "{% if event.properties.coupon %} with the code <strong>{{ event.properties.coupon }}</strong>{% endif %}"
        "{% if event.properties.expires_at %}, to use by {{ event.properties.expires_at|slice:':10' }}{% endif %}.</p>"
        '<p><a class="button" href="{{ referral_url|default:shop.url }}">See your rewards</a></p>',
    ),
]

# Staff-defined surveys, answered in one click from an email's {% survey_row %}.
SURVEYS = [
    {
        "name": "Post-purchase CSAT",
        "kind": Survey.Kind.CSAT,
        "question": "How satisfied are you with your order?",
        "comment_prompt": "What could we do better? (optional)",
        "thanks": "Thank you! We read every answer.",
        "question_ja": "ご注文にどのくらい満足されましたか？",
        "comment_prompt_ja": "改善できる点があれば教えてください（任意）",
        "thanks_ja": "ありがとうございます。すべての回答に目を通しています。",
    },
    {
        "name": "NPS",
        "kind": Survey.Kind.NPS,
        "question": "How likely are you to recommend us to a friend?",
        "comment_prompt": "What is the main reason for your score? (optional)",
        "thanks": "Thank you! Your answer helps us roast better coffee.",
        "question_ja": "友人に当店を薦める可能性はどのくらいありますか？",
        "comment_prompt_ja": "その点数をつけた一番の理由は何ですか？（任意）",
        "thanks_ja": "ありがとうございます。より良いコーヒー作りに役立てます。",
    },
]

TEMPLATES += [
    (
        "nps-ask",
        M,
        "One quick question, {{ first_name|default:'friend' }}",
        "Answer in one click",
        "<h1>How are we doing?</h1><p>It takes one click: choose a number below.</p>"
        '{% load keepers %}{% survey_row "NPS" %}'
        "<p>Thank you for helping us roast better coffee.</p>",
    ),
    (
        # A reply to what the contact told us, not a promotion: transactional, plain, and
        # answered by a person (replies go to the shop's sending address).
        "survey-detractor",
        T,
        "Sorry — can we help?",
        "A person reads your reply",
        "<p>Hi {{ first_name|default:'there' }},</p>"
        "<p>Thank you for your honest answer. We are sorry we let you down"
        "{% if event.properties.score is not None %} (you gave us {{ event.properties.score }} out of "
        "{% if event.properties.kind == 'nps' %}10{% else %}5{% endif %}){% endif %}.</p>"
        "<p><strong>Just reply to this email</strong> and tell us what went wrong: it goes "
        "straight to the people who roast and ship your coffee, and we answer within one "
        "working day. If an order is the problem, include its number and we will put it right.</p>"
        "<p>— The {{ shop.name }} team</p>",
    ),
    (
        "survey-promoter",
        M,
        "Thank you, {{ first_name|default:'friend' }} — share the love?",
        "Your friends get a welcome gift",
        "<h1>Thank you for the {{ event.properties.score|default:'kind words' }}!</h1>"
        "<p>It means a lot to a small roastery. If you know someone who would enjoy our "
        "coffee, share your personal link: your friend gets a welcome gift on their first "
        "order, and you are rewarded when they order.</p>"
        '<p><a class="button" href="{{ referral_url }}">Invite your friends</a></p>'
        "<p>Your link, your code and your rewards are all on that page.</p>",
    ),
]

TEMPLATES += [
    (
        # The loyalty reminders' email: `expiring` is the grant that enrolled the contact
        # (loyalty.triggers.expiring_context: amount, unit, is_points, expires_at, balance).
        "balance-expiring",
        M,
        "Your {% if expiring.is_points %}points expire{% else %}credit expires{% endif %} "
        "{{ expiring.expires_at|date:'j M' }}",
        "Use {% if expiring.is_points %}them before they are{% else %}it before it is"
        "{% endif %} gone",
        "<h1>Don't let it go to waste{% if first_name %}, {{ first_name }}{% endif %}</h1>"
        "<p><strong>{% if expiring.is_points %}{{ expiring.amount }} of your points expire"
        "{% else %}{{ expiring.amount }} {{ expiring.unit }} of your store credit expires"
        "{% endif %}</strong> on <strong>{{ expiring.expires_at|date:'j F Y' }}</strong>.</p>"
        "<p>In all you have {{ expiring.balance }} {% if expiring.is_points %}points"
        "{% else %}{{ expiring.unit }}{% endif %} to spend today.</p>"
        '<p><a class="button" href="{{ shop.url }}">Shop now</a></p>',
    ),
]

# Reactions to an answer wait an hour and step aside when a newer answer came in since:
# someone who corrects a misclick (3, then 9) hears only about the answer they meant.
NEWER_ANSWER = {
    "type": "condition",
    "config": {"kind": "event_since_enrollment", "event": "Survey Answered"},
}

IN_STOCK = {"type": "condition", "config": {"kind": "product_in_stock"}}

ORDERED = {
    "type": "condition",
    "config": {"kind": "event_since_enrollment", "event": "Order Completed"},
}

CAMPAIGNS = [
    {
        "name": "Welcome series",
        "description": "Three emails over a week for new subscribers; stops at the first order.",
        # when they become subscribers: a double opt-in's confirmation, not its request
        "trigger": {"type": "subscribed"},
        "goals": [{"event": "Order Completed"}],
        "steps": [
            {
                "id": "welcome-1",
                "type": "send_email",
                "config": {"template": "welcome-1"},
                "next": "wait-2d",
            },
            {"id": "wait-2d", "type": "wait", "config": {"days": 2}, "next": "welcome-2"},
            {
                "id": "welcome-2",
                "type": "send_email",
                "config": {"template": "welcome-2"},
                "next": "wait-5d",
            },
            {"id": "wait-5d", "type": "wait", "config": {"days": 5}, "next": "welcome-3"},
            {"id": "welcome-3", "type": "send_email", "config": {"template": "welcome-3"}},
        ],
    },
    {
        "name": "Browse abandonment",
        "description": "Viewed a product, did not add it to the cart within 4 hours.",
        "trigger": {"type": "event", "name": "Product Viewed"},
        "reentry": "once_per_n_days",
        "reentry_days": 7,
        "goals": [{"event": "Order Completed"}],
        "steps": [
            {"id": "wait-4h", "type": "wait", "config": {"hours": 4}, "next": "added"},
            {
                "id": "added",
                "type": "condition",
                "config": {"kind": "event_since_enrollment", "event": "Product Added"},
                "yes": None,
                "no": "browse-1",
            },
            {"id": "browse-1", "type": "send_email", "config": {"template": "browse-1"}},
        ],
    },
    {
        "name": "Abandoned cart",
        "description": "Reminder after an hour, free shipping after a day, a discount after "
        "two more — each only if this cart is still not bought.",
        "trigger": {"type": "event", "name": "Checkout Started"},
        "reentry": "always",
        "goals": [{"event": "Order Completed", "match": "cart"}],
        "steps": [
            {"id": "wait-1h", "type": "wait", "config": {"hours": 1}, "next": "reminder"},
            {
                "id": "reminder",
                "type": "send_email",
                "config": {"template": "cart-1"},
                "next": "wait-1d",
            },
            {"id": "wait-1d", "type": "wait", "config": {"days": 1}, "next": "bought-1"},
            {
                "id": "bought-1",
                "type": "condition",
                "config": {
                    "kind": "event_since_enrollment",
                    "event": "Order Completed",
                    "match": "cart",
                },
                "yes": None,
                "no": "free-shipping",
            },
            {
                "id": "free-shipping",
                "type": "send_email",
                "config": {"template": "cart-2"},
                "next": "wait-2d",
            },
            {"id": "wait-2d", "type": "wait", "config": {"days": 2}, "next": "bought-2"},
            {
                "id": "bought-2",
                "type": "condition",
                "config": {
                    "kind": "event_since_enrollment",
                    "event": "Order Completed",
                    "match": "cart",
                },
                "yes": None,
                "no": "coupon",
            },
            {
                "id": "coupon",
                "type": "grant",
                "config": {
                    "reward": "coupon",
                    "coupon_type": "percent",
                    "value": 10,
                    "expires_in_days": 7,
                    "prefix": "CART",
                },
                "next": "discount",
            },
            {"id": "discount", "type": "send_email", "config": {"template": "cart-3"}},
        ],
    },
    {
        "name": "Post-purchase",
        "description": "Thank you, brewing tips, and a review request after delivery.",
        "trigger": {"type": "event", "name": "Order Completed"},
        "reentry": "always",
        "steps": [
            {
                "id": "thanks",
                "type": "send_email",
                "config": {"template": "post-1"},
                "next": "wait-3d",
            },
            {"id": "wait-3d", "type": "wait", "config": {"days": 3}, "next": "how-to"},
            {
                "id": "how-to",
                "type": "send_email",
                "config": {"template": "post-2"},
                "next": "wait-delivery",
            },
            {"id": "wait-delivery", "type": "wait", "config": {"days": 7}, "next": "review-at-10"},
            {
                "id": "review-at-10",
                "type": "wait_until",
                "config": {"time": "10:00"},
                "next": "review",
            },
            {"id": "review", "type": "send_email", "config": {"template": "post-3"}},
        ],
    },
    {
        "name": "Win-back",
        "description": "For customers who lapsed: a note, then an offer if they do not come back.",
        "trigger": {"type": "stage_changed", "to": "lapsed"},
        "goals": [{"event": "Order Completed"}],
        "reentry": "once_per_n_days",
        "reentry_days": 180,
        "steps": [
            {
                "id": "winback-1",
                "type": "send_email",
                "config": {"template": "winback-1"},
                "next": "wait-7d",
            },
            {"id": "wait-7d", "type": "wait", "config": {"days": 7}, "next": "ordered"},
            {**ORDERED, "id": "ordered", "yes": None, "no": "winback-2"},
            {"id": "winback-2", "type": "send_email", "config": {"template": "winback-2"}},
        ],
    },
    {
        "name": "Back in stock",
        "description": "Tells those who asked, once per restock, while it is still in stock.",
        "trigger": {"type": "product_event", "event": "Product Restocked", "audience": "requested"},
        "reentry": "always",
        "steps": [
            {**IN_STOCK, "id": "still-in-stock", "yes": "back", "no": None},
            {"id": "back", "type": "send_email", "config": {"template": "back-in-stock"}},
        ],
    },
    {
        "name": "Price drop",
        "description": "Tells those who viewed or added the product in the last 14 days; at "
        "most once a week per contact.",
        "trigger": {
            "type": "product_event",
            "event": "Price Dropped",
            "audience": "interested",
            "days": 14,
        },
        "reentry": "once_per_n_days",
        "reentry_days": 7,
        "priority": Campaign.Priority.PROMOTIONAL,
        "steps": [
            {**IN_STOCK, "id": "still-in-stock", "yes": "lower-price", "no": None},
            {"id": "lower-price", "type": "send_email", "config": {"template": "price-drop"}},
        ],
    },
    {
        "name": "Referral rewarded",
        "description": "Tells each side of a referral what they earned, when it is granted.",
        "trigger": {"type": "event", "name": "Referral Rewarded"},
        "reentry": "always",
        "steps": [
            {"id": "rewarded", "type": "send_email", "config": {"template": "referral-rewarded"}}
        ],
    },
    {
        "name": "NPS survey",
        "description": "Two weeks after an order, one question in one click; at most once "
        "every 90 days per contact.",
        "trigger": {"type": "event", "name": "Order Completed"},
        "reentry": "once_per_n_days",
        "reentry_days": 90,
        "steps": [
            {"id": "wait-14d", "type": "wait", "config": {"days": 14}, "next": "at-10"},
            {"id": "at-10", "type": "wait_until", "config": {"time": "10:00"}, "next": "ask"},
            {"id": "ask", "type": "send_email", "config": {"template": "nps-ask"}},
        ],
    },
    {
        "name": "Detractor follow-up",
        "description": 'An NPS detractor (0–6) gets a personal "Sorry — can we help?" '
        "they can reply to; at most once a month.",
        "trigger": {"type": "event", "name": "Survey Answered", "where": {"category": "detractor"}},
        "reentry": "once_per_n_days",
        "reentry_days": 30,
        "steps": [
            {"id": "wait-1h", "type": "wait", "config": {"hours": 1}, "next": "newer-answer"},
            {**NEWER_ANSWER, "id": "newer-answer", "yes": None, "no": "sorry"},
            {"id": "sorry", "type": "send_email", "config": {"template": "survey-detractor"}},
        ],
    },
    {
        "name": "Promoter referral invitation",
        "description": "An NPS promoter (9–10) is invited to share their referral link; at "
        "most once every 90 days.",
        "trigger": {"type": "event", "name": "Survey Answered", "where": {"category": "promoter"}},
        "reentry": "once_per_n_days",
        "reentry_days": 90,
        "steps": [
            {"id": "wait-1h", "type": "wait", "config": {"hours": 1}, "next": "newer-answer"},
            {**NEWER_ANSWER, "id": "newer-answer", "yes": None, "no": "invite"},
            {"id": "invite", "type": "send_email", "config": {"template": "survey-promoter"}},
        ],
    },
    # From the loyalty app (left out without it): one reminder a week at most.
    {
        "name": "Store credit reminder",
        "description": "Store credit that expires within 7 days: the amount and the date.",
        "trigger": {"type": "credit_expiring", "days": 7},
        "reentry": "once_per_n_days",
        "reentry_days": 7,
        "steps": [
            {"id": "remind", "type": "send_email", "config": {"template": "balance-expiring"}},
        ],
    },
    {
        "name": "Points reminder",
        "description": "Points that expire within 14 days: how many and when.",
        "trigger": {"type": "points_expiring", "days": 14},
        "reentry": "once_per_n_days",
        "reentry_days": 7,
        "steps": [
            {"id": "remind", "type": "send_email", "config": {"template": "balance-expiring"}},
        ],
    },
    {
        "name": "Birthday",
        "description": "On the day, at 9:00 in their own time zone.",
        "trigger": {"type": "date", "field": "birthday", "offset_days": 0},
        "reentry": "always",
        "steps": [
            {"id": "at-9", "type": "wait_until", "config": {"time": "09:00"}, "next": "birthday"},
            {"id": "birthday", "type": "send_email", "config": {"template": "birthday"}},
        ],
    },
    {
        "name": "Re-engagement",
        "description": "For unengaged subscribers: two tries; those who never open are no "
        "longer mailed (sunset).",
        "trigger": {"type": "stage_changed", "to": "unengaged"},
        "reentry": "once",
        "steps": [
            {
                "id": "reengage-1",
                "type": "send_email",
                "config": {"template": "reengage-1"},
                "next": "wait-5d",
            },
            {"id": "wait-5d", "type": "wait", "config": {"days": 5}, "next": "opened-1"},
            {
                "id": "opened-1",
                "type": "condition",
                "config": {"kind": "engaged", "step": "reengage-1", "action": "opened"},
                "yes": None,
                "no": "reengage-2",
            },
            {
                "id": "reengage-2",
                "type": "send_email",
                "config": {"template": "reengage-2"},
                "next": "wait-7d",
            },
            {"id": "wait-7d", "type": "wait", "config": {"days": 7}, "next": "opened-2"},
            {
                "id": "opened-2",
                "type": "condition",
                "config": {"kind": "engaged", "step": "reengage-2", "action": "opened"},
                "yes": None,
                "no": "sunset",
            },
            {
                "id": "sunset",
                "type": "update_contact",
                "config": {"add_tags": ["sunset"], "marketing_consent": "withdrawn"},
            },
        ],
    },
]


def _steps_known(spec: dict) -> bool:
    """Its trigger and every step type the playbook uses are registered: the cart
    playbook's `grant` step and the reminders' expiring triggers come from the loyalty
    app, so without it those playbooks are left out."""
    return spec["trigger"]["type"] in TRIGGERS and all(
        step["type"] in REGISTRY for step in spec["steps"]
    )


@transaction.atomic
def playbooks_install() -> int:
    """Install the surveys and templates and publish the campaigns (those whose step types
    are all installed). Returns campaigns created."""
    for spec in SURVEYS:
        Survey.objects.get_or_create(
            name=spec["name"], defaults={k: v for k, v in spec.items() if k != "name"}
        )
    for name, category, subject, preheader, html in TEMPLATES:
        EmailTemplate.objects.get_or_create(
            name=name,
            defaults={
                "category": category,
                "subject": subject,
                "preheader": preheader,
                "html_body": html,
            },
        )
    created = 0
    for spec in CAMPAIGNS:
        if not _steps_known(spec) or Campaign.objects.filter(name=spec["name"]).exists():
            continue
        campaign = Campaign.objects.create(**spec)
        campaign_publish(campaign=campaign)
        created += 1
    _newsletter_draft()
    return created


def playbooks_demo_install(say) -> None:
    """The demo's part for campaigns (registered with crm's demo from CampaignsConfig)."""
    installed = playbooks_install()
    if installed:
        say(
            f"{installed} playbooks published (welcome, browse and cart abandonment, "
            "post-purchase, win-back, birthday, re-engagement, back in stock, price drop, "
            "referral rewarded, NPS survey and its follow-ups, credit and points reminders) "
            "and a draft monthly newsletter"
        )


def _newsletter_draft() -> None:
    """The monthly newsletter: a draft broadcast to the newsletter topic on the 1st at
    09:00 in each subscriber's own time zone, for staff to review and schedule."""
    topic, _ = Topic.objects.get_or_create(
        slug="newsletter",
        defaults={
            "name": "Newsletter",
            "description": "Once a month",
            "name_ja": "ニュースレター",
            "description_ja": "月に一度",
        },
    )
    if Broadcast.objects.filter(name="Monthly newsletter").exists():
        return
    today = clock.now().date()
    first = dt.date(today.year + (today.month == 12), today.month % 12 + 1, 1)
    Broadcast.objects.create(
        name="Monthly newsletter",
        template=EmailTemplate.objects.get(name="newsletter"),
        topic=topic,
        send_date=first,
        send_time=dt.time(9),
        timing=Broadcast.Timing.LOCAL,
        repeat=Broadcast.Repeat.MONTHLY,
    )
