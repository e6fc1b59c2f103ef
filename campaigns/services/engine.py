"""The engine: advance due enrollments through their steps, in batches, exactly once.

`engine_tick` (every minute, from beat) lists due enrollments and fans them out in
batches. `enrollments_advance` takes a batch in one transaction: it locks the rows with
`SELECT … FOR UPDATE SKIP LOCKED` (a second worker given the same ids skips them; a dead
worker's transaction rolls back and releases them, so the next tick picks them up again),
then runs each group of enrollments standing on the same step through that step type at
once, as many immediate steps as they can go, records every execution as a StepRun under
the unique key (enrollment, step, visit), and writes everything back in bulk. Messages are
stored as queued in the same transaction and sent after it commits."""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q

from campaigns.models import (
    Campaign,
    CampaignVersion,
    Enrollment,
    Message,
    StepRun,
    WebhookDelivery,
)
from campaigns.steps import REGISTRY, Batch, Outcome
from campaigns.tasks import enrollments_advance_task, messages_send_task, webhook_deliver_task
from crm import clock

MAX_STEPS_PER_RUN = 25


def enrollments_due(*, now: dt.datetime, limit: int = 50_000) -> list[int]:
    return list(
        Enrollment.objects.filter(
            status=Enrollment.Status.ACTIVE,
            next_run_at__lte=now,
            campaign__status=Campaign.Status.ACTIVE,
        )
        .order_by("next_run_at")
        .values_list("pk", flat=True)[:limit]
    )


def engine_tick(*, now: dt.datetime | None = None, batch_size: int | None = None) -> int:
    """Fan the due enrollments out to workers in batches; also re-send queued messages
    whose sending task was lost. Returns how many enrollments were handed out."""
    now = now or clock.now()
    batch_size = batch_size or settings.KEEPERS_ENGINE_BATCH
    due = enrollments_due(now=now)
    for start in range(0, len(due), batch_size):
        enrollments_advance_task.delay(due[start : start + batch_size])
    # Queued messages whose sending task was lost (a worker died between its commit and
    # enqueueing the send) are handed out again; the claim keeps that exactly-once.
    stale = list(
        Message.objects.filter(
            status=Message.Status.QUEUED,
            created_at__lt=now - dt.timedelta(seconds=settings.KEEPERS_STALE_QUEUED_SECONDS),
        ).values_list("pk", flat=True)[:10_000]
    )
    for start in range(0, len(stale), batch_size):
        messages_send_task.delay(stale[start : start + batch_size])
    return len(due)


@transaction.atomic
def enrollments_advance(*, ids: list[int], now: dt.datetime | None = None) -> dict[str, int]:
    """Advance these enrollments (those still due and not locked by another worker).
    Returns counts: advanced, steps, messages."""
    now = now or clock.now()
    locked = list(
        Enrollment.objects.select_for_update(skip_locked=True, of=("self",))
        .filter(
            pk__in=ids,
            status=Enrollment.Status.ACTIVE,
            next_run_at__lte=now,
            campaign__status=Campaign.Status.ACTIVE,
        )
        .order_by("pk")
    )
    if not locked:
        return {"advanced": 0, "steps": 0, "messages": 0}
    versions = CampaignVersion.objects.in_bulk({e.version_id for e in locked})
    campaigns = Campaign.objects.in_bulk({e.campaign_id for e in locked})
    batch = Batch(now=now, enrollments=locked, campaigns=campaigns)
    runs: list[tuple[StepRun, Outcome]] = []
    active = locked
    for _round in range(MAX_STEPS_PER_RUN):
        groups: dict[tuple[int, str], list[Enrollment]] = defaultdict(list)
        for enrollment in active:
            groups[(enrollment.version_id, enrollment.current_step)].append(enrollment)
        active = []
        # lifecycle before promotional: under a cap, the higher priority takes the last slot
        ordered = sorted(groups.items(), key=lambda g: -campaigns[g[1][0].campaign_id].priority)
        for (version_id, step_id), items in ordered:
            step = versions[version_id].step(step_id)
            if step is None:
                for item in items:
                    _finish(item, Enrollment.Status.COMPLETED, "", now)
                continue
            outcomes = REGISTRY[step["type"]].run(step, items, batch)
            for item, outcome in zip(items, outcomes, strict=True):
                if _apply(item, step, outcome, now, runs):
                    active.append(item)
        if not active:
            break
    else:
        for item in active:  # a loop of immediate steps: stop, and look again next tick
            item.next_run_at = now + dt.timedelta(minutes=1)
    Message.objects.bulk_create(batch.pending_messages)
    WebhookDelivery.objects.bulk_create(batch.pending_webhooks)
    for run, outcome in runs:
        run.message_id = outcome.message.pk if outcome.message else None
    StepRun.objects.bulk_create([run for run, _ in runs])
    _enrollments_write(locked)
    message_ids = [m.pk for m in batch.pending_messages]
    webhook_ids = [w.pk for w in batch.pending_webhooks]
    if message_ids or webhook_ids:
        transaction.on_commit(lambda: _after_commit(message_ids, webhook_ids))
    return {"advanced": len(locked), "steps": len(runs), "messages": len(message_ids)}


def _after_commit(message_ids: list[int], webhook_ids: list[int]) -> None:
    if message_ids:
        messages_send_task.delay(message_ids)
    for pk in webhook_ids:
        webhook_deliver_task.delay(pk)


def _apply(
    item: Enrollment,
    step: dict,
    outcome: Outcome,
    now: dt.datetime,
    runs: list[tuple[StepRun, Outcome]],
) -> bool:
    """Write one outcome onto its enrollment. True when it goes straight on to another step."""
    state = dict(item.state)
    for key, value in outcome.state.items():
        if value is None:
            state.pop(key, None)
        else:
            state[key] = value
    if outcome.stay:
        item.state, item.next_run_at, item.waiting_for = (
            state,
            outcome.wait_until,
            outcome.waiting_for,
        )
        return False
    visits = dict(state.get("visits", {}))
    visits[step["id"]] = visits.get(step["id"], 0) + 1
    state["visits"] = visits
    item.state, item.waiting_for = state, ""
    runs.append(
        (
            StepRun(
                # ids, not instances: setting a related object costs more than the row
                enrollment_id=item.pk,
                step_id=step["id"],
                step_type=step["type"],
                visit=visits[step["id"]],
                decision=outcome.decision[:200],
                next_step=outcome.next_step or "",
                error=outcome.error,
                ran_at=now,
            ),
            outcome,
        )
    )
    if outcome.error:
        _finish(item, Enrollment.Status.FAILED, outcome.error[:300], now)
        return False
    if outcome.exit_reason:
        _finish(item, Enrollment.Status.COMPLETED, outcome.exit_reason, now)
        return False
    if outcome.wait_until and outcome.wait_until > now:
        # a wait at the end of a sequence still waits (goals can arrive meanwhile)
        item.current_step, item.next_run_at = outcome.next_step or "", outcome.wait_until
        return False
    if not outcome.next_step:
        _finish(item, Enrollment.Status.COMPLETED, "", now)
        return False
    item.current_step = outcome.next_step
    return True


def _finish(item: Enrollment, status: str, reason: str, now: dt.datetime) -> None:
    item.status, item.exit_reason, item.finished_at, item.next_run_at = status, reason, now, None
    item.waiting_for = ""


def enrollments_wake(*, contact_ids: set[int], event_name: str, now: dt.datetime) -> int:
    """An event a wait_for_event step waits for has arrived: run those enrollments now."""
    return Enrollment.objects.filter(
        Q(status=Enrollment.Status.ACTIVE), waiting_for=event_name, contact_id__in=contact_ids
    ).update(next_run_at=now)


ENROLLMENT_COLUMNS = (
    "status",
    "current_step",
    "next_run_at",
    "finished_at",
    "state",
    "exit_reason",
    "waiting_for",
)


def _enrollments_write(enrollments: list[Enrollment]) -> None:
    """Write the advanced enrolments back in one statement. On PostgreSQL: UPDATE … FROM
    unnest(arrays), which is several times cheaper than Django's bulk_update (a CASE per
    column per row); elsewhere bulk_update."""
    if not enrollments:
        return
    if connection.vendor != "postgresql":
        Enrollment.objects.bulk_update(enrollments, list(ENROLLMENT_COLUMNS), batch_size=500)
        return
    table = connection.ops.quote_name(Enrollment._meta.db_table)
    state_field = Enrollment._meta.get_field("state")
    columns = {
        "id": [e.pk for e in enrollments],
        "status": [e.status for e in enrollments],
        "current_step": [e.current_step for e in enrollments],
        "next_run_at": [e.next_run_at for e in enrollments],
        "finished_at": [e.finished_at for e in enrollments],
        "state": [json.dumps(e.state, cls=state_field.encoder) for e in enrollments],
        "exit_reason": [e.exit_reason for e in enrollments],
        "waiting_for": [e.waiting_for for e in enrollments],
    }
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} e SET status = v.status, current_step = v.current_step, "
            "next_run_at = v.next_run_at, finished_at = v.finished_at, state = v.state::jsonb, "
            "exit_reason = v.exit_reason, waiting_for = v.waiting_for "
            "FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::timestamptz[], %s::timestamptz[], "
            "%s::text[], %s::text[], %s::text[]) "
            "AS v(id, status, current_step, next_run_at, finished_at, state, exit_reason, waiting_for) "
            "WHERE e.id = v.id",
            list(columns.values()),
        )
