"""CRM data: contacts, consent, events, orders, products, lifecycle stages, lead scoring,
API keys and import jobs. Invariants live here as constraints; writes go through services."""

from __future__ import annotations

from decimal import Decimal
from zoneinfo import available_timezones

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils.translation import gettext_lazy as _


def validate_timezone(value: str) -> None:
    if value and value not in timezone_names():
        raise ValidationError(f"'{value}' is not an IANA time zone (for example Europe/Paris).")


_TZ_CACHE: set[str] = set()


def timezone_names() -> set[str]:
    """Every IANA time zone name this system knows (a contact's timezone is one)."""
    if not _TZ_CACHE:
        _TZ_CACHE.update(available_timezones())
    return _TZ_CACHE


class Stage(models.TextChoices):
    SUBSCRIBER = "subscriber", _("Subscriber")
    FIRST_TIME = "first_time", _("First-time customer")
    REPEAT = "repeat", _("Repeat customer")
    LOYAL = "loyal", _("Loyal")
    AT_RISK = "at_risk", _("At risk")
    LAPSED = "lapsed", _("Lapsed")
    UNENGAGED = "unengaged", _("Unengaged")


class Tag(models.Model):
    name = models.CharField(max_length=100, unique=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Contact(models.Model):
    email = models.EmailField(max_length=254, null=True, blank=True)
    external_id = models.CharField(max_length=255, null=True, blank=True, unique=True)
    first_name = models.CharField(max_length=150, blank=True)
    last_name = models.CharField(max_length=150, blank=True)
    phone = models.CharField(max_length=40, blank=True)
    locale = models.CharField(
        max_length=35, blank=True, help_text="BCP 47, for example en-US or ja"
    )
    timezone = models.CharField(
        max_length=64, blank=True, validators=[validate_timezone], help_text="IANA time zone"
    )
    birthday = models.DateField(null=True, blank=True)
    attributes = models.JSONField(default=dict, blank=True)
    tags = models.ManyToManyField(Tag, blank=True, related_name="contacts")
    source = models.CharField(
        max_length=100, blank=True, help_text="Where the contact came from: api, import, signup…"
    )
    channel = models.CharField(
        max_length=100, blank=True, help_text="Acquisition channel: organic, paid_search, social…"
    )
    stage = models.CharField(max_length=20, choices=Stage.choices, default=Stage.SUBSCRIBER)
    stage_changed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(db_index=True)
    updated_at = models.DateTimeField()
    erased_at = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="When the person's data was erased (crm.services.privacy.contact_erase)",
    )

    class Meta:
        permissions = [
            ("export_contact", "Can export a contact's data"),
            ("erase_contact", "Can erase a contact's data (right to erasure)"),
            ("download_addresses", "Can download lists with contacts' addresses (CSV)"),
            ("view_metrics", "Can see the metrics dashboard and download its CSVs"),
        ]
        constraints = [
            models.UniqueConstraint(Lower("email"), name="crm_contact_email_ci_unique"),
            models.CheckConstraint(
                condition=Q(email__isnull=False) | Q(external_id__isnull=False),
                name="crm_contact_has_identity",
                violation_error_message="A contact needs an email or an external id.",
            ),
        ]
        indexes = [
            models.Index(fields=["stage"]),
            models.Index(fields=["channel"]),
            # Emails are stored lower-cased, so lookups use `email` itself; the unique
            # index on lower(email) cannot serve `email IN (…)` (found by bench/ingest.py:
            # 138 ms a batch at 1M contacts, a table scan).
            models.Index(fields=["email"], name="crm_contact_email_idx"),
        ]

    def __str__(self) -> str:
        return self.email or f"#{self.external_id}"

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()


class ContactAlias(models.Model):
    """Another id the contact is known by: a Segment anonymousId or an aliased previousId."""

    value = models.CharField(max_length=255, unique=True)
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="aliases")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.value


class Channel(models.TextChoices):
    EMAIL = "email", "Email"
    SMS = "sms", "SMS"


class ConsentStatus(models.TextChoices):
    GRANTED = "granted", "Granted"
    WITHDRAWN = "withdrawn", "Withdrawn"


class ConsentRecord(models.Model):
    """Append-only: the current consent is the newest record per (channel, topic)."""

    ALL_TOPICS = "all"

    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="consents")
    channel = models.CharField(max_length=10, choices=Channel.choices, default=Channel.EMAIL)
    topic = models.CharField(max_length=100, default=ALL_TOPICS)
    status = models.CharField(max_length=10, choices=ConsentStatus.choices)
    source = models.CharField(max_length=100, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=500, blank=True)
    wording_version = models.CharField(max_length=50, blank=True)
    recorded_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["contact", "channel", "topic", "-recorded_at"])]
        ordering = ["-recorded_at", "-id"]

    def __str__(self) -> str:
        return f"{self.channel}/{self.topic}: {self.status}"

    def save(self, *args, **kwargs) -> None:
        if self.pk is not None:
            raise ValidationError("Consent records are append-only; record a new one instead.")
        super().save(*args, **kwargs)


class Event(models.Model):
    contact = models.ForeignKey(
        Contact, on_delete=models.CASCADE, related_name="events", null=True, blank=True
    )
    anonymous_id = models.CharField(max_length=255, blank=True)
    name = models.CharField(max_length=200)
    properties = models.JSONField(default=dict, blank=True)
    context = models.JSONField(default=dict, blank=True)
    occurred_at = models.DateTimeField()
    received_at = models.DateTimeField()
    source = models.CharField(max_length=100, default="api")
    message_id = models.CharField(max_length=255)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["source", "message_id"], name="crm_event_source_msg")
        ]
        indexes = [
            models.Index(fields=["contact", "name", "occurred_at"]),
            models.Index(fields=["name", "occurred_at"]),
            models.Index(
                fields=["anonymous_id"], name="crm_event_anon_idx", condition=Q(contact=None)
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Product(models.Model):
    product_id = models.CharField(max_length=255, unique=True)
    name = models.CharField(max_length=500, blank=True)
    url = models.URLField(max_length=1000, blank=True)
    image_url = models.URLField(max_length=1000, blank=True)
    price = models.DecimalField(max_digits=14, decimal_places=4, null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    category = models.CharField(max_length=255, blank=True, db_index=True)
    in_stock = models.BooleanField(default=True)
    replenishable = models.BooleanField(
        default=False,
        help_text="Bought again and again (coffee, filters): may be recommended again",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.name or self.product_id


class OrderStatus(models.TextChoices):
    PLACED = "placed", "Placed"
    PARTIALLY_REFUNDED = "partially_refunded", "Partially refunded"
    REFUNDED = "refunded", "Refunded"


MONEY_FIELD = models.DecimalField(max_digits=14, decimal_places=4)


def order_net() -> models.ExpressionWrapper:
    """An order's net value, what it is worth after refunds: total − refunded_total. Every
    revenue figure (spend, CLV, tiers, segments, lifecycle) counts this."""
    return models.ExpressionWrapper(
        models.F("total") - models.F("refunded_total"), output_field=MONEY_FIELD
    )


class OrderQuerySet(models.QuerySet):
    def live(self) -> OrderQuerySet:
        """Orders that still count: not refunded in full (a partial refund counts for its
        net value)."""
        return self.exclude(status=OrderStatus.REFUNDED)


class Order(models.Model):
    external_id = models.CharField(max_length=255, unique=True)
    # No index of its own: crm_order_contact_time below starts with contact_id.
    contact = models.ForeignKey(
        Contact, on_delete=models.CASCADE, related_name="orders", db_index=False
    )
    total = models.DecimalField(max_digits=14, decimal_places=4)
    currency = models.CharField(max_length=3)
    refunded_total = models.DecimalField(max_digits=14, decimal_places=4, default=Decimal("0"))
    status = models.CharField(max_length=20, choices=OrderStatus.choices, default="placed")
    ordered_at = models.DateTimeField()
    source = models.CharField(max_length=100, default="api")
    attributes = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = OrderQuerySet.as_manager()

    class Meta:
        indexes = [
            # Covering on PostgreSQL: the metrics (crm.services.metrics), the segment
            # rules on orders and the CLV fit read every order per contact in this order
            # from the index alone, never touching the table. SQLite ignores INCLUDE (a
            # plain index; check models.W040 is silenced for it).
            models.Index(
                fields=["contact", "ordered_at"],
                include=["currency", "total", "refunded_total", "status"],
                name="crm_order_contact_time",
            ),
            models.Index(fields=["ordered_at"]),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(total__gte=0), name="crm_order_total_nonneg"),
            models.CheckConstraint(
                condition=Q(refunded_total__gte=0) & Q(refunded_total__lte=models.F("total")),
                name="crm_order_refund_within_total",
            ),
        ]

    def __str__(self) -> str:
        return self.external_id

    @property
    def net_total(self) -> Decimal:
        return self.total - self.refunded_total


class OrderLine(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
    product = models.ForeignKey(
        Product, on_delete=models.SET_NULL, null=True, blank=True, related_name="order_lines"
    )
    product_ref = models.CharField(max_length=255, blank=True, help_text="The shop's product id")
    name = models.CharField(max_length=500, blank=True)
    category = models.CharField(max_length=255, blank=True)
    quantity = models.PositiveIntegerField(default=1)
    unit_price = models.DecimalField(max_digits=14, decimal_places=4, default=Decimal("0"))

    def __str__(self) -> str:
        return f"{self.quantity} × {self.name or self.product_ref}"


class Refund(models.Model):
    """A refund is recorded against its order, never a deletion of the order."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="refunds")
    external_id = models.CharField(max_length=255, blank=True)
    amount = models.DecimalField(max_digits=14, decimal_places=4)
    reason = models.CharField(max_length=500, blank=True)
    refunded_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["order", "external_id"],
                condition=~Q(external_id=""),
                name="crm_refund_once_per_id",
            ),
            models.CheckConstraint(condition=Q(amount__gt=0), name="crm_refund_positive"),
        ]

    def __str__(self) -> str:
        return f"Refund {self.amount} of order #{self.order_id}"


class StageChange(models.Model):
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="stage_changes")
    from_stage = models.CharField(max_length=20, choices=Stage.choices, blank=True)
    to_stage = models.CharField(max_length=20, choices=Stage.choices)
    at = models.DateTimeField()
    reason = models.CharField(max_length=200)

    class Meta:
        indexes = [models.Index(fields=["contact", "at"]), models.Index(fields=["at", "to_stage"])]
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.from_stage or '-'} → {self.to_stage}"


class MeddicStatus(models.IntegerChoices):
    UNKNOWN = 0, "Unknown"
    PARTIAL = 1, "Partly known"
    CONFIRMED = 2, "Confirmed"


MEDDIC_CRITERIA = (
    ("metrics", "Metrics"),
    ("economic_buyer", "Economic buyer"),
    ("decision_criteria", "Decision criteria"),
    ("decision_process", "Decision process"),
    ("identified_pain", "Identified pain"),
    ("champion", "Champion"),
)


class LeadScorecard(models.Model):
    """MEDDIC lead qualification: six criteria with a status and a note; score 0–100."""

    contact = models.OneToOneField(Contact, on_delete=models.CASCADE, related_name="scorecard")
    metrics_status = models.PositiveSmallIntegerField(choices=MeddicStatus.choices, default=0)
    metrics_note = models.TextField(blank=True)
    economic_buyer_status = models.PositiveSmallIntegerField(
        choices=MeddicStatus.choices, default=0
    )
    economic_buyer_note = models.TextField(blank=True)
    decision_criteria_status = models.PositiveSmallIntegerField(
        choices=MeddicStatus.choices, default=0
    )
    decision_criteria_note = models.TextField(blank=True)
    decision_process_status = models.PositiveSmallIntegerField(
        choices=MeddicStatus.choices, default=0
    )
    decision_process_note = models.TextField(blank=True)
    identified_pain_status = models.PositiveSmallIntegerField(
        choices=MeddicStatus.choices, default=0
    )
    identified_pain_note = models.TextField(blank=True)
    champion_status = models.PositiveSmallIntegerField(choices=MeddicStatus.choices, default=0)
    champion_note = models.TextField(blank=True)
    score = models.PositiveSmallIntegerField(default=0, db_index=True, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"MEDDIC {self.score}/100 for {self.contact}"


class LeadScoreChange(models.Model):
    scorecard = models.ForeignKey(LeadScorecard, on_delete=models.CASCADE, related_name="changes")
    field = models.CharField(max_length=40)
    old_value = models.TextField(blank=True)
    new_value = models.TextField(blank=True)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    changed_via = models.CharField(max_length=120)
    changed_at = models.DateTimeField()

    class Meta:
        ordering = ["-changed_at", "-id"]

    def __str__(self) -> str:
        return f"{self.field}: {self.old_value} → {self.new_value}"


class ApiScope(models.TextChoices):
    READ = "read", "Read"
    WRITE = "write", "Read and write"


class ApiKey(models.Model):
    """Only a SHA-256 of the key is stored; the key itself is shown once, at creation."""

    name = models.CharField(max_length=100)
    prefix = models.CharField(
        max_length=16, help_text="The key's first characters, to recognise it"
    )
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    scope = models.CharField(max_length=10, choices=ApiScope.choices, default=ApiScope.READ)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    # DRF's permission machinery expects these on request.user.
    is_authenticated = True
    is_active = True


class IdempotencyRecord(models.Model):
    """API writes that take an Idempotency-Key: the first result, replayed
    (crm.services.idempotency)."""

    key = models.CharField(max_length=200)
    scope = models.CharField(max_length=100)
    request_hash = models.CharField(max_length=64)
    response = models.JSONField()
    status_code = models.PositiveSmallIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["scope", "key"], name="crm_idem_once")]

    def __str__(self) -> str:
        return self.key


class ImportJob(models.Model):
    class Kind(models.TextChoices):
        CONTACTS = "contacts", "Contacts"
        PRODUCTS = "products", "Products"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    kind = models.CharField(max_length=20, choices=Kind.choices)
    file = models.FileField(upload_to="imports/")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    total_rows = models.PositiveIntegerField(default=0)
    processed_rows = models.PositiveIntegerField(default=0)
    created_count = models.PositiveIntegerField(default=0)
    updated_count = models.PositiveIntegerField(default=0)
    error_count = models.PositiveIntegerField(default=0)
    errors = models.JSONField(default=list, blank=True, help_text="The first 1,000 row errors")
    message = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} import #{self.pk}"

    @property
    def percent(self) -> int:
        if not self.total_rows:
            return 100 if self.status == self.Status.DONE else 0
        return min(100, round(100 * self.processed_rows / self.total_rows))


# --- Segments -------------------------------------------------------------------------------
class Segment(models.Model):
    """Who, precisely. Static: a list kept by hand, CSV or API. Dynamic: a JSON rule tree
    compiled to one SQL query (crm.rules); membership is materialised with history."""

    class Kind(models.TextChoices):
        STATIC = "static", "Static list"
        DYNAMIC = "dynamic", "Rule-based"

    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.DYNAMIC)
    rules = models.JSONField(default=dict, blank=True)
    # What the rules read, e.g. ["profile", "event:Product Viewed", "order", "segment:3"],
    # so an incremental pass re-evaluates only the segments a change can affect.
    depends_on = models.JSONField(default=list, blank=True, editable=False)
    time_based = models.BooleanField(
        default=False, editable=False, help_text="Rules that drift with time (within N days…)"
    )
    is_active = models.BooleanField(default=True)
    is_template = models.BooleanField(default=False, help_text="A ready-made segment to copy")
    member_count = models.PositiveIntegerField(default=0, editable=False)
    refreshed_at = models.DateTimeField(null=True, blank=True, editable=False)
    version = models.PositiveIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class SegmentMembership(models.Model):
    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="memberships")
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="memberships")
    entered_at = models.DateTimeField()
    exited_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["segment", "contact"],
                condition=Q(exited_at__isnull=True),
                name="crm_membership_one_open",
            )
        ]
        indexes = [
            models.Index(fields=["contact", "segment"], name="crm_membership_contact"),
            models.Index(fields=["segment", "entered_at"], name="crm_membership_entered"),
        ]

    def __str__(self) -> str:
        return f"{self.contact_id} in {self.segment_id}"


class SegmentSnapshot(models.Model):
    """Segment size per day, for the chart."""

    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="snapshots")
    day = models.DateField()
    size = models.PositiveIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["segment", "day"], name="crm_snapshot_per_day")
        ]
        ordering = ["day"]

    def __str__(self) -> str:
        return f"{self.segment_id} {self.day}: {self.size}"


class ContactChange(models.Model):
    """A contact's data changed (kind: event:<name>, order, profile, consent, stage, tag,
    rfm, segment:<id>). Ingestion only appends these; a frequent task consumes them."""

    contact_id = models.BigIntegerField()
    kind = models.CharField(max_length=220)
    at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.contact_id}: {self.kind}"


class RfmGroup(models.TextChoices):
    CHAMPIONS = "champions", _("Champions")
    LOYAL = "loyal", _("Loyal")
    POTENTIAL_LOYALIST = "potential_loyalist", _("Potential loyalist")
    NEW = "new", _("New customers")
    PROMISING = "promising", _("Promising")
    NEED_ATTENTION = "need_attention", _("Need attention")
    ABOUT_TO_SLEEP = "about_to_sleep", _("About to sleep")
    AT_RISK = "at_risk", _("At risk")
    CANT_LOSE = "cant_lose", _("Can't lose them")
    HIBERNATING = "hibernating", _("Hibernating")
    LOST = "lost", _("Lost")


class ContactRfm(models.Model):
    """RFM scores 1–5 by quintile over customers, recomputed nightly."""

    contact = models.OneToOneField(
        Contact, on_delete=models.CASCADE, primary_key=True, related_name="rfm"
    )
    recency = models.PositiveSmallIntegerField()
    frequency = models.PositiveSmallIntegerField()
    monetary = models.PositiveSmallIntegerField()
    rfm_group = models.CharField(max_length=20, choices=RfmGroup.choices, db_index=True)
    computed_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"R{self.recency}F{self.frequency}M{self.monetary}"


# --- Preferences ----------------------------------------------------------------------------
class Topic(models.Model):
    """A subscription topic (newsletter, product news…); campaigns and templates carry one.
    Consent per topic is a ConsentRecord with topic=<slug>."""

    slug = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=200, help_text="In English")
    name_ja = models.CharField("name (Japanese)", max_length=200, blank=True)
    description = models.CharField(max_length=500, blank=True, help_text="In English")
    description_ja = models.CharField("description (Japanese)", max_length=500, blank=True)
    default_opt_in = models.BooleanField(
        default=True,
        help_text="On: a contact with marketing consent receives this topic until they "
        "unsubscribe from it. Off: only contacts who tick it in the preference centre.",
    )
    order = models.PositiveSmallIntegerField(
        default=0, help_text="Where the preference centre lists it (lowest first)"
    )
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["order", "name"]

    def __str__(self) -> str:
        return self.name

    def name_in(self, language: str) -> str:
        """The name in `language` ("en", "ja"; crm.links.contact_language), English when
        there is no translation."""
        return (self.name_ja if language == "ja" else "") or self.name

    def description_in(self, language: str) -> str:
        return (self.description_ja if language == "ja" else "") or self.description


class Frequency(models.TextChoices):
    EVERYTHING = "everything", "Everything"
    WEEKLY = "weekly", "At most one email a week"
    PAUSED = "paused", "Pause for 30 days"


class ContactPreference(models.Model):
    """How often a contact wants marketing mail. Every change is also in the consent log."""

    contact = models.OneToOneField(Contact, on_delete=models.CASCADE, related_name="preference")
    frequency = models.CharField(
        max_length=12, choices=Frequency.choices, default=Frequency.EVERYTHING
    )
    paused_until = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.contact}: {self.frequency}"


class OptInRequest(models.Model):
    """Double opt-in: a subscription waits for the confirmation link, which works once."""

    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="opt_ins")
    token_hash = models.CharField(max_length=64, unique=True)
    topics = models.JSONField(default=list, blank=True)
    source = models.CharField(max_length=100, blank=True)
    wording_version = models.CharField(max_length=50, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField()
    confirmed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"opt-in {self.contact} ({'confirmed' if self.confirmed_at else 'pending'})"


# --- Recommendations ------------------------------------------------------------------------
class ProductAffinity(models.Model):
    """Frequently bought together: `orders` live orders hold both `product` and `other`.
    Both directions are stored, so "what goes with these products" reads one index. Rebuilt
    as a whole by recommendations_refresh (nightly)."""

    # No index of its own: the pair constraint and crm_affinity_top both lead with it.
    product = models.ForeignKey(
        Product, on_delete=models.CASCADE, related_name="affinities", db_index=False
    )
    other = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="bought_with")
    orders = models.PositiveIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["product", "other"], name="crm_affinity_pair")
        ]
        indexes = [models.Index(fields=["product", "-orders"], name="crm_affinity_top")]
        verbose_name_plural = "product affinities"

    def __str__(self) -> str:
        return f"{self.product_id} + {self.other_id}: {self.orders}"


class ProductSales(models.Model):
    """Bestsellers: units and live orders per product over the trailing
    KEEPERS_BESTSELLER_DAYS (90 by default). Rebuilt by recommendations_refresh."""

    product = models.OneToOneField(
        Product, on_delete=models.CASCADE, primary_key=True, related_name="sales"
    )
    units = models.PositiveIntegerField()
    orders = models.PositiveIntegerField()
    refreshed_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["-orders", "-units"], name="crm_sales_rank")]
        verbose_name_plural = "product sales"

    def __str__(self) -> str:
        return f"{self.product_id}: {self.orders} orders, {self.units} units"


class MarketingSpend(models.Model):
    """Marketing and sales spend per acquisition channel and month: the numerator of CAC.
    Entered in the admin, by API or CSV."""

    channel = models.CharField(max_length=100, help_text="As on contacts (Contact.channel)")
    month = models.DateField(help_text="The first day of the month")
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    currency = models.CharField(max_length=3)
    note = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["channel", "month", "currency"], name="crm_spend_once_per_month"
            ),
            models.CheckConstraint(condition=Q(month__day=1), name="crm_spend_first_of_month"),
            models.CheckConstraint(condition=Q(amount__gte=0), name="crm_spend_nonneg"),
        ]
        ordering = ["-month", "channel"]

    def __str__(self) -> str:
        return f"{self.channel} {self.month:%Y-%m}: {self.amount} {self.currency}"


class ClvModelFit(models.Model):
    """A fit of BG/NBD and Gamma-Gamma on the orders up to `as_of` (crm.clv), in weeks."""

    class Status(models.TextChoices):
        OK = "ok", "Fitted"
        FAILED = "failed", "Failed"

    as_of = models.DateField()
    fitted_at = models.DateTimeField()
    status = models.CharField(max_length=6, choices=Status.choices, default=Status.OK)
    error = models.TextField(blank=True)
    unit_days = models.PositiveSmallIntegerField(default=7)
    currency = models.CharField(max_length=3)
    customers = models.PositiveIntegerField(default=0)
    r = models.FloatField(null=True, blank=True)
    alpha = models.FloatField(null=True, blank=True)
    a = models.FloatField(null=True, blank=True)
    b = models.FloatField(null=True, blank=True)
    # Set (a and b empty) when the fit is BG/NBD's limit with one dropout probability for
    # every customer (crm.clv.BgNbdFit.dropout).
    dropout = models.FloatField(null=True, blank=True)
    bgnbd_log_likelihood = models.FloatField(null=True, blank=True)
    p = models.FloatField(null=True, blank=True)
    q = models.FloatField(null=True, blank=True)
    gamma = models.FloatField(null=True, blank=True)
    # Set (q and gamma empty) when the fit is Gamma-Gamma's limit with one spend rate ν for
    # every customer (crm.clv.GammaGammaFit.nu).
    nu = models.FloatField(null=True, blank=True)
    gg_log_likelihood = models.FloatField(null=True, blank=True)
    gg_customers = models.PositiveIntegerField(default=0)
    horizon_months = models.PositiveSmallIntegerField(default=12)
    monthly_discount = models.FloatField(default=0.01)
    duration_ms = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-fitted_at"]
        indexes = [models.Index(fields=["status", "-fitted_at"], name="crm_clvfit_latest")]
        verbose_name = "CLV fit"

    def __str__(self) -> str:
        return f"CLV fit as of {self.as_of} ({self.status})"


class ContactClv(models.Model):
    """A contact's predicted values from the latest successful fit."""

    # Derived rows, replaced wholesale by each fit: no database foreign keys (checking a
    # million of them roughly doubles the nightly write); Django still cascades deletes.
    contact = models.OneToOneField(
        Contact,
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="clv",
        db_constraint=False,
    )
    fit = models.ForeignKey(
        ClvModelFit, on_delete=models.CASCADE, related_name="+", db_constraint=False
    )
    x = models.PositiveIntegerField()
    t_x = models.FloatField()
    T = models.FloatField()
    zbar = models.FloatField()
    probability_alive = models.FloatField()
    purchases_30d = models.FloatField()
    purchases_90d = models.FloatField()
    purchases_365d = models.FloatField()
    expected_spend = models.FloatField()
    predicted_clv = models.FloatField()
    historic_clv = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal("0"))

    class Meta:
        indexes = [
            models.Index(fields=["probability_alive"], name="crm_clv_alive"),
            models.Index(fields=["predicted_clv"], name="crm_clv_value"),
        ]

    def __str__(self) -> str:
        return f"{self.contact_id}: {self.predicted_clv:.2f}"
