"""Segment rules: a JSON tree of `all` / `any` / `not` groups over conditions, validated
with errors that point at the offending node, and compiled into one Django Q over Contact
(one SQL query; no per-contact Python).

    {"all": [
        {"type": "field", "field": "stage", "op": "in", "value": ["repeat", "loyal"]},
        {"any": [
            {"type": "event", "name": "Product Viewed", "op": "at_least", "count": 3,
             "days": 30, "where": {"category": "shoes"}},
            {"not": {"type": "tag", "op": "has", "value": "wholesale"}}
        ]}
    ]}

Every condition compiles to a two-valued SQL expression (never NULL), so `not` means
exactly "every contact the condition does not match".
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from decimal import Decimal

from django.conf import settings
from django.db import connection
from django.db.models import (
    Avg,
    Case,
    Count,
    Exists,
    FloatField,
    Max,
    Min,
    OuterRef,
    Q,
    Sum,
    Value,
    When,
)
from django.db.models.expressions import RawSQL
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast, Coalesce
from django.db.models.lookups import (
    Exact,
    GreaterThan,
    GreaterThanOrEqual,
    LessThan,
    LessThanOrEqual,
)
from django.utils.translation import gettext_lazy as _

from crm import clock
from crm.birthdays import celebrated_this_month, celebrated_within
from crm.db import db_datetime
from crm.errors import KeepersError
from crm.kinds import Field, Kind, Text, kind_describe
from crm.models import (
    MEDDIC_CRITERIA,
    ConsentRecord,
    Contact,
    ContactClv,
    ContactRfm,
    Event,
    LeadScorecard,
    MeddicStatus,
    Order,
    OrderLine,
    OrderStatus,
    RfmGroup,
    SegmentMembership,
    Stage,
    order_net,
)
from crm.selectors import consent_status_subquery

MAX_DEPTH = 8
MAX_NODES = 100


class RuleError(KeepersError):
    def __init__(self, message: str, path: str) -> None:
        super().__init__(
            f"{path}: {message}",
            code="invalid_rule",
            field=path,
            details={"field": "rules", "path": path},
        )
        self.path = path


# Contact columns a rule may test, by type.
CONTACT_FIELDS = {
    "email": "text",
    "external_id": "text",
    "first_name": "text",
    "last_name": "text",
    "phone": "text",
    "locale": "text",
    "timezone": "text",
    "source": "text",
    "channel": "text",
    "stage": "stage",
    "created_at": "datetime",
    "updated_at": "datetime",
    "stage_changed_at": "datetime",
    "birthday": "birthday",
}
OPS = {
    "text": {"eq", "neq", "contains", "in", "not_in", "exists", "starts_with"},
    "stage": {"eq", "neq", "in", "not_in"},
    "datetime": {"gt", "gte", "lt", "lte", "within_last_days", "not_within_last_days", "exists"},
    "birthday": {
        "gt",
        "gte",
        "lt",
        "lte",
        "exists",
        "birthday_in_next_days",
        "birthday_in_month",
        "birthday_this_month",
    },
    "attribute": {
        "eq",
        "neq",
        "contains",
        "in",
        "not_in",
        "exists",
        "gt",
        "gte",
        "lt",
        "lte",
        "within_last_days",
    },
    "number": {"eq", "neq", "gt", "gte", "lt", "lte"},
}
COMPARE = {
    "gt": GreaterThan,
    "gte": GreaterThanOrEqual,
    "lt": LessThan,
    "lte": LessThanOrEqual,
    "eq": Exact,
}
ORDER_MEASURES = {
    "count": "number",
    "total_spend": "number",
    "average_order_value": "number",
    "spend_last_days": "number",
    "spend_percentile": "number",
    "first_order_at": "datetime",
    "last_order_at": "datetime",
}
RFM_SCORES = {"recency", "frequency", "monetary"}
# Predicted-CLV measures (the latest fit, crm.services.clv_fits) → ContactClv columns.
CLV_MEASURES = {
    "probability_alive": "probability_alive",
    "expected_purchases_30d": "purchases_30d",
    "expected_purchases_90d": "purchases_90d",
    "expected_purchases_365d": "purchases_365d",
    "expected_spend": "expected_spend",
    "predicted_clv": "predicted_clv",
    "historic_clv": "historic_clv",
}
CONSENT_VALUES = {"granted", "withdrawn", "none"}

# What the rule builder shows for each operator (crm/kinds.py descriptions, next to each
# builder below); dates read "after / before" rather than "more / less than".
OP_LABELS: dict[str, Text] = {
    "eq": _("is"),
    "neq": _("is not"),
    "gt": _("more than"),
    "gte": _("at least"),
    "lt": _("less than"),
    "lte": _("at most"),
    "in": _("is one of"),
    "not_in": _("is none of"),
    "contains": _("contains"),
    "starts_with": _("starts with"),
    "exists": _("is filled in"),
    "within_last_days": _("in the last … days"),
    "not_within_last_days": _("not in the last … days"),
    "birthday_in_next_days": _("birthday in the next … days"),
    "birthday_this_month": _("birthday this month"),
    "birthday_in_month": _("birthday in the month of"),
    "has": _("has"),
    "has_not": _("does not have"),
    "has_any": _("has any of"),
    "is": _("is"),
    "is_not": _("is not"),
    "at_least": _("at least … times"),
    "at_most": _("at most … times"),
    "none": _("never"),
    "member": _("is a member of"),
    "not_member": _("is not a member of"),
    "yes": _("bought"),
    "no": _("never bought"),
}
DATE_OP_LABELS: dict[str, Text] = {
    "gt": _("after"),
    "gte": _("on or after"),
    "lt": _("before"),
    "lte": _("on or before"),
}
NUMBER_OP_NAMES = ("gte", "gt", "lte", "lt", "eq", "neq")


def op_choices(*ops: str, dates: bool = False) -> tuple[tuple[str, Text], ...]:
    """(operator, label) pairs for a description's operator field, in the order given."""
    return tuple((op, (DATE_OP_LABELS.get(op) if dates else None) or OP_LABELS[op]) for op in ops)


def op_field(*ops: str, dates: bool = False, when: dict | None = None) -> Field:
    """The operator of a condition, as a choice shown by `when` (several `op` fields with
    different `when`s give each kind of value its own operators)."""
    return Field(
        "op",
        "choice",
        _("Operator"),
        required=True,
        choices=op_choices(*ops, dates=dates),
        default=ops[0],
        when=when,
    )


def days_field(name: str = "value", *, required: bool = True, when=None, label=None) -> Field:
    return Field(
        name,
        "integer",
        label or _("Days"),
        required=required,
        minimum=1,
        maximum=3650,
        default=30 if required else None,
        when=when,
    )


def segment_condition_describe(
    name: str, label: Text, *fields: Field, example: dict, help: Text = "", group: Text = ""
) -> None:
    """Describe a segment condition for the rule builder: its fields and an example node
    (what a new condition of this kind starts as; a test compiles every example)."""
    kind_describe(
        "segment_condition",
        Kind(
            name,
            label,
            help=help,
            fields=fields,
            group=group,
            extra={"example": {"type": name, **example}},
        ),
    )


@dataclass
class Compiled:
    q: Q
    depends_on: set[str] = field(default_factory=set)
    time_based: bool = False
    segments: set[int] = field(default_factory=set)


def compile_rules(
    rules: object,
    *,
    now: dt.datetime | None = None,
    segment_exists: Callable[[int], bool] | None = None,
    contact_ids: list[int] | None = None,
) -> Compiled:
    """Validate and compile a rule tree. Raises RuleError naming the node's path.

    With `contact_ids` (the incremental pass), the per-contact subqueries (event counts,
    order sums…) read only those contacts' rows instead of aggregating the whole table."""
    if rules in ({}, None, ""):
        raise RuleError("The rules are empty: add at least one condition.", "rules")
    if not isinstance(rules, dict):
        raise RuleError("A rule is a JSON object: a group (all/any/not) or a condition.", "rules")
    compiled = Compiled(q=Q())
    ctx = RuleContext(
        path="rules",
        now=now or clock.now(),
        compiled=compiled,
        segment_exists=segment_exists,
        scope=tuple(contact_ids) if contact_ids is not None else None,
    )
    compiled.q = _node(rules, ctx, 0, [0])
    return compiled


@dataclass(frozen=True)
class RuleContext:
    """What a condition builder gets besides its node: where the node is (`path`, for
    errors), the moment the rule is evaluated at, what the compiled rule collects (what
    it reads, whether it drifts with time, the segments it is built on) and, for the
    incremental pass, the contacts the evaluation is limited to (`scope`).

    A builder is `(node, ctx) -> Q`, registered with `condition_register`; it reads
    related rows through `contacts_with` and `having`, which apply the scope."""

    path: str
    now: dt.datetime
    compiled: Compiled
    segment_exists: Callable[[int], bool] | None = None
    scope: tuple[int, ...] | None = None

    def at(self, path: str) -> RuleContext:
        return replace(self, path=path)

    def depends_on(self, kind: str) -> None:
        """The rule reads `kind` (profile, tag, order, event:<name>, segment:<id>, …): a
        change mark of that kind re-evaluates it in the incremental pass."""
        self.compiled.depends_on.add(kind)

    def drifts(self) -> None:
        """The rule's answer changes with time alone (a window in days, an expiry): the
        hourly refresh re-evaluates it."""
        self.compiled.time_based = True

    def days(self, node: dict, key: str = "value") -> int:
        """node[key] as a number of days (1 to 3650); the rule drifts with time."""
        self.drifts()
        days = whole_number(node, key, self.path, minimum=1, maximum=3650)
        assert days is not None  # required
        return days

    def contacts_with(self, queryset) -> Q:
        """Contacts with a row in `queryset` (a `.values("<contact column>")` queryset),
        as a correlated EXISTS: PostgreSQL plans it as a semi-join, and its negation as an
        anti-join. `~Q(pk__in=…)` compiled to NOT (id IN (…)), which it cannot turn into
        an anti-join: a hashed subplan that collapsed once the ids outgrew work_mem."""
        column = queryset.query.values_select[0]
        if self.scope is not None:
            queryset = queryset.filter(**{f"{column}__in": self.scope})
        return Q(Exists(queryset.filter(**{column: OuterRef("pk")})))

    def having(self, queryset, annotation, op: str, value) -> Q:
        """Contacts whose aggregate `annotation` over their rows in `queryset` (which has
        a contact_id) compares with `value` by `op` (eq, neq, gt, gte, lt, lte)."""
        if self.scope is not None:
            queryset = queryset.filter(contact_id__in=self.scope)
        grouped = queryset.order_by().values("contact_id").annotate(v=annotation)
        if op == "neq":
            grouped = grouped.exclude(v=value)
        else:
            grouped = grouped.filter(**{f"v__{'exact' if op == 'eq' else op}": value})
        return Q(pk__in=grouped.values("contact_id"))


def _node(node, ctx: RuleContext, depth: int, counter: list[int]) -> Q:
    path = ctx.path
    counter[0] += 1
    if counter[0] > MAX_NODES:
        raise RuleError(f"A rule may have at most {MAX_NODES} conditions and groups.", path)
    if depth > MAX_DEPTH:
        raise RuleError(f"Groups nest at most {MAX_DEPTH} deep.", path)
    if not isinstance(node, dict):
        raise RuleError("Expected an object (a group or a condition).", path)
    groups = [k for k in ("all", "any", "not") if k in node]
    if groups:
        if len(node) != 1:
            raise RuleError("A group has exactly one key: all, any or not.", path)
        key = groups[0]
        if key == "not":
            return ~_node(node["not"], ctx.at(f"{path}.not"), depth + 1, counter)
        children = node[key]
        if not isinstance(children, list) or not children:
            raise RuleError(f"'{key}' takes a non-empty list.", f"{path}.{key}")
        compiled = [
            _node(c, ctx.at(f"{path}.{key}[{i}]"), depth + 1, counter)
            for i, c in enumerate(children)
        ]
        result = compiled[0]
        for q in compiled[1:]:
            result = (result & q) if key == "all" else (result | q)
        return result
    kind = node.get("type")
    builder = CONDITIONS.get(kind)
    if builder is None:
        raise RuleError(
            f"Unknown condition type {kind!r}; expected one of {', '.join(sorted(CONDITIONS))}, "
            "or a group (all/any/not).",
            f"{path}.type",
        )
    return builder(node, ctx)


# --- helpers ------------------------------------------------------------------------------
def allowed_keys(node: dict, path: str, keys: set[str]) -> None:
    for key in node:
        if key not in keys | {"type"}:
            raise RuleError(
                f"Unknown key '{key}' for a {node['type']} condition "
                f"(allowed: {', '.join(sorted(keys))}).",
                f"{path}.{key}",
            )


def rule_op(node: dict, path: str, allowed: set[str]) -> str:
    op = node.get("op")
    if op not in allowed:
        raise RuleError(
            f"Operator {op!r} does not apply here; use one of {', '.join(sorted(allowed))}.",
            f"{path}.op",
        )
    return op


def whole_number(
    node: dict,
    key: str,
    path: str,
    *,
    minimum: int = 0,
    maximum: int = 36500,
    required: bool = True,
) -> int | None:
    value = node.get(key)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise RuleError(
            f"'{key}' must be a whole number from {minimum} to {maximum}.", f"{path}.{key}"
        )
    return value


def rule_number(value: object, path: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise RuleError("Expected a number.", f"{path}.value")
    try:
        number = Decimal(str(value))
    except ArithmeticError:
        raise RuleError(f"{value!r} is not a number.", f"{path}.value") from None
    if not number.is_finite():
        raise RuleError("Expected a finite number.", f"{path}.value")
    return number


def _datetime(value: object, path: str) -> dt.datetime:
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            parsed = None
        if parsed is not None:
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    raise RuleError(
        f"{value!r} is not an ISO date or date-time (for example 2026-01-31).", f"{path}.value"
    )


def _strings(value: object, path: str) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise RuleError("Expected a non-empty list of strings.", f"{path}.value")
    return value


def _string(value: object, path: str) -> str:
    if not isinstance(value, str) or not value:
        raise RuleError("Expected a non-empty string.", f"{path}.value")
    return value


def zero_aware(matching: Callable[[str, object], Q], op: str, value, zero) -> Q:
    """For aggregates over related rows: contacts with no rows have the value `zero`.
    When zero satisfies the comparison, match everyone except those whose rows fail it."""
    zero_passes = {
        "gt": zero > value,
        "gte": zero >= value,
        "lt": zero < value,
        "lte": zero <= value,
        "eq": zero == value,
        "neq": zero != value,
    }[op]
    if not zero_passes:
        return matching(op, value)
    negated = {"gt": "lte", "gte": "lt", "lt": "gte", "lte": "gt", "eq": "neq", "neq": "eq"}[op]
    return ~matching(negated, value)


# --- conditions ---------------------------------------------------------------------------
def _field(node: dict, ctx: RuleContext) -> Q:
    path, now = ctx.path, ctx.now
    allowed_keys(node, path, {"field", "op", "value"})
    name = node.get("field")
    if name not in CONTACT_FIELDS:
        raise RuleError(
            f"Unknown contact field {name!r}; use one of "
            f"{', '.join(sorted(CONTACT_FIELDS))}, or an attribute condition.",
            f"{path}.field",
        )
    kind = CONTACT_FIELDS[name]
    op = rule_op(node, path, OPS[kind])
    value = node.get("value")
    ctx.depends_on("stage" if name == "stage" else "profile")
    if kind == "stage":
        values = _strings(value, path) if op in ("in", "not_in") else [_string(value, path)]
        for v in values:
            if v not in Stage.values:
                raise RuleError(
                    f"Unknown stage {v!r}; stages are {', '.join(Stage.values)}.", f"{path}.value"
                )
        q = Q(stage__in=values)
        return ~q if op in ("neq", "not_in") else q
    if kind == "text":
        return _text(name, op, value, path)
    if op == "exists":
        return _exists_flag(Q(**{f"{name}__isnull": False}), value, path)
    if op in ("within_last_days", "not_within_last_days"):
        since = now - dt.timedelta(days=ctx.days(node))
        q = Q(**{f"{name}__gte": since})
        return ~q if op.startswith("not") else q
    if op == "birthday_in_next_days":  # in each contact's zone (crm.birthdays)
        return celebrated_within("birthday", now, ctx.days(node))
    if op == "birthday_this_month":
        ctx.drifts()
        return celebrated_this_month("birthday", now)
    if op == "birthday_in_month":
        ctx.drifts()
        month = whole_number(node, "value", path, minimum=1, maximum=12)
        return Q(birthday__month=month)
    moment = _datetime(value, path)
    return Q(**{f"{name}__{op}": moment.date() if kind == "birthday" else moment})


FIELD_LABELS: dict[str, Text] = {
    "stage": _("Lifecycle stage"),
    "email": _("Email"),
    "external_id": _("External id"),
    "first_name": _("First name"),
    "last_name": _("Last name"),
    "phone": _("Phone"),
    "locale": _("Language (locale)"),
    "timezone": _("Time zone"),
    "source": _("Source"),
    "channel": _("Channel"),
    "created_at": _("Created"),
    "updated_at": _("Last updated"),
    "stage_changed_at": _("Stage changed"),
    "birthday": _("Birthday"),
}
_TEXTS = tuple(n for n, k in CONTACT_FIELDS.items() if k == "text")
_DATES = tuple(n for n, k in CONTACT_FIELDS.items() if k == "datetime")
_COMPARE = ("gt", "gte", "lt", "lte")
_MONTHS = (
    _("January"),
    _("February"),
    _("March"),
    _("April"),
    _("May"),
    _("June"),
    _("July"),
    _("August"),
    _("September"),
    _("October"),
    _("November"),
    _("December"),
)
segment_condition_describe(
    "field",
    _("Contact field"),
    Field(
        "field",
        "choice",
        _("Field"),
        required=True,
        choices=tuple((n, FIELD_LABELS[n]) for n in CONTACT_FIELDS),
        default="stage",
    ),
    op_field("in", "not_in", "eq", "neq", when={"field": ("stage",)}),
    op_field(
        "eq", "neq", "contains", "starts_with", "in", "not_in", "exists", when={"field": _TEXTS}
    ),
    op_field(
        "within_last_days",
        "not_within_last_days",
        *_COMPARE,
        "exists",
        dates=True,
        when={"field": _DATES},
    ),
    op_field(
        "birthday_in_next_days",
        "birthday_this_month",
        "birthday_in_month",
        *_COMPARE,
        "exists",
        dates=True,
        when={"field": ("birthday",)},
    ),
    Field(
        "value",
        "refs",
        _("Stages"),
        required=True,
        source="stages",
        when={"field": ("stage",), "op": ("in", "not_in")},
    ),
    Field(
        "value",
        "ref",
        _("Stage"),
        required=True,
        source="stages",
        when={"field": ("stage",), "op": ("eq", "neq")},
    ),
    Field(
        "value",
        "text",
        _("Text"),
        required=True,
        help=_("Compared without regard to upper or lower case."),
        when={"field": _TEXTS, "op": ("eq", "neq", "contains", "starts_with")},
    ),
    Field(
        "value",
        "texts",
        _("Texts"),
        required=True,
        help=_("Each exactly as stored (upper and lower case count)."),
        when={"field": _TEXTS, "op": ("in", "not_in")},
    ),
    Field(
        "value",
        "date",
        _("Date"),
        required=True,
        when={"field": (*_DATES, "birthday"), "op": _COMPARE},
    ),
    days_field(
        when={
            "field": (*_DATES, "birthday"),
            "op": ("within_last_days", "not_within_last_days", "birthday_in_next_days"),
        }
    ),
    Field(
        "value",
        "choice",
        _("Month"),
        required=True,
        choices=tuple(enumerate(_MONTHS, start=1)),
        default=1,
        when={"field": ("birthday",), "op": ("birthday_in_month",)},
    ),
    example={"field": "stage", "op": "in", "value": ["repeat", "loyal"]},
    help=_("A column of the contact: stage, name, language, dates, birthday."),
    group=_("Profile"),
)


def _text(name: str, op: str, value, path: str) -> Q:
    if op == "exists":
        return _exists_flag(Q(**{f"{name}__isnull": False}) & ~Q(**{name: ""}), value, path)
    if op in ("in", "not_in"):
        q = Q(**{f"{name}__in": _strings(value, path)})
        return ~q if op == "not_in" else q
    text = value if isinstance(value, str) else None
    if text is None:
        raise RuleError("Expected a string.", f"{path}.value")
    lookup = {
        "eq": "iexact",
        "neq": "iexact",
        "contains": "icontains",
        "starts_with": "istartswith",
    }[op]
    q = Q(**{f"{name}__{lookup}": text})
    return ~q if op == "neq" else q


def _exists_flag(q: Q, value, path: str) -> Q:
    if value not in (True, False, None):
        raise RuleError("exists takes true or false.", f"{path}.value")
    return q if value in (True, None) else ~q


def _attribute(node: dict, ctx: RuleContext) -> Q:
    path, now = ctx.path, ctx.now
    allowed_keys(node, path, {"key", "op", "value"})
    key = node.get("key")
    if not isinstance(key, str) or not key or "__" in key:
        raise RuleError("'key' names an attribute (a string without '__').", f"{path}.key")
    op = rule_op(node, path, OPS["attribute"])
    value = node.get("value")
    ctx.depends_on("profile")
    has_key = Q(**{"attributes__has_key": key})
    if op == "exists":
        return _exists_flag(has_key, value, path)
    if op in ("eq", "neq", "in", "not_in"):
        values = _scalars(value, path, many=op in ("in", "not_in"))
        q = has_key & Q(**{f"attributes__{key}__in": values})
        return ~q if op in ("neq", "not_in") else q
    if op == "contains":
        return has_key & Q(**{f"attributes__{key}__icontains": _string(value, path)})
    if op == "within_last_days":
        since = (now - dt.timedelta(days=ctx.days(node))).date().isoformat()
        raw = _key_text(key)
        return has_key & Q(GreaterThanOrEqual(raw, Value(since)))
    number = rule_number(value, path)
    numeric = _key_number(key)
    return has_key & Q(COMPARE[op](numeric, Value(float(number))))


segment_condition_describe(
    "attribute",
    _("Custom attribute"),
    Field(
        "key",
        "text",
        _("Attribute"),
        required=True,
        help=_("The attribute's name, as imported or sent by the API (for example plan)."),
    ),
    op_field(
        "eq",
        "neq",
        "in",
        "not_in",
        "contains",
        "exists",
        "gt",
        "gte",
        "lt",
        "lte",
        "within_last_days",
    ),
    Field("value", "text", _("Text"), required=True, when={"op": ("eq", "neq", "contains")}),
    Field(
        "value",
        "texts",
        _("Values"),
        required=True,
        help=_("Each exactly as stored (upper and lower case count)."),
        when={"op": ("in", "not_in")},
    ),
    Field("value", "number", _("Number"), required=True, when={"op": ("gt", "gte", "lt", "lte")}),
    days_field(
        when={"op": ("within_last_days",)},
        label=_("Days (the attribute holds a date)"),
    ),
    example={"key": "plan", "op": "eq", "value": "gold"},
    help=_("A custom attribute of the contact (attributes imported or sent by the API)."),
    group=_("Profile"),
)


def _scalars(value, path: str, *, many: bool) -> list:
    values = value if many else [value]
    if many and (not isinstance(value, list) or not value):
        raise RuleError("Expected a non-empty list.", f"{path}.value")
    for v in values:
        if not isinstance(v, str | int | float | bool):
            raise RuleError("Attribute values are strings, numbers or booleans.", f"{path}.value")
    return values


def _key_text(key: str):

    return KeyTextTransform(key, "attributes")


def _key_number(key: str):
    """The attribute as a number when it looks like one (a JSON number or a numeric
    string, as CSV imports store them), else NULL — never a cast error."""
    raw = _key_text(key)
    numeric = Q(**{f"attributes__{key}__regex": r"^-?[0-9]+(\.[0-9]+)?$"})
    return Case(
        When(numeric, then=Cast(raw, FloatField())), default=None, output_field=FloatField()
    )


def _tag(node: dict, ctx: RuleContext) -> Q:
    path = ctx.path
    allowed_keys(node, path, {"op", "value"})
    op = rule_op(node, path, {"has", "has_not", "has_any"})
    ctx.depends_on("tag")
    names = (
        _strings(node.get("value"), path) if op == "has_any" else [_string(node.get("value"), path)]
    )
    q = ctx.contacts_with(
        Contact.tags.through.objects.filter(tag__name__in=names).values("contact_id")
    )
    return ~q if op == "has_not" else q


segment_condition_describe(
    "tag",
    _("Tag"),
    op_field("has", "has_not", "has_any"),
    Field("value", "ref", _("Tag"), required=True, source="tags", when={"op": ("has", "has_not")}),
    Field("value", "refs", _("Tags"), required=True, source="tags", when={"op": ("has_any",)}),
    example={"op": "has", "value": "vip"},
    group=_("Profile"),
)


def _consent(node: dict, ctx: RuleContext) -> Q:
    path = ctx.path
    allowed_keys(node, path, {"op", "value", "channel", "topic"})
    op = rule_op(node, path, {"is", "is_not"})
    value = node.get("value")
    if value not in CONSENT_VALUES:
        raise RuleError(f"Consent is one of {', '.join(sorted(CONSENT_VALUES))}.", f"{path}.value")
    channel = node.get("channel", "email")
    if channel not in ("email", "sms"):
        raise RuleError("channel is email or sms.", f"{path}.channel")
    topic = node.get("topic", ConsentRecord.ALL_TOPICS)
    if not isinstance(topic, str) or not topic:
        raise RuleError("topic is a string.", f"{path}.topic")
    ctx.depends_on("consent")
    status = Coalesce(consent_status_subquery(channel, topic), Value("none"))
    q = Q(Exact(status, value))
    return ~q if op == "is_not" else q


segment_condition_describe(
    "consent",
    _("Consent"),
    Field(
        "channel",
        "choice",
        _("Channel"),
        choices=(("email", _("Email")), ("sms", _("SMS"))),
        default="email",
    ),
    Field(
        "topic",
        "ref",
        _("Topic"),
        source="topics",
        help=_("Leave empty for consent to everything on the channel."),
    ),
    op_field("is", "is_not"),
    Field(
        "value",
        "choice",
        _("Consent"),
        required=True,
        choices=(
            ("granted", _("granted")),
            ("withdrawn", _("withdrawn")),
            ("none", _("never asked")),
        ),
        default="granted",
    ),
    example={"op": "is", "value": "granted"},
    group=_("Profile"),
)


def _meddic(node: dict, ctx: RuleContext) -> Q:
    """{"type": "meddic", "op": "gte", "value": 50}: the 0–100 score (the default measure);
    {"type": "meddic", "measure": "confirmed", "op": "gte", "value": 4}: how many of the six
    criteria are confirmed. A contact with no scorecard has 0 of both."""
    path = ctx.path
    allowed_keys(node, path, {"measure", "op", "value"})
    measure = node.get("measure", "score")
    if measure not in MEDDIC_MEASURES:
        raise RuleError("measure is score (0–100) or confirmed (0–6).", f"{path}.measure")
    op = rule_op(node, path, OPS["number"])
    number = whole_number(node, "value", path, minimum=0, maximum=MEDDIC_MEASURES[measure])
    ctx.depends_on("meddic")
    cards = LeadScorecard.objects.all()
    if measure == "confirmed":
        cards = cards.annotate(confirmed=meddic_confirmed())

    def matching(o, v):
        lookup = {"eq": "exact"}.get(o, o)
        qs = (
            cards.exclude(**{measure: v})
            if o == "neq"
            else cards.filter(**{f"{measure}__{lookup}": v})
        )
        return ctx.contacts_with(qs.values("contact_id"))

    return zero_aware(matching, op, number, 0)


MEDDIC_MEASURES = {"score": 100, "confirmed": 6}


def meddic_confirmed():
    """How many of a scorecard's six criteria are confirmed, as an SQL expression."""
    statuses = [f"{name}_status" for name, _label in MEDDIC_CRITERIA]
    total = None
    for status in statuses:
        one = Case(When(**{status: MeddicStatus.CONFIRMED}, then=Value(1)), default=Value(0))
        total = one if total is None else total + one
    return total


segment_condition_describe(
    "meddic",
    _("MEDDIC lead qualification"),
    Field(
        "measure",
        "choice",
        _("Measure"),
        choices=(
            ("score", _("score (0–100)")),
            ("confirmed", _("criteria confirmed (of 6)")),
        ),
        default="score",
    ),
    op_field(*NUMBER_OP_NAMES),
    Field(
        "value",
        "integer",
        _("Score"),
        required=True,
        minimum=0,
        maximum=100,
        default=50,
        when={"measure": ("score",)},
    ),
    Field(
        "value",
        "integer",
        _("Criteria confirmed"),
        required=True,
        minimum=0,
        maximum=6,
        default=4,
        help=_("Metrics, economic buyer, decision criteria, decision process, pain, champion."),
        when={"measure": ("confirmed",)},
    ),
    example={"measure": "confirmed", "op": "gte", "value": 4},
    group=_("Sales"),
)


def _event(node: dict, ctx: RuleContext) -> Q:
    path, now = ctx.path, ctx.now
    allowed_keys(node, path, {"name", "op", "count", "days", "where"})
    name = node.get("name")
    if not isinstance(name, str) or not name:
        raise RuleError("'name' is the event name, for example \"Product Viewed\".", f"{path}.name")
    op = rule_op(node, path, {"at_least", "at_most", "none"})
    count = (
        1
        if op == "none"
        else whole_number(node, "count", path, minimum=0 if op == "at_most" else 1, maximum=100000)
    )
    days = node.get("days")
    events = Event.objects.filter(name=name, contact__isnull=False)
    if days is not None:
        since = now - dt.timedelta(days=whole_number(node, "days", path, minimum=1, maximum=3650))
        ctx.drifts()
        events = events.filter(occurred_at__gte=since)
    where = node.get("where") or {}
    if not isinstance(where, dict):
        raise RuleError("'where' is an object of property: value pairs.", f"{path}.where")
    for key, value in where.items():
        if not isinstance(key, str) or "__" in key or not key:
            raise RuleError("Property names are strings without '__'.", f"{path}.where")
        if not isinstance(value, str | int | float | bool):
            raise RuleError(
                "Property values are strings, numbers or booleans.", f"{path}.where.{key}"
            )
        events = events.filter(**{f"properties__{key}": value})
    ctx.depends_on(f"event:{name}")
    if op == "none":
        return ~ctx.contacts_with(events.values("contact_id"))
    if op == "at_least":
        if count == 1:
            return ctx.contacts_with(events.values("contact_id"))
        return ctx.having(events, Count("pk"), "gte", count)
    return ~ctx.having(events, Count("pk"), "gt", count)  # at most N (including none)


segment_condition_describe(
    "event",
    _("Event"),
    Field(
        "name",
        "text",
        _("Event"),
        required=True,
        source="events",
        help=_("The event's name, for example Product Viewed."),
    ),
    op_field("at_least", "at_most", "none"),
    Field(
        "count",
        "integer",
        _("Times"),
        required=True,
        minimum=0,
        maximum=100000,
        default=1,
        when={"op": ("at_least", "at_most")},
    ),
    days_field("days", required=False, label=_("In the last … days (empty: ever)")),
    Field(
        "where",
        "properties",
        _("Where the event's properties are"),
        help=_("Only events whose properties have these values (for example category: shoes)."),
    ),
    example={"name": "Product Viewed", "op": "at_least", "count": 1, "days": 30},
    help=_("Events the contact did (viewed a product, opened an email, answered a survey)."),
    group=_("Behaviour"),
)


def _order(node: dict, ctx: RuleContext) -> Q:
    path, now = ctx.path, ctx.now
    allowed_keys(node, path, {"measure", "op", "value", "days"})
    measure = node.get("measure")
    if measure not in ORDER_MEASURES:
        raise RuleError(
            f"Unknown order measure {measure!r}; use one of {', '.join(sorted(ORDER_MEASURES))}.",
            f"{path}.measure",
        )
    ctx.depends_on("order")
    kind = ORDER_MEASURES[measure]
    orders = Order.objects.live()
    if kind == "datetime":
        op = rule_op(node, path, OPS["datetime"] - {"exists"})
        aggregate = Min("ordered_at") if measure == "first_order_at" else Max("ordered_at")
        if op in ("within_last_days", "not_within_last_days"):
            since = now - dt.timedelta(days=ctx.days(node))
            q = ctx.having(orders, aggregate, "gte", since)
            return ~q if op.startswith("not") else q
        return ctx.having(orders, aggregate, op, _datetime(node.get("value"), path))
    op = rule_op(node, path, OPS["number"])
    value = rule_number(node.get("value"), path)
    net = order_net()
    base = orders.filter(currency=settings.KEEPERS_BASE_CURRENCY)
    if measure == "count":
        # COUNT(*), not COUNT(id): the covering index crm_order_contact_time has no id
        source, aggregate = orders, Count("*")
    elif measure == "total_spend":
        source, aggregate = base, Sum(net)
    elif measure == "average_order_value":
        source, aggregate = base, Avg(net)
    elif measure == "spend_percentile":
        return _spend_percentile(node, ctx, op, value)
    else:
        days = ctx.days(node, key="days")
        source, aggregate = base.filter(ordered_at__gte=now - dt.timedelta(days=days)), Sum(net)
    if measure == "average_order_value":
        return (
            ctx.having(source, aggregate, op, value)
            if op != "neq"
            else ~ctx.having(source, aggregate, "eq", value)
        )
    if measure == "count":
        # "has an order" / "has none" as a semi-join: no GROUP BY over every order
        has_orders = ctx.contacts_with(orders.values("contact_id"))
        if (op, value) in (("gte", 1), ("gt", 0), ("neq", 0)):
            return has_orders
        if (op, value) in (("eq", 0), ("lt", 1), ("lte", 0)):
            return ~has_orders
    return zero_aware(lambda o, v: ctx.having(source, aggregate, o, v), op, value, Decimal(0))


ORDER_MEASURE_LABELS: dict[str, Text] = {
    "count": _("number of orders"),
    "total_spend": _("total spend"),
    "average_order_value": _("average order value"),
    "spend_last_days": _("spend in the last … days"),
    "spend_percentile": _("spend percentile (0–100, 95: the top 5%)"),
    "first_order_at": _("first order"),
    "last_order_at": _("last order"),
}
_ORDER_NUMBERS = tuple(m for m, k in ORDER_MEASURES.items() if k == "number")
_ORDER_DATES = tuple(m for m, k in ORDER_MEASURES.items() if k == "datetime")
_MONEY = ("total_spend", "average_order_value", "spend_last_days")
segment_condition_describe(
    "order",
    _("Orders"),
    Field(
        "measure",
        "choice",
        _("Measure"),
        required=True,
        choices=tuple(ORDER_MEASURE_LABELS.items()),
        default="count",
    ),
    op_field(*NUMBER_OP_NAMES, when={"measure": _ORDER_NUMBERS}),
    op_field(
        "within_last_days",
        "not_within_last_days",
        *_COMPARE,
        dates=True,
        when={"measure": _ORDER_DATES},
    ),
    Field(
        "value",
        "integer",
        _("Orders"),
        required=True,
        minimum=0,
        default=1,
        when={"measure": ("count",)},
    ),
    Field(
        "value",
        "money",
        _("Amount"),
        required=True,
        minimum=0,
        default=100,
        help=_("In the shop's currency; refunds are taken off."),
        when={"measure": _MONEY},
    ),
    Field(
        "value",
        "number",
        _("Percentile"),
        required=True,
        minimum=0,
        maximum=100,
        default=90,
        when={"measure": ("spend_percentile",)},
    ),
    days_field("days", when={"measure": ("spend_last_days",)}),
    days_field(
        "days",
        required=False,
        label=_("Over the last … days (empty: 365)"),
        when={"measure": ("spend_percentile",)},
    ),
    Field(
        "value",
        "date",
        _("Date"),
        required=True,
        when={"measure": _ORDER_DATES, "op": _COMPARE},
    ),
    days_field(when={"measure": _ORDER_DATES, "op": ("within_last_days", "not_within_last_days")}),
    example={"measure": "count", "op": "gte", "value": 2},
    help=_("Orders that count (not refunded), their number, value and dates."),
    group=_("Purchases"),
)


def _spend_percentile(node: dict, ctx: RuleContext, op: str, value: Decimal) -> Q:
    path, now = ctx.path, ctx.now
    """Customers by their rank in net spend in the base currency over `days` (default
    365): `gte 95` is the top 5%. PERCENT_RANK over the customers who spent, as 0–100."""
    if not 0 <= value <= 100:
        raise RuleError("A percentile is from 0 to 100.", f"{path}.value")
    days = whole_number(node, "days", path, minimum=1, maximum=3650, required=False) or 365
    ctx.drifts()
    table = connection.ops.quote_name(Order._meta.db_table)
    compare = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<=", "eq": "=", "neq": "<>"}[op]
    sql = (
        "SELECT contact_id FROM (SELECT contact_id, 100.0 * PERCENT_RANK() OVER "
        "(ORDER BY SUM(total - refunded_total)) AS pct "
        f"FROM {table} WHERE status <> %s AND currency = %s AND ordered_at >= %s "
        f"GROUP BY contact_id) ranked WHERE pct {compare} %s"
    )
    params = [
        OrderStatus.REFUNDED,
        settings.KEEPERS_BASE_CURRENCY,
        db_datetime(now - dt.timedelta(days=days)),
        float(value),
    ]
    return Q(pk__in=RawSQL(sql, params))


def _bought(node: dict, ctx: RuleContext) -> Q:
    path, now = ctx.path, ctx.now
    allowed_keys(node, path, {"product_id", "category", "days", "op"})
    op = node.get("op", "yes")
    if op not in ("yes", "no"):
        raise RuleError("op is 'yes' (bought) or 'no' (never bought).", f"{path}.op")
    lines = OrderLine.objects.exclude(order__status=OrderStatus.REFUNDED)
    if node.get("product_id"):
        lines = lines.filter(product_ref=_string(node["product_id"], f"{path}.product_id"))
    elif node.get("category"):
        lines = lines.filter(category__iexact=_string(node["category"], f"{path}.category"))
    else:
        raise RuleError("Give a product_id or a category.", f"{path}.product_id")
    if node.get("days") is not None:
        since = now - dt.timedelta(days=whole_number(node, "days", path, minimum=1, maximum=3650))
        ctx.drifts()
        lines = lines.filter(order__ordered_at__gte=since)
    ctx.depends_on("order")
    q = ctx.contacts_with(lines.values("order__contact_id"))
    return ~q if op == "no" else q


segment_condition_describe(
    "bought",
    _("Bought a product"),
    op_field("yes", "no"),
    Field(
        "product_id",
        "ref",
        _("Product"),
        source="products",
        help=_("A product, or leave it empty and give a category."),
    ),
    Field("category", "text", _("or a category"), source="categories"),
    days_field("days", required=False, label=_("In the last … days (empty: ever)")),
    example={"op": "yes", "category": "shoes"},
    group=_("Purchases"),
)


def _rfm(node: dict, ctx: RuleContext) -> Q:
    path = ctx.path
    allowed_keys(node, path, {"score", "op", "value"})
    ctx.depends_on("rfm")
    score = node.get("score")
    if score == "group":
        op = rule_op(node, path, {"in", "not_in"})
        groups = _strings(node.get("value"), path)
        for g in groups:
            if g not in RfmGroup.values:
                raise RuleError(
                    f"Unknown RFM group {g!r}; groups are {', '.join(RfmGroup.values)}.",
                    f"{path}.value",
                )
        q = ctx.contacts_with(ContactRfm.objects.filter(rfm_group__in=groups).values("contact_id"))
        return ~q if op == "not_in" else q
    if score not in RFM_SCORES:
        raise RuleError("score is recency, frequency, monetary or group.", f"{path}.score")
    op = rule_op(node, path, OPS["number"])
    value = whole_number(node, "value", path, minimum=1, maximum=5)
    lookup = "exact" if op in ("eq", "neq") else op
    q = ctx.contacts_with(
        ContactRfm.objects.filter(**{f"{score}__{lookup}": value}).values("contact_id")
    )
    return ~q if op == "neq" else q


segment_condition_describe(
    "rfm",
    _("RFM"),
    Field(
        "score",
        "choice",
        _("Score"),
        required=True,
        choices=(
            ("group", _("RFM segment")),
            ("recency", _("recency (1–5)")),
            ("frequency", _("frequency (1–5)")),
            ("monetary", _("monetary (1–5)")),
        ),
        default="group",
    ),
    op_field("in", "not_in", when={"score": ("group",)}),
    op_field(*NUMBER_OP_NAMES, when={"score": tuple(sorted(RFM_SCORES))}),
    Field(
        "value",
        "choices",
        _("RFM segments"),
        required=True,
        choices=tuple(RfmGroup.choices),
        when={"score": ("group",)},
    ),
    Field(
        "value",
        "integer",
        _("Score"),
        required=True,
        minimum=1,
        maximum=5,
        default=4,
        when={"score": tuple(sorted(RFM_SCORES))},
    ),
    example={"score": "group", "op": "in", "value": ["champions"]},
    help=_("Recency, frequency and monetary scores from the nightly RFM pass."),
    group=_("Purchases"),
)


def _clv(node: dict, ctx: RuleContext) -> Q:
    """{"type": "clv", "measure": "probability_alive", "op": "lt", "value": 0.3}: the
    contact's predictions from the latest CLV fit (probability alive 0–1, expected purchases
    in the next 30/90/365 days, expected spend per purchase, predicted CLV over the
    configured horizon and historic CLV, both in the base currency).

    A contact with no prediction has no value, and no comparison matches it, `neq`
    included: contacts without a base-currency order up to the fit's as_of, whose first
    order came since, or before any successful fit. Wrap the condition in `not` to reach
    them. Predictions change only when a fit is stored, which refreshes these segments."""
    path = ctx.path
    allowed_keys(node, path, {"measure", "op", "value"})
    measure = node.get("measure")
    column = CLV_MEASURES.get(measure) if isinstance(measure, str) else None
    if column is None:
        raise RuleError(
            f"Unknown CLV measure {measure!r}; use one of {', '.join(sorted(CLV_MEASURES))}.",
            f"{path}.measure",
        )
    op = rule_op(node, path, OPS["number"])
    value = rule_number(node.get("value"), path)
    if measure == "probability_alive" and not 0 <= value <= 1:
        raise RuleError("A probability is from 0 to 1 (0.3 for 30%).", f"{path}.value")
    ctx.depends_on("clv")
    typed = value if column == "historic_clv" else float(value)
    rows = ContactClv.objects.all()
    if op == "neq":
        rows = rows.exclude(**{column: typed})
    else:
        rows = rows.filter(**{f"{column}__{'exact' if op == 'eq' else op}": typed})
    return ctx.contacts_with(rows.values("contact_id"))


segment_condition_describe(
    "clv",
    _("Predicted value (CLV)"),
    Field(
        "measure",
        "choice",
        _("Measure"),
        required=True,
        choices=(
            ("probability_alive", _("probability still a customer (0–1)")),
            ("expected_purchases_30d", _("expected purchases, next 30 days")),
            ("expected_purchases_90d", _("expected purchases, next 90 days")),
            ("expected_purchases_365d", _("expected purchases, next 365 days")),
            ("expected_spend", _("expected spend per purchase")),
            ("predicted_clv", _("predicted CLV")),
            ("historic_clv", _("historic CLV")),
        ),
        default="probability_alive",
    ),
    op_field(*NUMBER_OP_NAMES),
    Field(
        "value",
        "number",
        _("Probability"),
        required=True,
        minimum=0,
        maximum=1,
        default=0.3,
        help=_("0.3 is 30%."),
        when={"measure": ("probability_alive",)},
    ),
    Field(
        "value",
        "number",
        _("Value"),
        required=True,
        minimum=0,
        when={"measure": tuple(m for m in CLV_MEASURES if m != "probability_alive")},
    ),
    example={"measure": "probability_alive", "op": "lt", "value": 0.3},
    help=_("From the latest CLV fit; contacts without a prediction never match."),
    group=_("Purchases"),
)


def _segment(node: dict, ctx: RuleContext) -> Q:
    path = ctx.path
    allowed_keys(node, path, {"op", "segment"})
    op = rule_op(node, path, {"member", "not_member"})
    segment_id = whole_number(node, "segment", path, minimum=1, maximum=2**62)
    if ctx.segment_exists is not None and not ctx.segment_exists(segment_id):
        raise RuleError(f"There is no segment #{segment_id}.", f"{path}.segment")
    ctx.depends_on(f"segment:{segment_id}")
    ctx.compiled.segments.add(segment_id)
    q = ctx.contacts_with(
        SegmentMembership.objects.filter(segment_id=segment_id, exited_at__isnull=True).values(
            "contact_id"
        )
    )
    return ~q if op == "not_member" else q


segment_condition_describe(
    "segment",
    _("Another segment"),
    op_field("member", "not_member"),
    Field("segment", "ref", _("Segment"), required=True, source="segments"),
    example={"op": "member", "segment": 1},
    group=_("Segments"),
)


# Condition builders by type: (node, ctx) -> Q. Other apps add theirs with
# condition_register (loyalty: tier, balances, expiring credit, referral count).
ConditionBuilder = Callable[[dict, RuleContext], Q]
CONDITIONS: dict[str, ConditionBuilder] = {
    "field": _field,
    "attribute": _attribute,
    "tag": _tag,
    "consent": _consent,
    "meddic": _meddic,
    "event": _event,
    "order": _order,
    "bought": _bought,
    "rfm": _rfm,
    "clv": _clv,
    "segment": _segment,
}


def condition_register(kind: str, builder: ConditionBuilder) -> None:
    """Add a segment condition type (the loyalty app adds tiers and balances this way)."""
    CONDITIONS[kind] = builder
