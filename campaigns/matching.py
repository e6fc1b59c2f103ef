"""Which later events belong to an enrolment: the one rule goals, `wait_for_event` steps and
`event_since_enrollment` conditions share.

An event counts for an enrolment when it is the contact's, came after the event that
started the journey (by time, then by id for events of the same instant: the trigger
itself and what was recorded before it in the same instant do not count), has the name
asked for, occurred at or after the moment in question (the enrolment's trigger_at for goals and
"since enrolment"; the step's start for a wait), has every `where` property, and — with
`match` — is about the same thing as the event that started the journey:

- `match: "cart"` (or one of the cart keys, as older definitions say "cart_id"): the
  enrolment's cart_key (its triggering event's cart_id, else checkout_id, else order_id)
  equals any of the event's cart_id, checkout_id or order_id. Segment's e-commerce spec
  names a cart differently from event to event (Checkout Started carries checkout_id or
  order_id, Order Completed both, Cart Viewed cart_id), so any of them may tie two events;
- `match: "<property>"`: that property of the triggering event equals the event's.

An enrolment with nothing to match on (no cart key, no such property) matches nothing."""

from __future__ import annotations

import datetime as dt

CART_KEYS = ("cart_id", "checkout_id", "order_id")
CART = "cart"


def cart_key_of(properties: dict) -> str:
    """The cart an event is about: its cart_id, else checkout_id, else order_id ('' if
    none), as triggers record it on the enrolment."""
    for key in CART_KEYS:
        value = properties.get(key)
        if value not in (None, ""):
            return str(value)[:255]
    return ""


def is_cart_match(match: str | None) -> bool:
    return match == CART or match in CART_KEYS


def wanted_value(match: str | None, *, cart_key: str, trigger_properties: dict | None):
    """What a later event must carry to match this enrolment (None: nothing can)."""
    if not match:
        return None
    if is_cart_match(match):
        return cart_key or (cart_key_of(trigger_properties) if trigger_properties else "") or None
    value = (trigger_properties or {}).get(match)
    return None if value is None else value


def event_matches(
    event,
    *,
    name: str,
    since: dt.datetime,
    where: dict | None = None,
    match: str | None = None,
    wanted: object = None,
    trigger_id: int | None = None,
) -> bool:
    """Does `event` count? `wanted` is wanted_value(...) for the enrolment when `match`
    is given; `trigger_id` is the enrolment's triggering event: at `since`, only events
    recorded after it count."""
    if event.name != name or event.occurred_at < since:
        return False
    if trigger_id is not None and event.occurred_at == since and event.pk <= trigger_id:
        return False
    properties = event.properties or {}
    for key, value in (where or {}).items():
        if properties.get(key) != value:
            return False
    if not match:
        return True
    if wanted is None:
        return False
    if is_cart_match(match):
        return any(
            properties.get(key) not in (None, "") and str(properties.get(key)) == str(wanted)
            for key in CART_KEYS
        )
    return properties.get(match) == wanted
