"""Step types, chosen by a `type` field with a validated `config` (strategy stored as
data). A new step type is one class here and one line in REGISTRY.

A step runs for a batch of enrollments at once (`run`), so the engine advances thousands
of enrollments with a handful of queries. It returns one Outcome per enrollment: where to
go next, whether to pause first, or to stay (a wait_for_event still waiting)."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from zoneinfo import ZoneInfo

from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from campaigns.matching import event_matches, wanted_value
from campaigns.models import Campaign, EmailTemplate, Enrollment, Message, WebhookDelivery
from campaigns.services.messages import message_build
from campaigns.services.policy import SendPolicy
from campaigns.services.rendering import RenderError, catalog_for, email_render
from crm import clock
from crm.errors import KeepersError
from crm.extend import Field, Kind, kind_describe
from crm.models import Contact, Event, Product, SegmentMembership
from crm.rules import RuleError, compile_rules
from crm.services.consent import consent_record
from crm.services.contacts import contact_update
from crm.services.recommendations import Recommender


class DefinitionError(KeepersError):
    def __init__(self, message: str, path: str) -> None:
        super().__init__(
            f"{path}: {message}", code="invalid_campaign", field=path, details={"path": path}
        )
        self.path = path


@dataclass
class Outcome:
    decision: str = ""
    next_step: str | None = None  # None: the sequence ends here
    wait_until: dt.datetime | None = None  # pause before next_step
    stay: bool = False  # remain on this step until wait_until (or an event wakes it)
    waiting_for: str = ""
    message: Message | None = None
    error: str = ""
    exit_reason: str = ""
    state: dict = field(default_factory=dict)


@dataclass
class Batch:
    """What a step needs about its enrollments, loaded once per batch and only when a step
    asks (a wait or a condition on a segment reads neither contacts nor events)."""

    now: dt.datetime
    enrollments: list[Enrollment]
    campaigns: dict = field(default_factory=dict)
    policy: object = None
    pending_messages: list[Message] = field(default_factory=list)
    pending_webhooks: list[WebhookDelivery] = field(default_factory=list)

    @cached_property
    def contacts(self) -> dict[int, Contact]:
        return Contact.objects.in_bulk({e.contact_id for e in self.enrollments})

    @cached_property
    def events(self) -> dict[int, Event]:
        """The trigger events, by id."""
        ids = {e.trigger_event_id for e in self.enrollments if e.trigger_event_id}
        return Event.objects.in_bulk(ids) if ids else {}


class StepType:
    type = ""
    branches: tuple[str, ...] = ("next",)
    # The keys a config may have (anything else is refused with its path); None: the type
    # checks its config itself.
    config_keys: frozenset[str] | None = frozenset()
    # What the admin's journey builder shows for this type (crm/kinds.py); registered with
    # the type by step_type_register, so every step type says what it takes.
    describe: Kind | None = None

    def clean(self, config: dict, path: str) -> dict:
        return config

    def keys_for(self, config: dict) -> frozenset[str] | None:
        return self.config_keys

    def targets(self, step: dict) -> list[tuple[str, str, str | None]]:
        """Where the step can go: (label, where in the definition, step id or None for
        "the sequence ends"), for validation, reachability and the diagram."""
        return [(b, b, step.get(b)) for b in self.branches]

    def run(self, step: dict, items: list[Enrollment], batch: Batch) -> list[Outcome]:
        raise NotImplementedError


def config_number(
    config: dict, key: str, path: str, *, minimum: float = 0, maximum: float = 10**6
) -> float:
    """config[key] (0 when absent), checked to be a number in [minimum, maximum]; else a
    DefinitionError naming `path.key`."""
    value = config.get(key, 0)
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not minimum <= value <= maximum
    ):
        raise DefinitionError(
            f"'{key}' must be a number from {minimum:g} to {maximum:g}.", f"{path}.{key}"
        )
    return value


def _duration(config: dict, path: str, prefix: str = "") -> dt.timedelta:
    parts = {
        unit: config_number(config, f"{prefix}{unit}", path)
        for unit in ("minutes", "hours", "days")
        if f"{prefix}{unit}" in config
    }
    if not parts:
        raise DefinitionError(f"Give {prefix}minutes, {prefix}hours or {prefix}days.", path)
    delta = dt.timedelta(**parts)
    if delta <= dt.timedelta(0):
        raise DefinitionError("The duration must be positive.", path)
    return delta


DURATION_KEYS = frozenset({"minutes", "hours", "days"})
WEEKDAYS = (
    _("Monday"),
    _("Tuesday"),
    _("Wednesday"),
    _("Thursday"),
    _("Friday"),
    _("Saturday"),
    _("Sunday"),
)
# A new condition (a step's or a split path's) until staff choose: did they order since?
DEFAULT_CONDITION = {"kind": "event_since_enrollment", "event": "Order Completed"}


class Wait(StepType):
    type = "wait"
    config_keys = DURATION_KEYS
    describe = Kind(
        "wait",
        _("Wait"),
        help=_("Pause for a while before the next step."),
        group=_("Timing"),
        fields=(Field("duration", "duration", _("Wait for"), required=True, default={"hours": 1}),),
        branches=(("next", _("Then")),),
    )

    def clean(self, config, path):
        _duration(config, path)
        return config

    def run(self, step, items, batch):
        until = batch.now + _duration(step.get("config", {}), "")
        return [
            Outcome(
                decision=f"wait until {until:%Y-%m-%d %H:%M} UTC",
                next_step=step.get("next"),
                wait_until=until,
            )
            for _ in items
        ]


def next_local_time(
    now: dt.datetime, tz: ZoneInfo, at: dt.time, weekdays: list[int] | None
) -> dt.datetime:
    """The first moment >= now that is `at` local time (on one of `weekdays`, Monday=0)
    in `tz`, correct across DST changes (a skipped hour moves forward)."""
    local_now = now.astimezone(tz)
    for offset in range(0, 15):
        day = local_now.date() + dt.timedelta(days=offset)
        if weekdays and day.weekday() not in weekdays:
            continue
        candidate = dt.datetime.combine(day, at, tzinfo=tz)
        # A wall time that does not exist (spring forward) normalises through UTC.
        candidate = candidate.astimezone(dt.UTC)
        if candidate >= now:
            return candidate
    raise AssertionError("no matching day within two weeks")


class WaitUntil(StepType):
    type = "wait_until"
    config_keys = frozenset({"time", "weekdays"})
    describe = Kind(
        "wait_until",
        _("Wait until a time"),
        help=_("Wait until a time of day and/or a weekday in the contact's own time zone."),
        group=_("Timing"),
        fields=(
            Field("time", "time", _("Local time"), help=_("For example 10:00."), default="10:00"),
            Field(
                "weekdays",
                "choices",
                _("On these weekdays"),
                help=_("Leave empty for any day."),
                choices=tuple(enumerate(WEEKDAYS)),
            ),
        ),
        branches=(("next", _("Then")),),
    )

    def clean(self, config, path):
        time_text = config.get("time")
        weekdays = config.get("weekdays")
        if time_text is None and weekdays is None:
            raise DefinitionError("Give a local time ('10:00') and/or weekdays (0=Monday).", path)
        if time_text is not None:
            try:
                dt.time.fromisoformat(time_text)
            except (TypeError, ValueError):
                raise DefinitionError("time is HH:MM, for example 10:00.", f"{path}.time") from None
        if weekdays is not None and (
            not isinstance(weekdays, list)
            or not weekdays
            or not all(isinstance(d, int) and 0 <= d <= 6 for d in weekdays)
        ):
            raise DefinitionError(
                "weekdays is a list of 0 (Monday) to 6 (Sunday).", f"{path}.weekdays"
            )
        return config

    def run(self, step, items, batch):
        config = step.get("config", {})
        at = dt.time.fromisoformat(config.get("time") or "00:00")
        outcomes = []
        for item in items:
            zone = clock.contact_zone(batch.contacts[item.contact_id])
            until = next_local_time(batch.now, zone, at, config.get("weekdays"))
            outcomes.append(
                Outcome(
                    decision=f"wait until {until.astimezone(zone):%Y-%m-%d %H:%M} {zone.key}",
                    next_step=step.get("next"),
                    wait_until=until,
                )
            )
        return outcomes


def _event_filter(config: dict, path: str) -> None:
    if not isinstance(config.get("event"), str) or not config["event"]:
        raise DefinitionError(
            "'event' names the event, for example \"Order Completed\".", f"{path}.event"
        )
    where = config.get("where", {})
    if not isinstance(where, dict):
        raise DefinitionError("'where' is an object of property: value pairs.", f"{path}.where")
    match = config.get("match")
    if match is not None and (not isinstance(match, str) or not match):
        raise DefinitionError(
            'match is "cart" (the same cart, checkout or order) or a property of the '
            "triggering event.",
            f"{path}.match",
        )


def _events_since(
    config: dict, items: list[Enrollment], since: Callable[[Enrollment], dt.datetime], batch: Batch
) -> dict[int, Event]:
    """For each enrollment, the first matching event since its moment (one query)."""
    if not items:
        return {}
    earliest = min(since(i) for i in items)
    query = Event.objects.filter(
        contact_id__in={i.contact_id for i in items},
        name=config["event"],
        occurred_at__gte=earliest,
    )
    for key, value in config.get("where", {}).items():
        query = query.filter(**{f"properties__{key}": value})
    events = list(
        query.order_by("occurred_at", "pk").only(
            "id", "contact_id", "name", "occurred_at", "properties"
        )
    )
    match = config.get("match")
    by_contact: dict[int, list[Event]] = defaultdict(list)
    for event in events:
        by_contact[event.contact_id].append(event)
    found: dict[int, Event] = {}
    for item in items:
        trigger = batch.events.get(item.trigger_event_id) if match else None
        wanted = wanted_value(
            match,
            cart_key=item.cart_key,
            trigger_properties=trigger.properties if trigger else None,
        )
        for event in by_contact.get(item.contact_id, ()):
            if event_matches(
                event,
                name=config["event"],
                since=since(item),
                where=config.get("where"),
                match=match,
                wanted=wanted,
                trigger_id=item.trigger_event_id,
            ):
                found[item.pk] = event
                break
    return found


def enrollment_since(item: Enrollment) -> dt.datetime:
    """Where "since enrolment" starts: when what enrolled them happened (the triggering
    event's time), not when the scan got to it."""
    return item.trigger_at or item.entered_at


class WaitForEvent(StepType):
    """Wait until an event arrives (optionally with the triggering event's key, e.g. the
    same cart_id) or a timeout passes; branch `on_event` or `on_timeout`."""

    type = "wait_for_event"
    branches = ("on_event", "on_timeout")
    config_keys = frozenset({"event", "where", "match"} | {f"timeout_{k}" for k in DURATION_KEYS})
    describe = Kind(
        "wait_for_event",
        _("Wait for an event"),
        help=_("Wait until the contact does something, or give up after a while."),
        group=_("Timing"),
        fields=(
            Field(
                "event",
                "ref",
                _("Event"),
                required=True,
                source="events",
                default="Order Completed",
            ),
            Field(
                "where",
                "properties",
                _("With these properties"),
                help=_("Only events whose properties have these values."),
            ),
            Field(
                "match",
                "text",
                _("Same as the trigger's"),
                help=_('"cart" for the same cart, checkout or order, or a property name.'),
            ),
            Field(
                "timeout",
                "duration",
                _("Give up after"),
                required=True,
                default={"days": 1},
                prefix="timeout_",
            ),
        ),
        branches=(("on_event", _("It happened")), ("on_timeout", _("Timed out"))),
    )

    def clean(self, config, path):
        _event_filter(config, path)
        _duration(config, path, prefix="timeout_")
        return config

    def run(self, step, items, batch):
        config = step.get("config", {})
        timeout = _duration(config, "", prefix="timeout_")
        key = f"waiting:{step['id']}"

        def since(item: Enrollment) -> dt.datetime:
            # the wait began when the enrolment was due here (a journey's first step: when
            # its trigger happened), not when a worker got to it
            started = item.state.get(key)
            if started:
                return dt.datetime.fromisoformat(started)
            return min(item.next_run_at or batch.now, batch.now)

        found = _events_since(config, items, since, batch)
        outcomes = []
        for item in items:
            started = since(item)
            if item.pk in found:
                outcomes.append(
                    Outcome(
                        decision=f"{config['event']} arrived",
                        next_step=step.get("on_event"),
                        state={key: None},
                    )
                )
            elif batch.now >= started + timeout:
                outcomes.append(
                    Outcome(
                        decision="timed out", next_step=step.get("on_timeout"), state={key: None}
                    )
                )
            else:
                outcomes.append(
                    Outcome(
                        stay=True,
                        wait_until=started + timeout,
                        waiting_for=config["event"],
                        state={key: started.isoformat()},
                    )
                )
        return outcomes


# --- conditions ---------------------------------------------------------------------------
ConditionCheck = Callable[[dict, list[Enrollment], Batch], dict[int, bool]]
CONDITION_KINDS: dict[str, tuple[Callable[[dict, str], None], ConditionCheck]] = {}
# The config keys of each kind besides "kind"; None: its clean checks them itself.
CONDITION_KEYS: dict[str, frozenset[str] | None] = {}


def condition_kind(
    name: str, clean: Callable[[dict, str], None], keys: Iterable[str] | None = None
):
    """Register a condition kind (the loyalty app adds balances this way). `keys` are the
    config keys it takes; leave it None when `clean` refuses unknown keys itself."""

    def register(check: ConditionCheck) -> ConditionCheck:
        CONDITION_KINDS[name] = (clean, check)
        CONDITION_KEYS[name] = None if keys is None else frozenset(keys)
        return check

    return register


def _clean_segment(config, path):
    if not isinstance(config.get("segment"), int):
        raise DefinitionError("'segment' is a segment id.", f"{path}.segment")


kind_describe(
    "condition",
    Kind(
        "segment",
        _("Is in a segment"),
        help=_("Yes when the contact is a member of the segment right now."),
        fields=(Field("segment", "ref", _("Segment"), required=True, source="segments"),),
    ),
)


@condition_kind("segment", _clean_segment, keys=("segment",))
def _in_segment(config, items, batch):
    members = set(
        SegmentMembership.objects.filter(
            segment_id=config["segment"],
            exited_at__isnull=True,
            contact_id__in={i.contact_id for i in items},
        ).values_list("contact_id", flat=True)
    )
    return {i.pk: i.contact_id in members for i in items}


def _clean_rule(config, path):
    try:
        compile_rules(config.get("rule"))
    except RuleError as error:  # the node's path ("rules.all[1].value") under the "rule" key
        where = error.path.removeprefix("rules")
        message = error.message.removeprefix(f"{error.path}: ")
        raise DefinitionError(message, f"{path}.rule{where}") from None


kind_describe(
    "condition",
    Kind(
        "rule",
        _("Matches a rule"),
        help=_(
            "Yes when the contact matches a segment rule (stage, tags, orders…), checked "
            "at this step without making a segment."
        ),
        fields=(
            Field(
                "rule",
                "rule",
                _("Rule"),
                required=True,
                default={
                    "type": "field",
                    "field": "stage",
                    "op": "in",
                    "value": ["repeat", "loyal"],
                },
            ),
        ),
    ),
)


@condition_kind("rule", _clean_rule, keys=("rule",))
def _matches_rule(config, items, batch):
    """Any segment rule (attribute, stage, tag, orders…) for these contacts: one query."""
    q = compile_rules(config["rule"], now=batch.now).q
    matching = set(
        Contact.objects.filter(q, pk__in={i.contact_id for i in items}).values_list("pk", flat=True)
    )
    return {i.pk: i.contact_id in matching for i in items}


def _clean_attribute(config, path):
    if config.get("op") in _ATTRIBUTE_LIST_OPS:
        values = config.get("value")
        if (
            not isinstance(values, list)
            or not values
            or not all(isinstance(v, str) and v.strip() for v in values)
        ):
            raise DefinitionError(
                "“one of” / “none of” take a list of values (texts), at least one.",
                f"{path}.value",
            )
    compile_rules(
        {
            "type": "attribute",
            "key": config.get("key"),
            "op": config.get("op"),
            **({"value": config["value"]} if "value" in config else {}),
        }
    )


_ATTRIBUTE_TEXT_OPS = ("eq", "neq", "contains")
_ATTRIBUTE_LIST_OPS = ("in", "not_in")
_ATTRIBUTE_NUMBER_OPS = ("gt", "gte", "lt", "lte", "within_last_days")
kind_describe(
    "condition",
    Kind(
        "attribute",
        _("A contact field"),
        help=_("Yes when a value stored on the contact (an attribute) compares as chosen."),
        fields=(
            Field(
                "key",
                "text",
                _("Attribute"),
                help=_("The attribute's name, for example plan or last_visit."),
                required=True,
                default="plan",
            ),
            Field(
                "op",
                "choice",
                _("Is"),
                required=True,
                choices=(
                    ("eq", _("equal to")),
                    ("neq", _("not equal to")),
                    ("in", _("one of")),
                    ("not_in", _("none of")),
                    ("contains", _("containing")),
                    ("exists", _("set (any value)")),
                    ("gt", _("more than")),
                    ("gte", _("at least")),
                    ("lt", _("less than")),
                    ("lte", _("at most")),
                    ("within_last_days", _("a date within the last … days")),
                ),
                default="eq",
            ),
            Field(
                "value",
                "text",
                _("Value"),
                default="gold",
                when={"op": _ATTRIBUTE_TEXT_OPS},
            ),
            Field(
                "value",
                "texts",
                _("Values"),
                help=_(
                    "One a line, each exactly as stored (upper and lower case count). “None "
                    "of” is also yes for a contact without the field."
                ),
                default=["gold", "silver"],
                when={"op": _ATTRIBUTE_LIST_OPS},
            ),
            Field(
                "value",
                "number",
                _("Number"),
                help=_("Days, for “within the last … days”."),
                default=1,
                when={"op": _ATTRIBUTE_NUMBER_OPS},
            ),
        ),
    ),
)


@condition_kind("attribute", _clean_attribute, keys=("key", "op", "value"))
def _attribute(config, items, batch):
    rule = {
        "type": "attribute",
        "key": config["key"],
        "op": config["op"],
        **({"value": config["value"]} if "value" in config else {}),
    }
    return _matches_rule({"rule": rule}, items, batch)


kind_describe(
    "condition",
    Kind(
        "event_since_enrollment",
        _("Did something since starting"),
        help=_(
            "Yes when the event happened since the contact started the campaign, for "
            "example: ordered since the first reminder?"
        ),
        fields=(
            Field(
                "event",
                "text",
                _("Event"),
                help=_("The event's name exactly as your shop sends it."),
                required=True,
                source="events",
                default="Order Completed",
            ),
            Field(
                "where",
                "properties",
                _("Only when the event has"),
                help=_("Property values the event must carry. Empty: any."),
            ),
            Field(
                "match",
                "text",
                _("Same as the trigger's"),
                help=_(
                    "cart: only the same cart, checkout or order as the event that started "
                    "the campaign; or a property name both events carry. Empty: any."
                ),
            ),
        ),
    ),
)


@condition_kind("event_since_enrollment", _event_filter, keys=("event", "where", "match"))
def _event_since_enrollment(config, items, batch):
    found = _events_since(config, items, enrollment_since, batch)
    return {i.pk: i.pk in found for i in items}


def _clean_nothing(config, path):
    return None


kind_describe(
    "condition",
    Kind(
        "product_in_stock",
        _("The product is in stock"),
        help=_(
            "Yes when the product of the event that started the campaign (a restock, a "
            "price drop, a viewed product) is in stock now."
        ),
    ),
)


@condition_kind("product_in_stock", _clean_nothing, keys=())
def _product_in_stock(config, items, batch):
    """Is the product of the triggering event (a restock, a price drop, a viewed product)
    in stock now? Checked right before the send, so a product that sold out again since
    the event is not announced. No product on the event: no."""
    wanted = {
        i.pk: str(batch.events[i.trigger_event_id].properties.get("product_id") or "")
        for i in items
        if i.trigger_event_id in batch.events
    }
    in_stock = set(
        Product.objects.filter(product_id__in=set(wanted.values()), in_stock=True).values_list(
            "product_id", flat=True
        )
    )
    return {i.pk: wanted.get(i.pk, "") in in_stock for i in items}


def _clean_engaged(config, path):
    if not isinstance(config.get("step"), str):
        raise DefinitionError("'step' is the id of an earlier send_email step.", f"{path}.step")
    if config.get("action", "opened") not in ("opened", "clicked"):
        raise DefinitionError("action is opened or clicked.", f"{path}.action")


kind_describe(
    "condition",
    Kind(
        "engaged",
        _("Opened or clicked an email"),
        help=_("Yes when the contact opened (or clicked) the email of an earlier step."),
        fields=(
            Field(
                "step",
                "text",
                _("Email step"),
                help=_("The id of an earlier “send email” step of this campaign."),
                required=True,
                default="welcome",
            ),
            Field(
                "action",
                "choice",
                _("What they did"),
                choices=(("opened", _("opened it")), ("clicked", _("clicked a link"))),
                default="opened",
            ),
        ),
    ),
)


@condition_kind("engaged", _clean_engaged, keys=("step", "action"))
def _engaged(config, items, batch):
    column = "clicked_at" if config.get("action") == "clicked" else "opened_at"
    engaged = set(
        Message.objects.filter(
            enrollment__in=[i.pk for i in items],
            step_id=config["step"],
            **{f"{column}__isnull": False},
        ).values_list("enrollment_id", flat=True)
    )
    return {i.pk: i.pk in engaged for i in items}


class Condition(StepType):
    type = "condition"
    branches = ("yes", "no")
    describe = Kind(
        "condition",
        _("Condition"),
        help=_("Go one way or the other: segment, attribute, an event since enrolment…"),
        group=_("Logic"),
        fields=(
            Field("condition", "condition", _("If"), required=True, default=DEFAULT_CONDITION),
        ),
        branches=(("yes", _("Yes")), ("no", _("No"))),
        extra={"flat": "condition"},  # the config is the condition itself: {"kind": …}
    )

    def clean(self, config, path):
        kind = config.get("kind")
        if kind not in CONDITION_KINDS:
            raise DefinitionError(
                f"Unknown condition kind {kind!r}; use one of "
                f"{', '.join(sorted(CONDITION_KINDS))}.",
                f"{path}.kind",
            )
        try:
            CONDITION_KINDS[kind][0](config, path)
        except DefinitionError:
            raise
        except RuleError as error:  # a rule node's path ("rules.value") under this config
            where = error.path.removeprefix("rules")
            message = error.message.removeprefix(f"{error.path}: ")
            raise DefinitionError(message, f"{path}{where}") from None
        except KeepersError as error:
            raise DefinitionError(error.message, path) from None
        return config

    def keys_for(self, config):
        keys = CONDITION_KEYS.get(config.get("kind"))
        return None if keys is None else frozenset({"kind", *keys})

    def run(self, step, items, batch):
        config = step.get("config", {})
        results = CONDITION_KINDS[config["kind"]][1](config, items, batch)
        return [
            Outcome(
                decision="yes" if results[i.pk] else "no",
                next_step=step.get("yes") if results[i.pk] else step.get("no"),
            )
            for i in items
        ]


class SendEmail(StepType):
    type = "send_email"
    config_keys = frozenset({"template"})
    describe = Kind(
        "send_email",
        _("Send an email"),
        help=_("Render a template for the contact and send it (consent and caps apply)."),
        group=_("Messages"),
        fields=(Field("template", "ref", _("Template"), required=True, source="templates"),),
        branches=(("next", _("Then")),),
    )

    def clean(self, config, path):
        name = config.get("template")
        if not name:
            raise DefinitionError("A send_email step needs a template.", f"{path}.template")
        if not EmailTemplate.objects.filter(
            Q(name=name) | Q(pk=name if isinstance(name, int) else None)
        ).exists():
            raise DefinitionError(f"There is no email template {name!r}.", f"{path}.template")
        return config

    def run(self, step, items, batch):
        name = step["config"]["template"]
        template = EmailTemplate.objects.filter(
            Q(name=name) | Q(pk=name if isinstance(name, int) else None)
        ).first()
        if template is None:
            return [Outcome(error=f"The template {name!r} no longer exists.") for _ in items]
        catalog = catalog_for(
            batch.events[i.trigger_event_id] for i in items if i.trigger_event_id in batch.events
        )
        # read only if the template asks for {% recommendations %}
        recommender = Recommender(
            [batch.contacts[i.contact_id] for i in items if i.contact_id in batch.contacts]
        )
        added: dict[int, dict] = {}
        for provider in EMAIL_CONTEXT:  # once per batch each (e.g. loyalty's expiring grant)
            for pk, values in provider(items, batch).items():
                added.setdefault(pk, {}).update(values)
        return [
            self._send_one(step, item, template, batch, catalog, recommender, added.get(item.pk))
            for item in items
        ]

    def _send_one(
        self,
        step: dict,
        item: Enrollment,
        template: EmailTemplate,
        batch: Batch,
        catalog: dict,
        recommender: Recommender,
        added: dict | None = None,
    ) -> Outcome:
        """Held out, no address, the render failed, held by the send policy, or queued."""
        if item.holdout:
            return Outcome(decision="held out: nothing sent", next_step=step.get("next"))
        contact = batch.contacts[item.contact_id]
        if not contact.email:
            return Outcome(
                decision="skipped: the contact has no email address", next_step=step.get("next")
            )
        try:
            rendered = email_render(
                template=template,
                contact=contact,
                event=batch.events.get(item.trigger_event_id),
                catalog=catalog,
                extra={
                    "results": item.state.get("results", {}),
                    "enrollment_id": item.pk,  # e.g. a survey link's ref
                    "step_id": step["id"],
                    "recommender": recommender,
                    **(added or {}),
                },
            )
        except RenderError as error:
            return Outcome(error=f"The template {template.name!r} failed to render: {error}")
        campaign = batch.campaigns[item.campaign_id]
        if template.category == EmailTemplate.Category.MARKETING:
            held = _held_by_policy(item, contact, campaign, step, batch)
            if held is not None:
                return held
        visit = item.state.get("visits", {}).get(step["id"], 0) + 1
        topic = campaign.topic or template.topic
        message = message_build(
            contact=contact,
            rendered=rendered,
            template=template,
            enrollment=item,
            campaign_id=item.campaign_id,
            step_id=step["id"],
            topic=topic.slug if topic else "",
            idempotency_key=f"enrollment:{item.pk}:{step['id']}:{visit}",
            now=batch.now,
        )
        batch.pending_messages.append(message)
        return Outcome(
            decision=f"queued {template.name!r}", next_step=step.get("next"), message=message
        )


def _held_by_policy(
    item: Enrollment, contact: Contact, campaign, step: dict, batch: Batch
) -> Outcome | None:
    """None when the send policy lets this message go now (and counts it); else the
    outcome: wait for the first allowed moment, or skip a promotional message held too long."""

    if batch.policy is None:
        batch.policy = SendPolicy(set(batch.contacts), batch.now)
    verdict = batch.policy.check(contact, campaign)
    if verdict.send_at <= batch.now:
        batch.policy.record(contact.pk, batch.now)
        return None
    wait = verdict.send_at - batch.now
    if campaign.priority == Campaign.Priority.PROMOTIONAL and wait > dt.timedelta(
        hours=campaign.max_delay_hours
    ):
        return Outcome(
            decision=f"skipped: {verdict.reason} would hold it {wait.total_seconds() / 3600:.0f} h, "
            f"more than the {campaign.max_delay_hours} h allowed",
            next_step=step.get("next"),
            state={"deferred": None},
        )
    return Outcome(
        stay=True,
        wait_until=verdict.send_at,
        state={
            "deferred": {
                "step": step["id"],
                "until": verdict.send_at.isoformat(),
                "reason": verdict.reason,
            }
        },
    )


def _paths_check(config: dict, path: str, *, condition: bool) -> list[dict]:
    paths = config.get("paths")
    if not isinstance(paths, list) or not 2 - condition <= len(paths) <= 10:
        raise DefinitionError(
            f"paths is a list of {1 if condition else 2} to 10 paths.", f"{path}.paths"
        )
    names = set()
    for n, entry in enumerate(paths):
        where = f"{path}.paths[{n}]"
        if not isinstance(entry, dict):
            raise DefinitionError("Each path is an object.", where)
        allowed = {"name", "next", "condition" if condition else "weight"}
        for key in entry:
            if key not in allowed:
                raise DefinitionError(
                    f"Unknown key {key!r}; a path takes {', '.join(sorted(allowed))}.",
                    f"{where}.{key}",
                )
        name = entry.get("name", f"path {n + 1}")
        if not isinstance(name, str) or not name or len(name) > 60 or name in names:
            raise DefinitionError("Each path has its own short name.", f"{where}.name")
        names.add(name)
        if condition:
            if not isinstance(entry.get("condition"), dict):
                raise DefinitionError(
                    'condition is a condition step\'s config, e.g. {"kind": "segment", …}.',
                    f"{where}.condition",
                )
            Condition().clean(entry["condition"], f"{where}.condition")
            keys = Condition().keys_for(entry["condition"])
            if keys is not None:
                for key in entry["condition"]:
                    if key not in keys:
                        raise DefinitionError(f"Unknown key {key!r}.", f"{where}.condition.{key}")
        else:
            config_number(
                {"weight": entry.get("weight")}, "weight", where, minimum=1, maximum=10**6
            )
    return paths


def _paths_field(chooser: Field, *, default: list[dict]) -> Field:
    """A split's paths as the builder edits them: each a name, how it is chosen (a
    condition or a weight) and where it leads (`_paths_check` is their clean)."""
    return Field(
        "paths",
        "list",
        _("Paths"),
        required=True,
        default=default,
        fields=(
            Field("name", "text", _("Name"), required=True),
            chooser,
            Field("next", "branch", _("Then")),
        ),
    )


class Split(StepType):
    """The first of its paths whose condition holds (checked in order, each a condition
    step's config), else `otherwise`: a multi-way branch (VIP / repeat / everyone else)."""

    type = "split"
    branches = ()
    config_keys = frozenset({"paths", "otherwise"})
    describe = Kind(
        "split",
        _("Split by condition"),
        help=_("The first path whose condition holds; else the otherwise path."),
        group=_("Logic"),
        fields=(
            _paths_field(
                Field("condition", "condition", _("If"), required=True),
                default=[{"name": "VIP", "condition": DEFAULT_CONDITION}],
            ),
            Field("otherwise", "branch", _("Otherwise")),
        ),
    )

    def clean(self, config, path):
        _paths_check(config, path, condition=True)
        return config

    def targets(self, step):
        config = step.get("config", {})
        found = [
            (p.get("name", f"path {n + 1}"), f"config.paths[{n}].next", p.get("next"))
            for n, p in enumerate(config.get("paths", []))
        ]
        return [*found, ("otherwise", "config.otherwise", config.get("otherwise"))]

    def run(self, step, items, batch):
        config = step.get("config", {})
        chosen: dict[int, tuple[str, str | None]] = {}
        for n, entry in enumerate(config["paths"]):
            undecided = [i for i in items if i.pk not in chosen]
            if not undecided:
                break
            condition = entry["condition"]
            results = CONDITION_KINDS[condition["kind"]][1](condition, undecided, batch)
            for item in undecided:
                if results[item.pk]:
                    chosen[item.pk] = (entry.get("name", f"path {n + 1}"), entry.get("next"))
        otherwise = ("otherwise", config.get("otherwise"))
        return [
            Outcome(decision=name, next_step=target)
            for name, target in (chosen.get(i.pk, otherwise) for i in items)
        ]


class RandomSplit(StepType):
    """Each enrolment takes one path at random, in proportion to the paths' weights: an A/B
    test inside a journey. The draw is a hash of the enrolment and the step, so a retry
    takes the same path; the path's name is the StepRun's decision (per-path results)."""

    type = "random_split"
    branches = ()
    config_keys = frozenset({"paths"})
    describe = Kind(
        "random_split",
        _("Random split (A/B)"),
        help=_("Each contact takes one path at random, in proportion to the weights."),
        group=_("Logic"),
        fields=(
            _paths_field(
                Field("weight", "integer", _("Weight"), required=True, minimum=1, default=50),
                default=[{"name": "A", "weight": 50}, {"name": "B", "weight": 50}],
            ),
        ),
    )

    def clean(self, config, path):
        _paths_check(config, path, condition=False)
        return config

    def targets(self, step):
        return [
            (p.get("name", f"path {n + 1}"), f"config.paths[{n}].next", p.get("next"))
            for n, p in enumerate(step.get("config", {}).get("paths", []))
        ]

    def run(self, step, items, batch):
        paths = [
            (p.get("name", f"path {n + 1}"), p["weight"], p.get("next"))
            for n, p in enumerate(step["config"]["paths"])
        ]
        total = sum(weight for _, weight, _ in paths)
        outcomes = []
        for item in items:
            digest = hashlib.sha256(f"{item.pk}:{step['id']}".encode()).digest()
            draw = int.from_bytes(digest[:8], "big") % total
            for name, weight, target in paths:
                if draw < weight:
                    outcomes.append(Outcome(decision=name, next_step=target))
                    break
                draw -= weight
        return outcomes


class UpdateContact(StepType):
    type = "update_contact"
    config_keys = frozenset({"set_attributes", "add_tags", "remove_tags", "marketing_consent"})
    describe = Kind(
        "update_contact",
        _("Update the contact"),
        help=_("Set attributes, add or remove tags, or withdraw marketing consent."),
        group=_("Contact"),
        fields=(
            Field("set_attributes", "properties", _("Set attributes")),
            Field("add_tags", "refs", _("Add tags"), source="tags"),
            Field("remove_tags", "refs", _("Remove tags"), source="tags"),
            Field(
                "marketing_consent",
                "choice",
                _("Marketing consent"),
                help=_("Withdraw it at the end of a sunset policy."),
                choices=(("withdrawn", _("Withdraw")),),
            ),
        ),
        branches=(("next", _("Then")),),
        extra={"example": {"add_tags": ["engaged"]}},
    )

    def clean(self, config, path):
        if not any(
            k in config for k in ("set_attributes", "add_tags", "remove_tags", "marketing_consent")
        ):
            raise DefinitionError(
                "Give set_attributes, add_tags, remove_tags or marketing_consent.", path
            )
        if config.get("marketing_consent") not in (None, "withdrawn"):
            raise DefinitionError(
                "marketing_consent can only be set to withdrawn (a sunset policy).",
                f"{path}.marketing_consent",
            )
        if not isinstance(config.get("set_attributes", {}), dict):
            raise DefinitionError("set_attributes is an object.", f"{path}.set_attributes")
        for key in ("add_tags", "remove_tags"):
            value = config.get(key, [])
            if not isinstance(value, list) or not all(isinstance(t, str) and t for t in value):
                raise DefinitionError(f"{key} is a list of tag names.", f"{path}.{key}")
        return config

    def run(self, step, items, batch):

        config = step.get("config", {})
        for item in items:
            contact = batch.contacts[item.contact_id]
            if config.get("marketing_consent") == "withdrawn":
                consent_record(
                    contact=contact,
                    status="withdrawn",
                    source=f"campaign {item.campaign_id} step {step['id']}",
                )
            tags = None
            if config.get("add_tags") or config.get("remove_tags"):
                tags = sorted(
                    ({t.name for t in contact.tags.all()} | set(config.get("add_tags", [])))
                    - set(config.get("remove_tags", []))
                )
            if not (config.get("set_attributes") or tags is not None):
                continue
            contact_update(
                contact=contact,
                tags=tags,
                **(
                    {"attributes": config["set_attributes"]} if config.get("set_attributes") else {}
                ),
            )
        return [Outcome(decision="contact updated", next_step=step.get("next")) for _ in items]


def webhook_signature(secret: str, timestamp: str, body: bytes) -> str:
    """HMAC-SHA256 over "<timestamp>.<body>", hex (the Stripe-style scheme)."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


class Webhook(StepType):
    type = "webhook"
    config_keys = frozenset({"url", "payload"})
    describe = Kind(
        "webhook",
        _("Call a webhook"),
        help=_("POST a signed JSON payload about the contact to a URL."),
        group=_("Contact"),
        fields=(
            Field("url", "text", _("URL"), required=True, help=_("https://…")),
            Field("payload", "properties", _("Extra payload")),
        ),
        branches=(("next", _("Then")),),
        extra={"example": {"url": "https://example.com/hook"}},
    )

    def clean(self, config, path):
        url = config.get("url", "")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise DefinitionError("url is an http(s) URL.", f"{path}.url")
        return config

    def run(self, step, items, batch):
        outcomes = []
        for item in items:
            visit = item.state.get("visits", {}).get(step["id"], 0) + 1
            contact = batch.contacts[item.contact_id]
            payload = {
                "campaign_id": item.campaign_id,
                "enrollment_id": item.pk,
                "step": step["id"],
                "contact": {
                    "id": contact.pk,
                    "email": contact.email,
                    "external_id": contact.external_id,
                },
                "sent_at": batch.now.isoformat(),
                **step["config"].get("payload", {}),
            }
            batch.pending_webhooks.append(
                WebhookDelivery(
                    enrollment=item,
                    url=step["config"]["url"],
                    payload=json.loads(json.dumps(payload)),
                    idempotency_key=f"enrollment:{item.pk}:{step['id']}:{visit}",
                    created_at=batch.now,
                    next_attempt_at=batch.now,
                )
            )
            outcomes.append(
                Outcome(decision=f"POST {step['config']['url']} queued", next_step=step.get("next"))
            )
        return outcomes


class Exit(StepType):
    type = "exit"
    config_keys = frozenset({"reason"})
    branches = ()
    describe = Kind(
        "exit",
        _("Exit"),
        help=_("End the enrolment here."),
        group=_("Logic"),
        fields=(Field("reason", "text", _("Reason"), help=_("Shown on the enrolment.")),),
    )

    def run(self, step, items, batch):
        reason = step.get("config", {}).get("reason", "exit step")
        return [Outcome(decision="exit", exit_reason=reason) for _ in items]


# What an upper app adds to a send_email step's template context: each provider takes the
# batch's enrolments standing on the step and returns {enrollment id: {name: value}},
# reading what it needs for all of them at once.
EmailContext = Callable[[list[Enrollment], Batch], dict[int, dict]]
EMAIL_CONTEXT: list[EmailContext] = []


def email_context_register(provider: EmailContext) -> None:
    """Add variables to the templates a journey sends (loyalty: the expiring grant)."""
    if provider not in EMAIL_CONTEXT:
        EMAIL_CONTEXT.append(provider)


def step_type_register(step: StepType) -> None:
    """Add a step type (the loyalty app adds `grant` this way); its `type` is the name
    campaign definitions use, and its `describe` what the journey builder shows."""
    REGISTRY[step.type] = step
    if step.describe is not None:
        kind_describe("step", step.describe)


REGISTRY: dict[str, StepType] = {}
for _step in (
    Wait(),
    WaitUntil(),
    WaitForEvent(),
    Condition(),
    Split(),
    RandomSplit(),
    SendEmail(),
    UpdateContact(),
    Webhook(),
    Exit(),
):
    step_type_register(_step)
