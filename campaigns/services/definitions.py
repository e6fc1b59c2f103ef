"""Campaign definitions: triggers (an open registry), steps as a graph, goals; validation
before a campaign can be activated; publishing versions."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from django.db import transaction
from django.db.models import Max
from django.utils.translation import gettext_lazy as _

from campaigns.models import Campaign, CampaignVersion
from campaigns.services.triggers import cursors_ensure
from campaigns.steps import REGISTRY, DefinitionError
from crm import clock
from crm.extend import Field, Kind, kind_describe
from crm.models import Segment, Stage
from crm.services.products import PRICE_DROPPED, PRODUCT_EVENTS, RESTOCKED

# Trigger types: name → validator, and the keys a trigger of that type may have besides
# "type" (anything else is refused with its path). Other apps add theirs (loyalty: credit
# expiring…).
TRIGGERS: dict[str, Callable[[dict, str], None]] = {}
TRIGGER_KEYS: dict[str, frozenset[str]] = {}


def trigger_type(name: str, keys: Iterable[str] = ()):
    def register(clean: Callable[[dict, str], None]):
        TRIGGERS[name] = clean
        TRIGGER_KEYS[name] = frozenset(keys)
        return clean

    return register


def keys_check(given: dict, allowed: Iterable[str], path: str) -> None:
    """Refuse a key a definition does not understand, naming its path: a typo must not
    save as something that silently does nothing."""
    allowed = set(allowed)
    for key in given:
        if key not in allowed:
            raise DefinitionError(
                f"Unknown key {key!r}; this takes {', '.join(sorted(allowed)) or 'nothing else'}.",
                f"{path}.{key}",
            )


def where_check(where: object, path: str) -> None:
    """A property filter: {"property": value}, values strings, numbers or booleans."""
    if not isinstance(where, dict):
        raise DefinitionError("'where' is an object of property: value pairs.", path)
    for key, value in where.items():
        if not isinstance(key, str) or not key or "__" in key:
            raise DefinitionError("Property names are strings without '__'.", path)
        if not isinstance(value, str | int | float | bool):
            raise DefinitionError(
                "Property values are strings, numbers or booleans.", f"{path}.{key}"
            )


WHERE = Field(
    "where",
    "properties",
    _("Only when the event has"),
    help=_("Property values the event must carry, for example category = shoes. Empty: any."),
)
EVENT_NAME_HELP = _("The event's name exactly as your shop sends it, for example Order Completed.")


@trigger_type("event", keys=("name", "where", "include_backfill"))
def _event_trigger(trigger, path):
    if not isinstance(trigger.get("name"), str) or not trigger["name"]:
        raise DefinitionError("An event trigger names the event.", f"{path}.name")
    where_check(trigger.get("where", {}), f"{path}.where")
    if not isinstance(trigger.get("include_backfill", False), bool):
        raise DefinitionError("include_backfill is true or false.", f"{path}.include_backfill")


kind_describe(
    "trigger",
    Kind(
        "event",
        _("An event happens"),
        help=_("Starts when the contact does something your shop or app tracks."),
        fields=(
            Field(
                "name",
                "text",
                _("Event"),
                help=EVENT_NAME_HELP,
                required=True,
                source="events",
                default="Order Completed",
            ),
            WHERE,
            Field(
                "include_backfill",
                "boolean",
                _("Also start for imported past events"),
                help=_(
                    "Events imported from history (or received long after they happened) "
                    "normally do not start the campaign."
                ),
            ),
        ),
    ),
)


def _segment_trigger(trigger, path):
    if not Segment.objects.filter(
        pk=trigger.get("segment") if isinstance(trigger.get("segment"), int) else None
    ).exists():
        raise DefinitionError("'segment' is the id of an existing segment.", f"{path}.segment")


trigger_type("segment_entered", keys=("segment",))(_segment_trigger)
trigger_type("segment_exited", keys=("segment",))(_segment_trigger)
SEGMENT = Field("segment", "ref", _("Segment"), required=True, source="segments")
kind_describe(
    "trigger",
    Kind(
        "segment_entered",
        _("Joins a segment"),
        help=_("When a contact becomes a member of the segment."),
        fields=(SEGMENT,),
    ),
)
kind_describe(
    "trigger",
    Kind(
        "segment_exited",
        _("Leaves a segment"),
        help=_("When a contact stops being a member of the segment."),
        fields=(SEGMENT,),
    ),
)


@trigger_type("stage_changed", keys=("from", "to"))
def _stage_trigger(trigger, path):
    for key in ("from", "to"):
        if trigger.get(key) not in (None, *Stage.values):
            raise DefinitionError(
                f"'{key}' is a stage: {', '.join(Stage.values)}.", f"{path}.{key}"
            )
    if not trigger.get("from") and not trigger.get("to"):
        raise DefinitionError("Give 'from', 'to' or both.", path)


kind_describe(
    "trigger",
    Kind(
        "stage_changed",
        _("Lifecycle stage changes"),
        help=_(
            "When a contact moves between lifecycle stages. Give the old stage, the new one or both."
        ),
        fields=(
            Field("from", "ref", _("From stage"), help=_("Empty: any stage."), source="stages"),
            Field(
                "to",
                "ref",
                _("To stage"),
                help=_("Empty: any stage."),
                source="stages",
                default="lapsed",
            ),
        ),
    ),
)


@trigger_type("subscribed", keys=("topic",))
def _subscribed_trigger(trigger, path):
    topic = trigger.get("topic")
    if topic is not None and (not isinstance(topic, str) or not topic):
        raise DefinitionError(
            "topic is a topic's slug (or leave it out: everything).", f"{path}.topic"
        )


kind_describe(
    "trigger",
    Kind(
        "subscribed",
        _("Subscribes to email"),
        help=_("When a contact agrees to receive marketing email."),
        fields=(
            Field(
                "topic",
                "ref",
                _("Topic"),
                help=_("Only subscriptions to this topic. Empty: subscribing to all email."),
                source="topics",
            ),
        ),
    ),
)


@trigger_type("date", keys=("field", "offset_days"))
def _date_trigger(trigger, path):
    field = trigger.get("field")
    if field not in ("birthday", "created_at") and not (
        isinstance(field, str) and field.startswith("attributes.")
    ):
        raise DefinitionError(
            "field is birthday, created_at (signup anniversary) or attributes.<key>.",
            f"{path}.field",
        )
    offset = trigger.get("offset_days", 0)
    if isinstance(offset, bool) or not isinstance(offset, int) or not -60 <= offset <= 60:
        raise DefinitionError(
            "offset_days is a whole number from -60 to 60.", f"{path}.offset_days"
        )


kind_describe(
    "trigger",
    Kind(
        "date",
        _("A yearly date"),
        help=_("Every year on a date of the contact's, in their own time zone."),
        fields=(
            Field(
                "field",
                "text",
                _("Date"),
                help=_(
                    "birthday, created_at (the signup anniversary) or attributes.<name> for a "
                    "date you store on the contact."
                ),
                required=True,
                default="birthday",
                source="date_fields",
            ),
            Field(
                "offset_days",
                "integer",
                _("Days before (-) or after (+)"),
                help=_("For example -7 starts a week before the date; 0 on the day."),
                minimum=-60,
                maximum=60,
                default=0,
            ),
        ),
    ),
)


@trigger_type("product_event", keys=("event", "audience", "days"))
def _product_event_trigger(trigger, path):

    event = trigger.get("event")
    if event not in PRODUCT_EVENTS:
        raise DefinitionError(f"event is one of: {', '.join(PRODUCT_EVENTS)}.", f"{path}.event")
    audience = trigger.get("audience", "requested")
    if audience not in ("requested", "interested", "both"):
        raise DefinitionError(
            "audience is requested (asked to be told), interested (viewed or added it "
            "lately) or both.",
            f"{path}.audience",
        )
    if audience != "interested" and event != RESTOCKED:
        raise DefinitionError(
            "Only a restock has requests: a price drop reaches the interested.",
            f"{path}.audience",
        )
    days = trigger.get("days", 30)
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 365:
        raise DefinitionError("days is a whole number from 1 to 365.", f"{path}.days")


kind_describe(
    "trigger",
    Kind(
        "product_event",
        _("A product is back or cheaper"),
        help=_(
            "When a product is restocked or its price drops: reaches the contacts who asked "
            "or showed interest, once each."
        ),
        fields=(
            Field(
                "event",
                "choice",
                _("What happened"),
                required=True,
                choices=((RESTOCKED, _("Back in stock")), (PRICE_DROPPED, _("Price dropped"))),
                default=RESTOCKED,
            ),
            Field(
                "audience",
                "choice",
                _("Who hears about it"),
                help=_("A price drop can only reach the interested."),
                choices=(
                    ("requested", _("Those who asked to be told")),
                    ("interested", _("Those who viewed it or added it to a cart lately")),
                    ("both", _("Both")),
                ),
                default="requested",
            ),
            Field(
                "days",
                "integer",
                _("“Lately” means within (days)"),
                help=_("How recent a view or cart addition must be."),
                minimum=1,
                maximum=365,
                default=30,
                when={"audience": ("interested", "both")},
            ),
        ),
    ),
)


@trigger_type("manual")
def _manual_trigger(trigger, path):
    return None


kind_describe(
    "trigger",
    Kind(
        "manual",
        _("Added by hand or by the API"),
        help=_("Contacts are enrolled from the admin (“Enroll a segment”) or through the API."),
    ),
)


def trigger_validate(trigger: object) -> None:
    if not isinstance(trigger, dict) or trigger.get("type") not in TRIGGERS:
        raise DefinitionError(
            f"The trigger's type is one of {', '.join(sorted(TRIGGERS))}.", "trigger.type"
        )
    keys_check(trigger, {"type", *TRIGGER_KEYS[trigger["type"]]}, "trigger")
    TRIGGERS[trigger["type"]](trigger, "trigger")


def goals_validate(goals: object) -> None:
    if not isinstance(goals, list):
        raise DefinitionError("goals is a list.", "goals")
    for n, goal in enumerate(goals):
        if (
            not isinstance(goal, dict)
            or not isinstance(goal.get("event"), str)
            or not goal["event"]
        ):
            raise DefinitionError(
                'A goal is {"event": "Order Completed", "match": "cart"}.', f"goals[{n}]"
            )
        keys_check(goal, ("event", "match", "where"), f"goals[{n}]")
        if goal.get("match") is not None and not isinstance(goal["match"], str):
            raise DefinitionError(
                'match is "cart" (the same cart, checkout or order) or a property of the '
                "triggering event.",
                f"goals[{n}].match",
            )
        if "where" in goal:
            where_check(goal["where"], f"goals[{n}].where")


# A goal has no type: it is always an event (triggers.goals_reach reads goal["event"], and
# _goal_reached its match and where).
kind_describe(
    "goal",
    Kind(
        "event",
        _("An event happens"),
        help=_(
            "The contact leaves the campaign at once and it counts as a conversion, for "
            "example when they order."
        ),
        fields=(
            Field(
                "event",
                "text",
                _("Event"),
                help=EVENT_NAME_HELP,
                required=True,
                source="events",
                default="Order Completed",
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
            WHERE,
        ),
    ),
)


EXIT_KEYS = {
    "segment_exited": ("segment",),
    "segment_entered": ("segment",),
    "stage_changed": ("from", "to"),
}


def exits_validate(exits: object) -> None:
    """Exits end running enrolments without a conversion: leaving or entering a segment,
    or a stage change (from/to)."""
    if not isinstance(exits, list):
        raise DefinitionError("exits is a list.", "exits")
    for n, rule in enumerate(exits):
        path = f"exits[{n}]"
        if not isinstance(rule, dict) or rule.get("type") not in EXIT_KEYS:
            raise DefinitionError(
                f"An exit's type is one of {', '.join(EXIT_KEYS)}.", f"{path}.type"
            )
        keys_check(rule, {"type", *EXIT_KEYS[rule["type"]]}, path)
        if rule["type"] == "stage_changed":
            _stage_trigger(rule, path)
        else:
            _segment_trigger(rule, path)


def steps_validate(steps: object) -> list[dict]:
    """The steps must form a graph from the first step where every branch goes to a step
    that exists (or ends the sequence), every step is reachable, and every config is valid."""
    if not isinstance(steps, list) or not steps:
        raise DefinitionError("A campaign needs at least one step.", "steps")
    ids: dict[str, int] = {}
    for n, step in enumerate(steps):
        _step_check(step, f"steps[{n}]", ids)
        ids[step["id"]] = n
    _branches_check(steps, ids)
    _reachable_check(steps, ids)
    return steps


def _step_check(step: object, path: str, ids: dict[str, int]) -> None:
    """One step: an object with a new short id, a known type, a valid config and only
    the branches its type has."""
    if not isinstance(step, dict):
        raise DefinitionError("Each step is an object with id, type and config.", path)
    step_id = step.get("id")
    if not isinstance(step_id, str) or not step_id or len(step_id) > 64:
        raise DefinitionError("Each step needs a short text id.", f"{path}.id")
    if step_id in ids:
        raise DefinitionError(f"The id {step_id!r} is used twice.", f"{path}.id")
    kind = REGISTRY.get(step.get("type"))
    if kind is None:
        raise DefinitionError(
            f"Unknown step type {step.get('type')!r}; use one of {', '.join(sorted(REGISTRY))}.",
            f"{path}.type",
        )
    config = step.get("config", {})
    if not isinstance(config, dict):
        raise DefinitionError("config is an object.", f"{path}.config")
    kind.clean(config, f"{path}.config")
    keys = kind.keys_for(config)
    if keys is not None:
        keys_check(config, keys, f"{path}.config")
    allowed = {"id", "type", "config", "name", *kind.branches}
    for key in step:
        if key not in allowed:
            raise DefinitionError(
                f"A {kind.type} step has no {key!r}; its branches are "
                f"{', '.join(kind.branches) or 'none'}.",
                f"{path}.{key}",
            )


def _branches_check(steps: list[dict], ids: dict[str, int]) -> None:
    for n, step in enumerate(steps):
        for label, where, target in REGISTRY[step["type"]].targets(step):
            if target is not None and target not in ids:
                raise DefinitionError(
                    f"The {label!r} branch goes to {target!r}, which is not a step.",
                    f"steps[{n}].{where}",
                )


def _reachable_check(steps: list[dict], ids: dict[str, int]) -> None:
    reachable, frontier = set(), [steps[0]["id"]]
    while frontier:
        current = frontier.pop()
        if current in reachable:
            continue
        reachable.add(current)
        step = steps[ids[current]]
        frontier += [t for _, _, t in REGISTRY[step["type"]].targets(step) if t]
    for n, step in enumerate(steps):
        if step["id"] not in reachable:
            raise DefinitionError(
                f"The step {step['id']!r} cannot be reached from the first step.", f"steps[{n}]"
            )


def campaign_validate(campaign: Campaign) -> None:
    """Raise the draft's first problem (campaign_problems lists them all)."""
    problems = campaign_problems(campaign)
    if problems:
        raise problems[0]


def campaign_problems(campaign: Campaign) -> list[DefinitionError]:
    """Every problem of the draft, each with its path, in the order campaign_validate
    meets them: the trigger's, the goals', the exits', each step's own, then the graph's
    (branches and reachability, once every step is valid in itself), then the entry rules'."""
    problems: list[DefinitionError] = []

    def check(validate: Callable[[], object]) -> None:
        try:
            validate()
        except DefinitionError as error:
            problems.append(error)

    check(lambda: trigger_validate(campaign.trigger))
    check(lambda: goals_validate(campaign.goals))
    check(lambda: exits_validate(campaign.exits))
    steps = campaign.steps
    if not isinstance(steps, list) or not steps:
        check(lambda: steps_validate(steps))
    else:
        ids: dict[str, int] = {}
        before = len(problems)
        for n, step in enumerate(steps):
            check(lambda: _step_check(step, f"steps[{n}]", ids))  # noqa: B023 (called at once)
            if isinstance(step, dict) and isinstance(step.get("id"), str):
                ids.setdefault(step["id"], n)
        if len(problems) == before:
            check(lambda: (_branches_check(steps, ids), _reachable_check(steps, ids)))
    if not 0 <= campaign.holdout_percent <= 50:
        problems.append(DefinitionError("holdout_percent is 0 to 50.", "holdout_percent"))
    if campaign.reentry == Campaign.Reentry.ONCE_PER_N_DAYS and campaign.reentry_days < 1:
        problems.append(DefinitionError("reentry_days is at least 1.", "reentry_days"))
    return problems


@transaction.atomic
def campaign_publish(*, campaign: Campaign, activate: bool = True) -> CampaignVersion:
    """Validate the draft and publish it as a new version. Running enrollments stay on
    the version they started on; new ones take this one."""
    campaign = Campaign.objects.select_for_update().get(pk=campaign.pk)
    campaign_validate(campaign)
    latest = campaign.published_version
    same = latest and (latest.steps, latest.goals, latest.exits) == (
        campaign.steps,
        campaign.goals,
        campaign.exits,
    )
    if same:
        version = latest
    else:
        number = (campaign.versions.aggregate(n=Max("number"))["n"] or 0) + 1
        version = CampaignVersion.objects.create(
            campaign=campaign,
            number=number,
            steps=campaign.steps,
            goals=campaign.goals,
            exits=campaign.exits,
            published_at=clock.now(),
        )

    cursors_ensure()
    campaign.published_version = version
    if activate:
        campaign.status = Campaign.Status.ACTIVE
    campaign.save(update_fields=["published_version", "status", "updated_at"])
    return version


def campaign_set_status(*, campaign: Campaign, status: str) -> Campaign:
    """Pause, resume or archive. Activating needs a published, valid version."""
    if status not in Campaign.Status.values:
        raise DefinitionError(f"status is one of {', '.join(Campaign.Status.values)}.", "status")
    if status == Campaign.Status.ACTIVE:
        campaign_publish(campaign=campaign)
        campaign.refresh_from_db()
        return campaign
    Campaign.objects.filter(pk=campaign.pk).update(status=status)
    campaign.refresh_from_db()
    return campaign
