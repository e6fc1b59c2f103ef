"""What crm publishes for the apps above it (campaigns, loyalty) to extend it with: kept
stable on purpose, so a rename inside crm cannot break them silently. An extending app
imports these from here; crm's models, selectors and services are its public reads and
writes, and anything with a leading underscore is private (tests/test_architecture.py
refuses another app's private names).

- Segment conditions: a builder `(node, ctx: RuleContext) -> Q`, registered with
  `condition_register("kind", builder)`. Validate with `allowed_keys`, `rule_op`,
  `rule_number`, `whole_number` (errors name the node's path), read related rows through
  `ctx.contacts_with(queryset)` and `ctx.having(queryset, aggregate, op, value)` (they
  honour the incremental pass's scope), say what the rule reads with
  `ctx.depends_on(kind)` and that it drifts with time with `ctx.drifts()`; `zero_aware`
  handles "no rows means zero".
- Reactions: `bus.subscribe(bus.OrderPlaced, handler)` (after commit; see crm/bus.py).
- Metrics figures crm cannot compute itself: `metrics_source_register("referrals", counter)`.
- The demo: `demo_installer_register(installer)`; `manage.py demo` runs it after crm's shop.
- Requests: `client_ip(request)`, the client's address behind the trusted proxies
  (KEEPERS_TRUSTED_PROXIES), for anything that records or limits by IP;
  `limit_take(scope=, key=, rate=)` counts a request against a rate limit and raises
  `RateLimited` (429) past it (crm/limits.py).
- Privacy (export and erasure of one contact): `privacy_register(name, exporter=…,
  eraser=…, identifiers=…)`; an exporter `(contact) -> dict` (its part of the document,
  `privacy_rows(queryset, *fields)` helps), an eraser `(contact, erasure: Erasure)` that
  removes or replaces the person in its tables (`erasure.text`, `erasure.json`,
  `erasure.matching(queryset, *fields)`); `address_hash(email)` is what an erased address
  keeps (the suppression list).
- What a kind takes, for the admin's editors (crm/kinds.py): `kind_describe(registry,
  Kind(name, label, fields=(Field(...), ...), branches=...))` next to the kind's `clean`
  (registries "step", "condition", "trigger", "goal", "segment_condition"), and
  `kind_source_register(name, options)` for the options of a reference field.
- API schema: an API view declares the errors only it knows of (a 409 from an object's
  state, a 404 for a contact named in the body) with `extend_schema(responses={200: …,
  **error_responses(409)})`, each with the one error body; the rest (401, 403, 404, 400,
  413, 415, 422, 429) every operation gets from its shape (crm/api/schema.py).
- Staff roles: `role_grant("marketer", "campaigns.change_campaign", "campaigns.view_*")`
  gives an app's permissions to a shipped role (crm/services/roles.py; docs/operations.md).
- Admin: a custom admin view declares its permissions with
  `crm.admin_access.admin_permission("app.perm", post=[...])` (403 without them; one
  check for every app), and a custom write records itself with `admin_log(request, obj,
  message)` / `admin_log_many`; buttons on a contact's page through
  `crm.admin.CONTACT_PAGE_TOOLS`, dashboard panels through
  `crm.admin_dashboard.register_dashboard_panel` (admin modules, imported from the app's
  own admin.py, not from here).
"""

from __future__ import annotations

from crm import bus
from crm.api.schema import error_responses
from crm.client_ip import client_ip
from crm.kinds import Field, Kind, kind_describe, kind_source_register
from crm.limits import RateLimited, limit_take
from crm.rules import (
    OPS,
    RuleContext,
    RuleError,
    allowed_keys,
    compile_rules,
    condition_register,
    rule_number,
    rule_op,
    whole_number,
    zero_aware,
)
from crm.services.demo import demo_installer_register
from crm.services.metrics import metrics_source_register
from crm.services.privacy import Erasure, address_hash, privacy_register
from crm.services.privacy import rows as privacy_rows
from crm.services.roles import role_grant

__all__ = [
    "OPS",
    "Erasure",
    "Field",
    "Kind",
    "RateLimited",
    "RuleContext",
    "RuleError",
    "address_hash",
    "allowed_keys",
    "bus",
    "client_ip",
    "compile_rules",
    "condition_register",
    "demo_installer_register",
    "error_responses",
    "kind_describe",
    "kind_source_register",
    "limit_take",
    "metrics_source_register",
    "privacy_register",
    "privacy_rows",
    "role_grant",
    "rule_number",
    "rule_op",
    "whole_number",
    "zero_aware",
]
