"""Campaigns: versioned sequences of steps with a trigger, entry rules and exit goals;
enrollments with a full step history; email templates and sent messages."""

from __future__ import annotations

import re

from django.conf import settings
from django.conf.locale import LANG_INFO
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from campaigns.mjml import MjmlError, mjml_compile
from crm.models import Contact, Segment


def validate_mailbox(value: str) -> None:
    """One address for a header: 'help@shop.example' or 'Shop support <help@shop.example>'.
    Strict on purpose: no second address (a comma would make the header send replies to
    both), no quotes or brackets in the name, one line."""
    if "\n" in value or "\r" in value:
        raise ValidationError("One line only.")
    match = re.fullmatch(r"\s*(?:([^<>,;\"@]*?)\s*<([^<>,;\s]+)>|([^<>,;\s]+))\s*", value)
    if not match:
        raise ValidationError(
            "One address: help@shop.example or Name <help@shop.example> (no commas)."
        )
    validate_email(match.group(2) or match.group(3))


# Staff are warned about a subject longer than this: mobile clients show 25–30 characters.
SUBJECT_WARNING = 30


def language_choices() -> list[tuple[str, str]]:
    """Every language Django knows, by code ("ja", "pt-br"), with its own name."""
    return sorted(
        (
            (code, f"{info['name_local']} ({code})")
            for code, info in LANG_INFO.items()
            if "name_local" in info
        ),
        key=lambda choice: choice[0],
    )


def default_language() -> str:
    return settings.LANGUAGE_CODE


def mjml_compiled(source: str) -> str:
    """The HTML an MJML body compiles to; invalid MJML (refused at save by the admin and
    the API, with its line) compiles to nothing rather than raising in a model's save."""
    try:
        return mjml_compile(source)
    except MjmlError:
        return ""


class EmailTemplate(models.Model):
    class Category(models.TextChoices):
        MARKETING = "marketing", "Marketing"
        TRANSACTIONAL = "transactional", "Transactional"

    class Format(models.TextChoices):
        HTML = "html", _("HTML, inside the shop's layout")
        MJML = "mjml", _("Blocks (MJML)")

    name = models.CharField(max_length=200, unique=True)
    category = models.CharField(max_length=20, choices=Category.choices, default=Category.MARKETING)
    format = models.CharField(
        max_length=4,
        choices=Format.choices,
        default=Format.HTML,
        help_text=_(
            "Blocks: built in the drag-and-drop editor; the email carries its own header "
            "and footer. HTML: written by hand and put inside the shop's layout."
        ),
    )
    language = models.CharField(
        max_length=15,
        choices=language_choices,
        default=default_language,
        help_text=_(
            "The language of this text. Add a version per language below: each contact "
            "gets the one in their language, else this one."
        ),
    )
    subject = models.CharField(max_length=300)
    preheader = models.CharField(max_length=300, blank=True)
    mjml_body = models.TextField(
        blank=True, help_text=_("The blocks, as MJML; compiled to the HTML body when saved")
    )
    html_body = models.TextField(help_text="Django template language; wrapped in the base layout")
    text_body = models.TextField(
        blank=True, help_text="Plain-text part; derived from the HTML when empty"
    )
    # the languages of its variants, kept by EmailTemplateVariant: a renderer reads the
    # variants only of a template that has some
    variant_languages = models.CharField(max_length=300, blank=True, editable=False)
    topic = models.ForeignKey(
        "crm.Topic",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Marketing mail goes only to contacts subscribed to its topic",
    )
    reply_to = models.CharField(
        max_length=254,
        blank=True,
        validators=[validate_mailbox],
        help_text="Where replies go, e.g. Support <help@shop.example>. Empty: the "
        "REPLY_TO_EMAIL setting, or the sender when that is empty too.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        permissions = [
            (
                "send_test",
                "Can render an email for a contact and send a test (templates, broadcasts)",
            )
        ]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs):
        # the HTML of a block template is derived: compiled once per version, here
        if self.format == self.Format.MJML:
            self.html_body = mjml_compiled(self.mjml_body)
            if "update_fields" in kwargs and kwargs["update_fields"] is not None:
                kwargs["update_fields"] = {*kwargs["update_fields"], "html_body"}
        super().save(*args, **kwargs)


class EmailTemplateVariant(models.Model):
    """The template in another language: its own subject, preheader and body (MJML when
    the template is blocks, else HTML) and text part. Chosen per contact by
    `crm.links.language_choose`, the rule the public pages use."""

    template = models.ForeignKey(EmailTemplate, on_delete=models.CASCADE, related_name="variants")
    language = models.CharField(max_length=15, choices=language_choices)
    subject = models.CharField(max_length=300)
    subject_b = models.CharField(
        max_length=300,
        blank=True,
        help_text=_(
            "The second subject of a broadcast's subject test, in this language (empty: "
            "both halves get the subject above)"
        ),
    )
    preheader = models.CharField(max_length=300, blank=True)
    mjml_body = models.TextField(blank=True)
    html_body = models.TextField(blank=True)
    text_body = models.TextField(blank=True, help_text="Derived from the HTML when empty")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["template", "language"]
        constraints = [
            models.UniqueConstraint(
                fields=["template", "language"], name="template_variant_one_per_language"
            )
        ]

    def __str__(self) -> str:
        return f"{self.template} ({self.language})"

    def save(self, *args, **kwargs):
        if self.template.format == EmailTemplate.Format.MJML:
            self.html_body = mjml_compiled(self.mjml_body)
        super().save(*args, **kwargs)
        self._template_touch()

    def delete(self, *args, **kwargs):
        result = super().delete(*args, **kwargs)
        self._template_touch()
        return result

    def _template_touch(self) -> None:
        """A new version of the template (renderers cache per template and updated_at),
        with the languages it now has."""
        languages = ",".join(
            EmailTemplateVariant.objects.filter(template_id=self.template_id)
            .order_by("language")
            .values_list("language", flat=True)
        )
        EmailTemplate.objects.filter(pk=self.template_id).update(
            updated_at=timezone.now(), variant_languages=languages
        )


class Campaign(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        ACTIVE = "active", "Active"
        PAUSED = "paused", "Paused"
        ARCHIVED = "archived", "Archived"

    class Reentry(models.TextChoices):
        ONCE = "once", "Once per contact"
        ONCE_PER_N_DAYS = "once_per_n_days", "Once every N days"
        ALWAYS = "always", "Every time the trigger fires"

    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DRAFT)
    trigger = models.JSONField(default=dict, help_text='{"type": "event", "name": "Product Added"}')
    entry_segment = models.ForeignKey(
        Segment,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="entry_for",
        verbose_name="only for members of",
        help_text="Optional: only contacts in this segment when the trigger fires are enrolled",
    )
    reentry = models.CharField(
        max_length=20,
        choices=Reentry.choices,
        default=Reentry.ONCE,
        verbose_name="can a contact enter again?",
        help_text="Whether someone who went through this campaign can start it again",
    )
    reentry_days = models.PositiveIntegerField(
        default=30,
        verbose_name="days before entering again",
        help_text='With "Once every N days": how many days after entering a contact may enter again',
    )
    starts_at = models.DateTimeField(null=True, blank=True)
    ends_at = models.DateTimeField(null=True, blank=True)
    goals = models.JSONField(
        default=list, blank=True, help_text='[{"event": "Order Completed", "match": "cart_id"}]'
    )
    exits = models.JSONField(
        default=list,
        blank=True,
        help_text='End running enrolments without a conversion: [{"type": "segment_exited", '
        '"segment": 3}, {"type": "stage_changed", "to": "lapsed"}]',
    )
    attribution_days = models.PositiveIntegerField(
        default=5,
        verbose_name="attribution window (days)",
        help_text="An order placed this many days after one of its emails counts as a conversion",
    )
    holdout_percent = models.PositiveSmallIntegerField(
        default=0,
        verbose_name="holdout (%)",
        help_text="Share of those enrolled who get nothing, to measure what the campaign adds "
        "(0 for none)",
    )
    topic = models.ForeignKey(
        "crm.Topic",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Overrides the templates' topic for this campaign's mail",
    )

    class Priority(models.IntegerChoices):
        PROMOTIONAL = 0, "Promotional"
        LIFECYCLE = 10, "Lifecycle"

    priority = models.PositiveSmallIntegerField(
        choices=Priority.choices,
        default=Priority.LIFECYCLE,
        help_text="Lifecycle mail goes first when the frequency cap has one slot left",
    )
    cap_24h = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="Overrides the marketing cap per 24 hours"
    )
    cap_7d = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="Overrides the marketing cap per 7 days"
    )
    max_delay_hours = models.PositiveIntegerField(
        default=48, help_text="Promotional mail held longer than this by the send policy is skipped"
    )
    steps = models.JSONField(default=list, blank=True, help_text="The draft being edited")
    published_version = models.ForeignKey(
        "CampaignVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        permissions = [("enroll_segment", "Can enroll a segment in a campaign")]

    def __str__(self) -> str:
        return self.name


class CampaignVersion(models.Model):
    """What enrollments run: immutable once published."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    steps = models.JSONField()
    goals = models.JSONField(default=list)
    exits = models.JSONField(default=list)
    published_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["campaign", "number"], name="campaigns_version_number")
        ]
        ordering = ["-number"]

    def __str__(self) -> str:
        return f"{self.campaign} v{self.number}"

    def step(self, step_id: str | None) -> dict | None:
        for step in self.steps:
            if step["id"] == step_id:
                return step
        return None


class Enrollment(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        COMPLETED = "completed", "Completed"
        EXITED_GOAL = "exited_goal", "Exited: goal reached"
        EXITED_RULE = "exited_rule", "Exited by a rule"
        FAILED = "failed", "Failed"

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="enrollments")
    version = models.ForeignKey(
        CampaignVersion, on_delete=models.PROTECT, related_name="enrollments"
    )
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="enrollments")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.ACTIVE)
    current_step = models.CharField(max_length=64, blank=True)
    next_run_at = models.DateTimeField(null=True, blank=True)
    entered_at = models.DateTimeField()
    trigger_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When what enrolled them happened: the triggering event's time, else the "
        "entry. Goals, exits and 'since enrolment' conditions count from here",
    )
    cart_key = models.CharField(
        max_length=255,
        blank=True,
        help_text="The triggering event's cart: its cart_id, else checkout_id, else order_id",
    )
    finished_at = models.DateTimeField(null=True, blank=True)
    holdout = models.BooleanField(default=False)
    trigger_key = models.CharField(max_length=200, help_text="What enrolled them, once")
    trigger_event = models.ForeignKey(
        "crm.Event", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    state = models.JSONField(
        default=dict,
        blank=True,
        help_text="Visits per step, waits in progress, results of earlier steps",
    )
    exit_reason = models.CharField(max_length=300, blank=True)
    waiting_for = models.CharField(
        max_length=200, blank=True, help_text="The event a wait_for_event step is waiting for"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["campaign", "trigger_key"], name="campaigns_enroll_once_per_trigger"
            )
        ]
        indexes = [
            models.Index(
                fields=["next_run_at"], condition=Q(status="active"), name="campaigns_due"
            ),
            models.Index(
                fields=["waiting_for", "contact"],
                condition=Q(status="active") & ~Q(waiting_for=""),
                name="campaigns_waiting",
            ),
            models.Index(
                fields=["contact", "campaign", "entered_at"], name="campaigns_contact_enroll"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.contact} in {self.campaign}"


class StepRun(models.Model):
    """One execution of one step for one enrollment, recorded under a unique key, so a
    retried or duplicated task never runs a step twice."""

    enrollment = models.ForeignKey(Enrollment, on_delete=models.CASCADE, related_name="runs")
    step_id = models.CharField(max_length=64)
    step_type = models.CharField(max_length=30)
    visit = models.PositiveIntegerField(default=1)
    decision = models.CharField(max_length=200, blank=True)
    next_step = models.CharField(max_length=64, blank=True)
    error = models.TextField(blank=True)
    message = models.ForeignKey(
        "Message", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    ran_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["enrollment", "step_id", "visit"], name="campaigns_step_once"
            )
        ]
        ordering = ["ran_at", "id"]

    def __str__(self) -> str:
        return f"{self.step_id}#{self.visit}: {self.decision}"


class Message(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Skipped"
        # left "sending" past KEEPERS_SENDING_TIMEOUT_SECONDS (the worker died, or the mark
        # after the ESP accepted the chunk failed): it may or may not have gone out; an ESP
        # tracking event for it confirms it, staff may resend it
        UNCONFIRMED = "unconfirmed", "Unconfirmed"

    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="messages")
    enrollment = models.ForeignKey(
        Enrollment, null=True, blank=True, on_delete=models.CASCADE, related_name="messages"
    )
    campaign = models.ForeignKey(
        Campaign, null=True, blank=True, on_delete=models.SET_NULL, related_name="messages"
    )
    broadcast = models.ForeignKey(
        "Broadcast", null=True, blank=True, on_delete=models.SET_NULL, related_name="messages"
    )
    version_number = models.PositiveIntegerField(null=True, blank=True)
    step_id = models.CharField(max_length=64, blank=True)
    template = models.ForeignKey(
        EmailTemplate, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    category = models.CharField(max_length=20, choices=EmailTemplate.Category.choices)
    topic = models.CharField(
        max_length=100, blank=True, help_text="The topic slug this message is for"
    )
    idempotency_key = models.CharField(max_length=200, unique=True)
    to_email = models.EmailField(max_length=254)
    reply_to = models.CharField(max_length=254, blank=True)  # the template's, when queued
    subject = models.CharField(max_length=300, blank=True)
    html = models.TextField(blank=True)
    text = models.TextField(blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.QUEUED)
    claimed_at = models.DateTimeField(
        null=True, blank=True, help_text="When a sender took it (queued → sending)"
    )
    body_purged_at = models.DateTimeField(
        null=True, blank=True, help_text="When retention emptied its HTML and text"
    )
    esp_message_id = models.CharField(max_length=255, blank=True, db_index=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)
    opened_at = models.DateTimeField(null=True, blank=True)
    clicked_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    bounced_at = models.DateTimeField(null=True, blank=True)
    complained_at = models.DateTimeField(null=True, blank=True)
    unsubscribed_at = models.DateTimeField(null=True, blank=True)
    delivery_status = models.CharField(
        max_length=12,
        blank=True,
        help_text="What the ESP last reported that matters most: delivered, deferred, bounced, "
        "rejected, complained",
    )

    class Meta:
        indexes = [
            models.Index(fields=["status", "created_at"], name="campaigns_msg_status"),
            models.Index(fields=["contact", "sent_at"], name="campaigns_msg_contact"),
        ]

    def __str__(self) -> str:
        return f"{self.subject} → {self.to_email}"


class Conversion(models.Model):
    """A goal reached after the campaign's touch: credited to the last send within the
    attribution window (treatment) or to the enrollment itself (holdout)."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="conversions")
    enrollment = models.ForeignKey(Enrollment, on_delete=models.CASCADE, related_name="conversions")
    message = models.ForeignKey(Message, null=True, blank=True, on_delete=models.SET_NULL)
    order = models.ForeignKey("crm.Order", null=True, blank=True, on_delete=models.SET_NULL)
    revenue = models.DecimalField(max_digits=14, decimal_places=4, default=0)
    currency = models.CharField(max_length=3, blank=True)
    holdout = models.BooleanField(default=False)
    at = models.DateTimeField()
    event = models.ForeignKey(
        "crm.Event", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["enrollment", "order"], name="campaigns_conversion_once"
            ),
            models.UniqueConstraint(
                fields=["enrollment", "event"], name="campaigns_conversion_once_per_event"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.campaign}: {self.revenue}"


class DeliveryEvent(models.Model):
    """One tracking event from the ESP (through Anymail's tracking webhooks), stored once
    per ESP event id, whether or not its message is known."""

    message = models.ForeignKey(
        Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="delivery_events"
    )
    esp_name = models.CharField(max_length=40)
    event_id = models.CharField(max_length=255)
    event_type = models.CharField(max_length=20)
    esp_message_id = models.CharField(max_length=255, blank=True)
    recipient = models.EmailField(max_length=254, blank=True)
    occurred_at = models.DateTimeField()
    received_at = models.DateTimeField()
    url = models.URLField(max_length=2000, blank=True)
    reject_reason = models.CharField(max_length=20, blank=True)
    description = models.TextField(blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["esp_name", "event_id"], name="campaigns_delivery_event_once"
            )
        ]
        indexes = [
            models.Index(fields=["recipient", "occurred_at"], name="campaigns_devent_recipient")
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.recipient}"


class Suppression(models.Model):
    """An address Keepers must not mail: hard bounce, complaint, ESP unsubscribe, repeated
    soft bounces, or staff. Lifting keeps the row (and the reason) for the record."""

    class Reason(models.TextChoices):
        HARD_BOUNCE = "hard_bounce", "Hard bounce"
        SOFT_BOUNCES = "soft_bounces", "Repeated soft bounces"
        COMPLAINT = "complaint", "Spam complaint"
        UNSUBSCRIBED = "unsubscribed", "Unsubscribed at the ESP"
        MANUAL = "manual", "Added by staff"

    email = models.EmailField(max_length=254, blank=True, help_text="Blank once erased")
    email_hash = models.CharField(
        max_length=64,
        db_index=True,
        help_text="sha256 of the normalised address: what an erased address keeps, and what "
        "the send path checks",
    )
    reason = models.CharField(max_length=20, choices=Reason.choices)
    source = models.CharField(max_length=100, blank=True)
    detail = models.TextField(blank=True)
    created_at = models.DateTimeField()
    lifted_at = models.DateTimeField(null=True, blank=True)
    lifted_by = models.ForeignKey(
        "auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    lift_note = models.TextField(blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["email_hash"],
                condition=Q(lifted_at__isnull=True),
                name="campaigns_suppression_one_active_hash",
            )
        ]

    def __str__(self) -> str:
        return f"{self.email or 'erased address'}: {self.get_reason_display()}"


class WebhookDelivery(models.Model):
    """A signed POST to an integrator's URL, retried with backoff until it answers 2xx."""

    enrollment = models.ForeignKey(
        Enrollment, null=True, on_delete=models.CASCADE, related_name="webhooks"
    )
    url = models.URLField(max_length=1000)
    payload = models.JSONField()
    idempotency_key = models.CharField(max_length=200, unique=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    status = models.CharField(max_length=10, default="pending")  # pending, delivered, failed
    next_attempt_at = models.DateTimeField(
        null=True, blank=True, help_text="When the next try is due; a sweep re-queues it if lost"
    )
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    last_response = models.TextField(
        blank=True, help_text="The start of the integrator's last answer (2,000 characters)"
    )
    created_at = models.DateTimeField()
    delivered_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.url} ({self.status})"


class TriggerCursor(models.Model):
    """How far the trigger pass has read a source table (events, memberships, stages)."""

    name = models.CharField(max_length=50, primary_key=True)
    last_id = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.name}: {self.last_id}"


class Broadcast(models.Model):
    """One send of one template to a segment or a topic's subscribers: the newsletter, a
    seasonal announcement. The audience is frozen into BroadcastRecipient rows when sending
    starts; each recipient gets at most one Message. A recurring broadcast schedules its
    next occurrence (a new row in the same series) when one finishes."""

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        SCHEDULED = "scheduled", "Scheduled"
        SENDING = "sending", "Sending"
        PAUSED = "paused", "Paused"
        SENT = "sent", "Sent"
        # done handing out, but some messages are unconfirmed: never "sent" while any are
        UNCONFIRMED = "unconfirmed", "Finished, some unconfirmed"
        CANCELLED = "cancelled", "Cancelled"

    class Timing(models.TextChoices):
        SHOP = "shop", "At this time in the shop's time zone"
        LOCAL = "local", "At this local time in each contact's time zone"

    class Repeat(models.TextChoices):
        NONE = "", "Once"
        WEEKLY = "weekly", "Every week"
        MONTHLY = "monthly", "Every month"

    class Metric(models.TextChoices):
        OPENS = "opens", "Open rate"
        CLICKS = "clicks", "Click rate"

    name = models.CharField(max_length=200)
    template = models.ForeignKey(EmailTemplate, on_delete=models.PROTECT, related_name="+")
    segment = models.ForeignKey(
        Segment,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Send to the members of this segment…",
    )
    topic = models.ForeignKey(
        "crm.Topic",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="…or to the subscribers of this topic (its consent is also checked at send "
        "time; with a segment, the template's topic applies)",
    )
    send_date = models.DateField()
    send_time = models.TimeField()
    timing = models.CharField(max_length=5, choices=Timing.choices, default=Timing.SHOP)
    repeat = models.CharField(max_length=7, choices=Repeat.choices, default="", blank=True)
    series = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="occurrences",
        help_text="The first broadcast of a recurring series",
    )
    subject_b = models.CharField(
        "subject B",
        max_length=300,
        blank=True,
        help_text="A/B test: a second subject line (the template's is A)",
    )
    ab_percent = models.PositiveSmallIntegerField(
        "A/B sample %",
        default=0,
        help_text="Share of the audience in the test, split evenly between A and B",
    )
    ab_metric = models.CharField(
        "pick the winner by", max_length=6, choices=Metric.choices, default=Metric.OPENS
    )
    ab_wait_hours = models.PositiveSmallIntegerField(
        "decide after (hours)",
        default=4,
        help_text="Hours after the test group's emails before the rest get the winning subject",
    )
    ab_winner = models.CharField(max_length=1, blank=True)
    ab_decided_at = models.DateTimeField(null=True, blank=True)
    ab_result = models.JSONField(default=dict, blank=True)
    cap_24h = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="Overrides the marketing cap per 24 hours"
    )
    cap_7d = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="Overrides the marketing cap per 7 days"
    )
    max_delay_hours = models.PositiveIntegerField(
        default=24, help_text="A message the send policy holds longer than this is skipped"
    )
    attribution_days = models.PositiveIntegerField(
        default=5,
        verbose_name="attribution window (days)",
        help_text="An order placed this many days after the email counts as a conversion",
    )
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.DRAFT)
    audience_size = models.PositiveIntegerField(null=True, blank=True)
    scheduled_by = models.ForeignKey(
        "auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    frozen_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    # what the send policy reads from a campaign
    priority = 0  # Campaign.Priority.PROMOTIONAL

    class Meta:
        ordering = ["-send_date", "-send_time", "-pk"]
        indexes = [models.Index(fields=["status"], name="campaigns_bc_status")]

    def __str__(self) -> str:
        return self.name


class BroadcastRecipient(models.Model):
    """A frozen member of a broadcast's audience: when their message is due (their own
    09:00 for a local-time broadcast), and what happened to it."""

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting for their send time"
        HELD = "held", "Waiting for the A/B winner"
        QUEUED = "queued", "Message queued"
        SKIPPED = "skipped", "Skipped"
        CANCELLED = "cancelled", "Cancelled"

    broadcast = models.ForeignKey(Broadcast, on_delete=models.CASCADE, related_name="recipients")
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="+")
    send_at = models.DateTimeField()
    variant = models.CharField(max_length=1, blank=True, help_text="A/B test: a or b")
    status = models.CharField(max_length=9, choices=Status.choices, default=Status.PENDING)
    reason = models.CharField(max_length=300, blank=True)
    message = models.OneToOneField(
        "Message", null=True, blank=True, on_delete=models.SET_NULL, related_name="recipient"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["broadcast", "contact"], name="campaigns_bc_once")
        ]
        indexes = [
            models.Index(
                fields=["send_at"],
                name="campaigns_bcr_due",
                condition=Q(status="pending"),
            ),
            models.Index(fields=["broadcast", "status"], name="campaigns_bcr_status"),
        ]

    def __str__(self) -> str:
        return f"{self.broadcast} → {self.contact_id}"


class Survey(models.Model):
    """A CSAT (1–5) or NPS (0–10) question, put into emails as a one-click row of signed
    score links ({% survey_row %})."""

    class Kind(models.TextChoices):
        CSAT = "csat", "CSAT (1–5)"
        NPS = "nps", "NPS (0–10)"

    name = models.CharField(
        max_length=200, unique=True, help_text='What templates name: {% survey_row "NAME" %}'
    )
    kind = models.CharField("scale", max_length=4, choices=Kind.choices)
    question = models.CharField(max_length=300, help_text="In English")
    question_ja = models.CharField("question (Japanese)", max_length=300, blank=True)
    comment_prompt = models.CharField(
        "follow-up question",
        max_length=300,
        blank=True,
        help_text="Asked after the score, above the comment box (English)",
    )
    comment_prompt_ja = models.CharField(
        "follow-up question (Japanese)", max_length=300, blank=True
    )
    thanks = models.CharField(
        "thank-you line", max_length=300, blank=True, help_text="Shown after the answer (English)"
    )
    thanks_ja = models.CharField("thank-you line (Japanese)", max_length=300, blank=True)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def text_in(self, field: str, language: str) -> str:
        """`question`, `comment_prompt` or `thanks` in `language` ("en", "ja";
        crm.links.contact_language), English when there is no translation."""
        english = getattr(self, field)
        return (getattr(self, f"{field}_ja") if language == "ja" else "") or english


class SurveyAnswer(models.Model):
    """One contact's answer to one survey send (the link's `ref`: a message or a
    campaign step); answering again from the same link changes the score, not the count."""

    survey = models.ForeignKey(Survey, on_delete=models.CASCADE, related_name="answers")
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="survey_answers")
    ref = models.CharField(max_length=100, help_text="Which send the link came from")
    score = models.PositiveSmallIntegerField()
    comment = models.TextField(blank=True)
    category = models.CharField(
        max_length=12,
        help_text="promoter / passive / detractor, or satisfied / neutral / unsatisfied",
    )
    answered_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["survey", "contact", "ref"], name="campaigns_survey_answer_once"
            )
        ]
        indexes = [models.Index(fields=["survey", "answered_at"])]

    def __str__(self) -> str:
        return f"{self.survey}: {self.score}"
