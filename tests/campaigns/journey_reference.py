"""The executable specification of a journey: a plain interpreter of what the engine should
do with a campaign and an event stream, which tests/campaigns/test_journey_model.py
compares with the real engine on generated cases. Read it as the rules:

Time. Each event has the time it occurred and the time Keepers received it. A journey is
run as events are processed: it starts when its trigger is received; a `wait` of H hours
runs from when the wait began; `wait_until` waits for the next 10:00 in the contact's own
zone (the shop's, UTC, without one). What a step can know is what was received by then.

Entry. A "Checkout Started" enrols its contact (re-entry `once`: only the first one
received; `always`: each). Duplicates (the same message id) are one event.

After the trigger. An event counts for a journey when it occurred after the trigger: at a
later time, or at the same time but recorded after it.

Goals. The goal ("Order Completed"; with `cart`, the order of the same checkout) ends the
journey as soon as it is received, and before the first step when it was received first:
a step due at or after that moment does not run. Every goal event after the trigger is a
conversion of that enrolment, holdout or not, whether it ended the journey or came after.

Steps.
- send: an email, unless the enrolment is in the holdout or the contact has no consent;
- wait H / wait_until 10:00: as above;
- bought?: the journey ends (completed) if an order of the same checkout after the trigger
  was received by then;
- wait_for_add H: the wait begins when the journey gets there (for a journey's first
  steps: at its trigger) and lasts H hours from then; a "Product Added" that occurred since
  it began moves the journey on when it is received (at once if it was received already),
  otherwise the journey ends when the H hours are up;
- ab: a random half (the engine's draw, taken as given) moves on, the other half ends.

A journey that runs out of steps is completed; one still waiting at the end is active.

Cases where an event is received within MARGIN of a step's moment (or a 10:00 within MARGIN
of a wait's start) depend on which of two near-simultaneous things the engine sees first;
the interpreter reports them as ambiguous and the test draws another case."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

MARGIN = dt.timedelta(minutes=2)


class Ambiguous(Exception):
    """A case the rules above do not decide (a near-tie); not a failure."""


@dataclass(frozen=True)
class Ev:
    name: str  # "Checkout Started" | "Product Added" | "Order Completed"
    contact: str  # the contact's email
    occurred: dt.datetime
    received: dt.datetime
    order: int  # the order events were recorded in (ties of `occurred`)
    checkout: str = ""
    order_id: str = ""
    message_id: str = ""


@dataclass(frozen=True)
class Step:
    kind: str  # send | wait | wait_until | bought | wait_for_add | ab
    hours: int = 0
    template: str = ""
    id: str = ""


@dataclass
class Outcome:
    emails: dict[str, list[str]] = field(default_factory=dict)  # contact → subjects, sorted
    statuses: dict[str, str] = field(default_factory=dict)  # trigger message id → status
    conversions: set[tuple[str, str]] = field(default_factory=set)  # (trigger id, order id)


def after(event: Ev, trigger: Ev) -> bool:
    return (event.occurred, event.order) > (trigger.occurred, trigger.order)


def run(
    *,
    steps: list[Step],
    events: list[Ev],
    reentry: str,
    goal: str,  # "" | "any" | "cart"
    consent: dict[str, bool],
    zones: dict[str, str],
    holdout: dict[str, bool],  # trigger message id → the engine's draw
    ab_path: dict[tuple[str, str], str],  # (trigger message id, step id) → "A" | "B"
    horizon: dt.datetime,
) -> Outcome:
    unique: dict[str, Ev] = {}
    for event in sorted(events, key=lambda e: (e.received, e.order)):
        unique.setdefault(event.message_id, event)  # the first copy received is stored
    stream = sorted(unique.values(), key=lambda e: (e.received, e.order))
    outcome = Outcome(emails={c: [] for c in consent})
    enrolled: set[str] = set()
    for trigger in stream:
        if trigger.name != "Checkout Started" or trigger.received > horizon:
            continue
        if reentry == "once" and trigger.contact in enrolled:
            continue
        enrolled.add(trigger.contact)
        mine = [e for e in stream if e.contact == trigger.contact and e is not trigger]
        status = _journey(
            trigger, mine, steps, goal, consent, zones, holdout, ab_path, horizon, outcome
        )
        outcome.statuses[trigger.message_id] = status
        if goal:
            for event in mine:
                if _is_goal(event, trigger, goal) and event.received <= horizon:
                    outcome.conversions.add((trigger.message_id, event.order_id))
    for subjects in outcome.emails.values():
        subjects.sort()
    return outcome


def _is_goal(event: Ev, trigger: Ev, goal: str) -> bool:
    if event.name != "Order Completed" or not after(event, trigger):
        return False
    return goal == "any" or event.checkout == trigger.checkout


def _journey(trigger, mine, steps, goal, consent, zones, holdout, ab_path, horizon, outcome):
    start = trigger.received
    goal_at = min(
        (max(e.received, start) for e in mine if goal and _is_goal(e, trigger, goal)),
        default=None,
    )
    moments = [e.received for e in mine]
    now, waited = start, False
    for step in steps:
        if now > horizon:
            return "active"
        _unambiguous(now, moments, start)
        if goal_at is not None and goal_at <= now:
            return "exited_goal"
        if step.kind == "send":
            if not holdout[trigger.message_id] and consent[trigger.contact]:
                outcome.emails[trigger.contact].append(step.template)
        elif step.kind == "wait":
            now, waited = now + dt.timedelta(hours=step.hours), True
        elif step.kind == "wait_until":
            now, waited = _next_ten(now, zones[trigger.contact]), True
        elif step.kind == "bought":
            if any(
                e.name == "Order Completed"
                and e.checkout == trigger.checkout
                and after(e, trigger)
                and e.received <= now
                for e in mine
            ):
                return "completed"
        elif step.kind == "wait_for_add":
            status, now = _wait_for_add(step, trigger, mine, now, waited, goal_at, horizon)
            waited = True
            if status:
                return status
        elif step.kind == "ab" and ab_path[(trigger.message_id, step.id)] == "B":
            return "completed"
    if goal_at is not None and goal_at <= now:
        return "exited_goal"
    return "active" if now > horizon else "completed"


def _wait_for_add(step, trigger, mine, now, waited, goal_at, horizon):
    """(None, when it moves on) or (the journey's status, now) when the wait ends it."""
    since = trigger.occurred if not waited else now
    ends = since + dt.timedelta(hours=step.hours)
    adds = sorted(
        e.received
        for e in mine
        if e.name == "Product Added" and e.occurred >= since and (waited or after(e, trigger))
    )
    if any(r <= now for r in adds):
        return None, now  # already received: on at once
    if now >= ends:
        return "completed", now  # the wait was over before it began
    arriving = [r for r in adds if now < r <= ends + MARGIN]
    if arriving and arriving[0] > ends - MARGIN:
        raise Ambiguous("a Product Added received right at the timeout")
    if not arriving:
        if goal_at is not None and goal_at <= ends:
            return "exited_goal", now
        return ("completed" if ends <= horizon else "active"), now
    return None, arriving[0]


def _next_ten(now: dt.datetime, zone: str) -> dt.datetime:
    tz = ZoneInfo(zone or "UTC")
    local = now.astimezone(tz)
    for days in range(3):
        candidate = dt.datetime.combine(
            local.date() + dt.timedelta(days=days), dt.time(10), tzinfo=tz
        ).astimezone(dt.UTC)
        if candidate >= now:
            if candidate - now < MARGIN:
                raise Ambiguous("a 10:00 right at the wait's start")
            return candidate
    raise AssertionError("no 10:00 within three days")


def _unambiguous(now: dt.datetime, moments: list[dt.datetime], start: dt.datetime) -> None:
    if now == start:
        return  # the journey's first steps run when its trigger is processed
    for moment in moments:
        if abs(moment - now) < MARGIN:
            raise Ambiguous("an event received right at a step's moment")
