"""What campaigns publishes for the apps above it (loyalty): the one door to extend the
engine. Everything here is kept stable on purpose; anything else inside campaigns may be
renamed or rewritten without notice, so an extending app imports from this module only
(tests/test_architecture.py refuses another app's private names).

- Step types: subclass `StepType` (`clean` validates a config and names the path of a bad
  value with `DefinitionError`; `run` takes a batch of enrolments standing on the step
  and returns one `Outcome` each), then `step_type_register(MyStep())`.
- Condition kinds for the `condition` step: `@condition_kind("name", clean)` on a
  function `(config, enrollments, batch) -> {enrollment id: bool}`.
- Trigger types: `trigger_type("name")(clean)` for the validation, and a scan that
  enrols: `scan_register(scan, every="pass" | "hour")`, where a scan takes `now` and
  returns the new enrolments' ids. Scans read their rows with `cursor_window` (a locked
  id range over a table) or on their own schedule, pick campaigns with `campaigns_live`
  and enrol with `enrollments_from_rows` (entry segment, re-entry policy and holdout
  applied in SQL; a repeated key enrols nobody twice).
- Email variables: `email_context_register(provider)` adds names to what a journey's
  `send_email` templates see; `provider(enrollments, batch) -> {enrollment id: {name:
  value}}` is called once per batch (loyalty's `expiring`).
- Public pages: `subscribe_hook_register(hook)` runs `hook(request, contact)` after
  someone signs up on the subscribe form.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest

from campaigns.public import SUBSCRIBE_HOOKS
from campaigns.services.definitions import trigger_type
from campaigns.services.triggers import (
    CursorWindow,
    Scan,
    campaigns_live,
    cursor_window,
    enrollments_from_rows,
    scan_register,
)
from campaigns.steps import (
    Batch,
    DefinitionError,
    Outcome,
    StepType,
    condition_kind,
    config_number,
    email_context_register,
    step_type_register,
)
from crm.models import Contact

__all__ = [
    "Batch",
    "CursorWindow",
    "DefinitionError",
    "Outcome",
    "Scan",
    "StepType",
    "campaigns_live",
    "condition_kind",
    "config_number",
    "cursor_window",
    "email_context_register",
    "enrollments_from_rows",
    "scan_register",
    "step_type_register",
    "subscribe_hook_register",
    "trigger_type",
]


def subscribe_hook_register(hook: Callable[[HttpRequest, Contact], None]) -> None:
    """Call `hook(request, contact)` after each signup on the subscribe form."""
    if hook not in SUBSCRIBE_HOOKS:
        SUBSCRIBE_HOOKS.append(hook)
