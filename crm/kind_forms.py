"""A form widget that edits one kind's config (or a list of them) as a form generated from
the kinds' descriptions (crm/kinds.py): choose the kind, then fill in its fields. The
browser side is static/crm/kind_form.js, reusable by any editor that reads a kinds
document; the JSON stays available behind an "advanced" toggle.

What the browser posts is one input per field, named by its path under the form field
(`trigger.type`, `trigger.where.0.key`, `goals.1.event`), plus `<name>.mode` ("form" or
"json"). `KindWidget.value_from_datadict` assembles the JSON from those inputs, typed by
the descriptions (a segment's id back to a number, a checkbox to true), so the form
field's value is the same JSON an API client would send, and the model's validation
judges it; `KindWidget.error` (a DefinitionError's path and message) is drawn on the
input that path names."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable

from django import forms

from crm.kinds import KINDS, SOURCES, Field, Kind, kinds_document

MISSING = object()


def field_shown(field: Field, config: dict) -> bool:
    """Whether `field` applies to `config`: its `when` holds (the editor hides it else)."""
    return not field.when or all(config.get(k) in values for k, values in field.when.items())


def _matched(text: str, options: Iterable[tuple[object, object]]) -> object:
    """The option whose value reads as `text` (a segment id back to its number); the
    text itself when none does, for the kind's clean to refuse with its reason."""
    for value, _label in options:
        if str(value) == text:
            return value
    return text


def _number(text: str, whole: bool) -> object:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return text
    return int(number) if whole and number.is_integer() else number


class _Reader:
    """Reads the posted inputs under a prefix into configs, typed by the descriptions."""

    def __init__(self, data) -> None:
        self.data = data
        self.options: dict[str, list] = {}

    def text(self, name: str) -> str:
        value = self.data.get(name, "")
        return value.strip() if isinstance(value, str) else ""

    def texts(self, name: str) -> list[str]:
        getlist: Callable | None = getattr(self.data, "getlist", None)
        values = getlist(name) if getlist else self.data.get(name, [])
        values = [values] if isinstance(values, str) else values
        return [v.strip() for v in values if isinstance(v, str) and v.strip()]

    def indices(self, prefix: str) -> list[int]:
        """The item numbers posted under `prefix` (`goals.0.…`, `goals.3.…`), in order."""
        found = set()
        for key in self.data:
            rest = key[len(prefix) + 1 :] if key.startswith(prefix + ".") else ""
            head = rest.split(".", 1)[0]
            if head.isdigit():
                found.add(int(head))
        return sorted(found)

    def source(self, name: str) -> list:
        if name not in self.options:
            self.options[name] = list(SOURCES[name]()) if name in SOURCES else []
        return self.options[name]

    def entry(self, prefix: str, kinds: dict[str, Kind], key: str) -> dict:
        """One config: its kind from `<prefix>.<key>` (the only kind when there is no key),
        then each field that applies to it."""
        if key:
            name = self.text(f"{prefix}.{key}")
            config: dict = {key: name}
            kind = kinds.get(name)
            if kind is None:
                return config
        elif kinds:
            config, kind = {}, next(iter(kinds.values()))
        else:
            return {}
        self.fields(kind.fields, prefix, config)
        return config

    def fields(self, fields: Iterable[Field], prefix: str, config: dict) -> dict:
        for field in fields:
            if not field_shown(field, config):
                continue
            path = f"{prefix}.{field.name}"
            if field.type == "duration":
                amount, unit = self.text(path), self.text(f"{path}.unit")
                if amount and unit in ("minutes", "hours", "days"):
                    config[f"{field.prefix}{unit}"] = _number(amount, whole=False)
                continue
            value = self.value(field, path)
            if value is not MISSING:
                config[field.name] = value
        return config

    def value(self, field: Field, path: str) -> object:
        kind = field.type
        if kind == "boolean":
            if self.text(path) in ("on", "true", "1"):
                return True
            return False if field.default is True else MISSING
        if kind in ("choices", "refs"):
            options = field.choices if kind == "choices" else self.source(field.source)
            values = [_matched(text, options) for text in self.texts(path)]
            return values or MISSING
        if kind == "properties":
            rows = [
                (self.text(f"{path}.{n}.key"), self.text(f"{path}.{n}.value"))
                for n in self.indices(path)
            ]
            return {k: v for k, v in rows if k} or MISSING
        if kind == "condition":
            if not self.text(f"{path}.kind"):
                return MISSING
            return self.entry(path, KINDS["condition"], "kind")
        if kind == "list":
            items = [self.fields(field.fields, f"{path}.{n}", {}) for n in self.indices(path)]
            return items or MISSING
        text = self.text(path)
        if not text:
            return MISSING
        if kind == "texts":  # one a line (crm/static/crm/kind_form.js)
            return [line.strip() for line in text.splitlines() if line.strip()] or MISSING
        if kind in ("integer", "number", "money"):
            return _number(text, whole=kind == "integer")
        if kind == "choice":
            return _matched(text, field.choices)
        if kind == "ref":
            return _matched(text, self.source(field.source))
        if kind == "rule":
            try:
                return json.loads(text)
            except ValueError:
                return text
        return text  # text, date, datetime, time, branch


class KindWidget(forms.Widget):
    """Edits a form field holding one config of `registry` ({key: kind, …}) or, with
    `many`, a list of them; `only` limits the kinds offered (a campaign's exits are three
    of the trigger kinds). With `key=""` the registry has one kind and configs carry no
    kind key (a goal is always an event)."""

    template_name = "crm/widgets/kind_form.html"

    class Media:
        js = ["crm/kind_form.js"]
        css = {"all": ["crm/kind_form.css"]}

    def __init__(
        self,
        registry: str,
        *,
        key: str = "type",
        many: bool = False,
        only: Iterable[str] = (),
        add_label: str = "",
        attrs: dict | None = None,
    ) -> None:
        super().__init__(attrs)
        self.registry, self.key, self.many = registry, key, many
        self.only = tuple(only)
        self.add_label = add_label
        self.error: tuple[str, str] | None = None  # (path, message) from the last clean

    def kinds(self) -> dict[str, Kind]:
        kinds = KINDS[self.registry]
        return {n: kinds[n] for n in self.only if n in kinds} if self.only else dict(kinds)

    def get_context(self, name, value, attrs):
        context = super().get_context(name, value, attrs)
        kinds = self.kinds()
        nested = any(f.type == "condition" for kind in kinds.values() for f in kind.fields)
        registries = {self.registry, *(["condition"] if nested else [])}
        # the registry's own list stays too: a nested condition field draws its kinds
        document = kinds_document(registries=sorted(registries))
        document["kinds"] = [k for k in document[self.registry] if k["name"] in kinds]
        context["widget"].update(
            document=document,
            document_id=f"{context['widget']['attrs'].get('id') or name}-kinds",
            key=self.key,
            many=self.many,
            add_label=str(self.add_label),
            error_path=self.error[0] if self.error else "",
            error_message=self.error[1] if self.error else "",
        )
        return context

    def format_value(self, value):
        return "" if value is None else str(value)

    def value_from_datadict(self, data, files, name):
        if data.get(f"{name}.mode") != "form":
            return data.get(name)  # the JSON, typed by hand (or no script ran)
        reader = _Reader(data)
        kinds = self.kinds()
        if self.many:
            value: object = [
                reader.entry(f"{name}.{n}", kinds, self.key) for n in reader.indices(name)
            ]
        else:
            value = reader.entry(name, kinds, self.key)
        return json.dumps(value)

    def value_omitted_from_data(self, data, files, name):
        return name not in data and f"{name}.mode" not in data
