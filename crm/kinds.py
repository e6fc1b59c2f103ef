"""What each kind staff compose takes, said once next to its `clean`: the fields of a step
type, a condition kind, a trigger type, a goal and a segment condition — type, choices,
bounds, help and labels (translatable: English and Japanese). The admin's editors are
generated from these descriptions (`kinds_document`), so a kind registered on the server
appears in them with no JavaScript change; tests/crm/test_kinds.py fails for a registered
kind that has none.

A description says what the editor shows, never what is valid: `clean` stays the judge,
and its error path (`steps[2].config.hours`) is shown on the field the path names.

Registries (the first argument of `kind_describe`):
- "step": campaign step types (`campaigns.steps.REGISTRY`), with their branches;
- "condition": the condition step's kinds (`campaigns.steps.CONDITION_KINDS`);
- "trigger": campaign trigger types (`campaigns.services.definitions.TRIGGERS`);
- "goal": campaign goals;
- "segment_condition": segment rule conditions (`crm.rules.CONDITIONS`).

Field types (`Field.type`):
- text, integer, number (with minimum/maximum), boolean, date, datetime, time;
- texts (a list of texts, entered one at a time as tags; with a `source`, its options are
  suggestions and any other text is accepted: an attribute "is one of" gold, silver);
- choice (one of `choices`), choices (several of them);
- duration (minutes / hours / days keys, `prefix` before each: "timeout_" gives
  timeout_hours…);
- money (an amount; its currency is the shop's unless a sibling "currency" field says);
- properties (a flat map of event property → value, typed as text);
- rule (a nested segment rule, edited with the rule builder);
- condition (a nested condition-step config: {"kind": …, …}, edited with the "condition"
  registry's kinds);
- list (a list of objects, each with the kind's `fields`: a split's paths); a field of an
  item whose type is "branch" is where that item leads (a step id), drawn as an edge;
- a reference to something staff made or that was seen: `source` names where the options
  come from ("templates", "segments", "topics", "surveys", "tiers", "tags", "events",
  "event_properties", "stages", "products", …); the type is "ref" (one) or "refs" (several).
  Sources are registered with `kind_source_register(name, options)`; the document carries
  their current options. A "text" field may name a source too: its options are
  suggestions (event names, categories), any text is accepted.

How an editor reads `when` and defaults (crm/static/crm/rule_builder.js does): a field is
shown while every key of its `when` holds one of the listed values (a key not set counts as
that field's `default`); several fields may share a name with different `when`s (an
operator per kind of value, a value per operator) and the one shown edits the value; a
field hidden by its `when` is dropped from the config. A segment condition's
`extra["example"]` is the node a new condition of the kind starts as (it must compile).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from django.utils import translation
from django.utils.functional import Promise

Text = str | Promise  # a label: a plain string or gettext_lazy(...)

REGISTRIES = ("step", "condition", "trigger", "goal", "segment_condition")
FIELD_TYPES = frozenset(
    {
        "text",
        "texts",
        "integer",
        "number",
        "boolean",
        "date",
        "datetime",
        "time",
        "choice",
        "choices",
        "duration",
        "money",
        "properties",
        "rule",
        "condition",
        "list",
        "branch",
        "ref",
        "refs",
    }
)


class KindError(ValueError):
    """A description that cannot be right (an unknown registry or field type)."""


@dataclass(frozen=True)
class Field:
    """One field of a kind's config. `when` shows it only while another field holds one of
    the given values (`{"op": ("gt", "lt")}`); `prefix` is for durations."""

    name: str
    type: str
    label: Text
    help: Text = ""
    required: bool = False
    choices: tuple[tuple[object, Text], ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    default: object = None
    source: str = ""
    when: dict[str, tuple] | None = None
    prefix: str = ""
    fields: tuple[Field, ...] = ()  # a list's item fields

    def __post_init__(self) -> None:
        if self.type not in FIELD_TYPES:
            raise KindError(f"Field {self.name!r}: unknown type {self.type!r}.")
        if self.type in ("ref", "refs") and not self.source:
            raise KindError(f"Field {self.name!r}: a reference names its source.")
        if self.type in ("choice", "choices") and not self.choices:
            raise KindError(f"Field {self.name!r}: a choice field lists its choices.")
        if (self.type == "list") != bool(self.fields):
            raise KindError(f"Field {self.name!r}: a list, and only a list, has item fields.")

    def describe(self) -> dict:
        out: dict = {"name": self.name, "type": self.type, "label": str(self.label)}
        if self.help:
            out["help"] = str(self.help)
        if self.required:
            out["required"] = True
        if self.choices:
            out["choices"] = [[value, str(label)] for value, label in self.choices]
        for key in ("minimum", "maximum", "default", "when"):
            value = getattr(self, key)
            if value is not None:
                out[key] = {k: list(v) for k, v in value.items()} if key == "when" else value
        if self.source:
            out["source"] = self.source
        if self.prefix:
            out["prefix"] = self.prefix
        if self.fields:
            out["fields"] = [f.describe() for f in self.fields]
        return out


@dataclass(frozen=True)
class Kind:
    """A kind as an editor shows it: its name in definitions, label, help, fields and (for a
    step type) its branches as (key, label); `group` places it in the palette."""

    name: str
    label: Text
    help: Text = ""
    fields: tuple[Field, ...] = ()
    branches: tuple[tuple[str, Text], ...] = ()
    group: Text = ""
    extra: dict = field(default_factory=dict)

    def describe(self) -> dict:
        out: dict = {
            "name": self.name,
            "label": str(self.label),
            "fields": [f.describe() for f in self.fields],
        }
        if self.help:
            out["help"] = str(self.help)
        if self.branches:
            out["branches"] = [[key, str(label)] for key, label in self.branches]
        if self.group:
            out["group"] = str(self.group)
        if self.extra:
            out["extra"] = self.extra
        return out


KINDS: dict[str, dict[str, Kind]] = {registry: {} for registry in REGISTRIES}
SOURCES: dict[str, Callable[[], list[tuple[object, str]]]] = {}


def kind_describe(registry: str, kind: Kind) -> Kind:
    """Register what `kind` takes in `registry` (see the module's docstring)."""
    if registry not in KINDS:
        raise KindError(f"Unknown registry {registry!r}; one of {', '.join(REGISTRIES)}.")
    KINDS[registry][kind.name] = kind
    return kind


def kind_described(registry: str, name: str) -> Kind:
    """The description `name` has in `registry` (to describe the same node in another)."""
    return KINDS[registry][name]


def kind_source_register(name: str, options: Callable[[], list[tuple[object, str]]]) -> None:
    """Where a reference field's options come from: `options()` returns (value, label)
    pairs, read each time the document is built (keep it to one query, and bounded)."""
    SOURCES[name] = options


def kinds_missing(registry: str, names: Iterable[str]) -> list[str]:
    """The registered names that have no description (the test that keeps editors whole)."""
    return sorted(set(names) - set(KINDS[registry]))


def _all_fields(fields: Iterable[Field]) -> Iterable[Field]:
    """The fields and, depth first, a list's item fields (a split path's template…)."""
    for f in fields:
        yield f
        yield from _all_fields(f.fields)


def kinds_document(
    language: str | None = None, *, registries: Iterable[str] = REGISTRIES, sources: bool = True
) -> dict:
    """Every description, in `language` (the active one by default), with the current
    options of each source the fields use: what an editor embeds (json_script) or fetches."""
    with translation.override(language or translation.get_language()):
        chosen = list(registries)
        document: dict = {
            registry: [kind.describe() for kind in KINDS[registry].values()] for registry in chosen
        }
        if sources:
            used = {
                f.source
                for registry in chosen
                for kind in KINDS[registry].values()
                for f in _all_fields(kind.fields)
                if f.source
            }
            document["sources"] = {
                name: [[value, str(label)] for value, label in SOURCES[name]()]
                for name in sorted(used)
                if name in SOURCES
            }
        return document
