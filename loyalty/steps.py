"""The campaign `grant` step: award points, store credit with an expiry, or a unique
coupon, once per enrollment visit; the result (code, amount, expiry) is stored in the
enrollment's results so later `send_email` steps can show it ({{ results.coupon }},
{{ results.coupon_expires_at }}, {{ results.credit_amount }}, {{ results.points }},
{{ results.credit_redeemable_from }}…).

Its window takes the names and rules of the ledger and the API (`grant_window`): a
duration (`expires_in_days`) or a fixed expiry (`expires_at`, an ISO date-time), and
`redeemable_from` where the redeem window opens (it closes at the expiry) — shop cash
earned now and spendable in December; on a coupon, `redeemable_from` is its start. The
earn window (`earn_from`, `earn_until`) says when reaching the step earns anything:
outside it, the contact goes on with nothing granted ("earn in November, spend in
December")."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation

from django.utils.translation import gettext_lazy as _

from campaigns.extend import DefinitionError, Outcome, StepType, config_number, step_type_register
from crm import clock
from crm.errors import KeepersError
from crm.extend import Field, Kind
from crm.services.parsing import parse_datetime
from loyalty.models import POINTS, Coupon
from loyalty.services.coupons import coupon_create
from loyalty.services.credit import credit_grant
from loyalty.services.ledger import grant_window, ledger_grant

REWARDS = ("points", "credit", "coupon")


class Grant(StepType):
    type = "grant"
    config_keys = frozenset(
        {
            "reward",
            "points",
            "amount",
            "currency",
            "coupon_type",
            "value",
            "min_order",
            "prefix",
            "expires_in_days",
            "expires_at",
            "redeemable_from",
            "earn_from",
            "earn_until",
            "reason",
        }
    )
    describe = Kind(
        "grant",
        _("Give a reward"),
        help=_(
            "Award points, store credit or a unique coupon; later emails show it "
            "({{ results.coupon }}, {{ results.credit_amount }}, {{ results.points }})."
        ),
        group=_("Rewards"),
        fields=(
            Field(
                "reward",
                "choice",
                _("Reward"),
                required=True,
                default="coupon",
                choices=(
                    ("points", _("Points")),
                    ("credit", _("Store credit")),
                    ("coupon", _("Coupon")),
                ),
            ),
            Field(
                "points",
                "integer",
                _("Points"),
                minimum=1,
                default=100,
                when={"reward": ("points",)},
            ),
            Field(
                "amount", "number", _("Amount"), minimum=0, default=5, when={"reward": ("credit",)}
            ),
            Field(
                "coupon_type",
                "choice",
                _("Coupon"),
                default=Coupon.Kind.PERCENT,
                choices=(
                    (Coupon.Kind.PERCENT, _("Percent off")),
                    (Coupon.Kind.FIXED, _("Fixed amount off")),
                    (Coupon.Kind.FREE_SHIPPING, _("Free shipping")),
                ),
                when={"reward": ("coupon",)},
            ),
            Field(
                "value",
                "number",
                _("Value"),
                help=_("Percent, or the amount off."),
                minimum=0,
                default=10,
                when={
                    "reward": ("coupon",),
                    "coupon_type": (Coupon.Kind.PERCENT, Coupon.Kind.FIXED),
                },
            ),
            Field(
                "currency",
                "text",
                _("Currency"),
                help=_("A code such as EUR."),
                when={"reward": ("credit", "coupon")},
            ),
            Field(
                "min_order", "number", _("Minimum order"), minimum=0, when={"reward": ("coupon",)}
            ),
            Field("prefix", "text", _("Code prefix"), when={"reward": ("coupon",)}),
            Field(
                "expires_in_days",
                "integer",
                _("Expires after (days)"),
                help=_("Or a fixed date below; not both. Neither: it does not expire."),
                minimum=1,
                maximum=3650,
            ),
            Field(
                "expires_at",
                "datetime",
                _("Expires on (a fixed date)"),
                help=_(
                    "The same date for everyone, such as the end of a season (the shop's time zone)."
                ),
            ),
            Field(
                "redeemable_from",
                "datetime",
                _("Redeemable from"),
                help=_(
                    "Before this it can be seen but not spent (a coupon's start date; the shop's "
                    "time zone)."
                ),
            ),
            Field(
                "earn_from",
                "datetime",
                _("Earned from"),
                help=_(
                    "The earn window: contacts who reach this step before this date get "
                    "nothing and go on (the shop's time zone). Empty: from the start."
                ),
            ),
            Field(
                "earn_until",
                "datetime",
                _("Earned until"),
                help=_(
                    "Contacts who reach this step from this date on get nothing and go on. "
                    "Empty: no end."
                ),
            ),
            Field("reason", "text", _("Reason"), help=_("Shown in the contact's ledger.")),
        ),
        branches=(("next", _("Then")),),
    )

    def clean(self, config, path):
        reward = config.get("reward")
        if reward not in REWARDS:
            raise DefinitionError(f"reward is one of {', '.join(REWARDS)}.", f"{path}.reward")
        if "expires_in_days" in config:
            config_number(config, "expires_in_days", path, minimum=1, maximum=3650)
        try:
            _window(config, clock.now())
            earn_from, earn_until = _earn_window(config)
        except KeepersError as error:
            raise DefinitionError(error.message, f"{path}.{error.field}") from None
        if earn_from and earn_until and earn_until <= earn_from:
            raise DefinitionError("earn_until must be after earn_from.", f"{path}.earn_until")
        if reward == "points":
            points = config.get("points")
            if isinstance(points, bool) or not isinstance(points, int) or points < 1:
                raise DefinitionError("points is a whole number above zero.", f"{path}.points")
        elif reward == "credit":
            _decimal(config, "amount", path)
            currency = config.get("currency")
            if not (isinstance(currency, str) and len(currency) == 3 and currency.isupper()):
                raise DefinitionError("currency is a code such as EUR.", f"{path}.currency")
        else:
            kind = config.get("coupon_type")
            if kind not in Coupon.Kind.values:
                raise DefinitionError(
                    f"coupon_type is one of {', '.join(Coupon.Kind.values)}.",
                    f"{path}.coupon_type",
                )
            if kind != Coupon.Kind.FREE_SHIPPING:
                _decimal(config, "value", path)
            if kind == Coupon.Kind.FIXED and not config.get("currency"):
                raise DefinitionError("A fixed coupon needs a currency.", f"{path}.currency")
        return config

    def run(self, step, items, batch):
        outcomes = []
        earn_from, earn_until = _earn_window(step["config"])
        outside = (earn_from and batch.now < earn_from) or (earn_until and batch.now >= earn_until)
        for item in items:
            if item.holdout:
                outcomes.append(
                    Outcome(decision="held out: nothing granted", next_step=step.get("next"))
                )
                continue
            if outside:
                outcomes.append(
                    Outcome(
                        decision="not granted: outside the earn window",
                        next_step=step.get("next"),
                    )
                )
                continue
            visit = item.state.get("visits", {}).get(step["id"], 0) + 1
            key = f"enrollment:{item.pk}:{step['id']}:{visit}"
            try:
                given = _give(step["config"], batch.contacts[item.contact_id], key, batch.now)
            except KeepersError as error:
                outcomes.append(Outcome(error=f"The grant failed: {error.message}"))
                continue
            results = {**item.state.get("results", {}), **given}
            outcomes.append(
                Outcome(
                    decision="granted " + ", ".join(f"{k}={v}" for k, v in given.items()),
                    next_step=step.get("next"),
                    state={"results": results},
                )
            )
        return outcomes


def _decimal(config: dict, key: str, path: str) -> Decimal:
    try:
        value = Decimal(str(config.get(key)))
    except (InvalidOperation, ValueError):
        raise DefinitionError(f"{key} is a number.", f"{path}.{key}") from None
    if not value.is_finite() or value <= 0:
        raise DefinitionError(f"{key} must be more than zero.", f"{path}.{key}")
    return value


def _window(config: dict, now: dt.datetime) -> tuple[dt.datetime | None, dt.datetime | None]:
    """(expires_at, redeemable_from) of a grant made at `now`; a KeepersError names the
    config key."""
    fixed = {
        # a date typed in the journey builder has no offset: it is the shop's
        name: parse_datetime(config[name], name, zone=clock.shop_zone())
        if config.get(name)
        else None
        for name in ("expires_at", "redeemable_from")
    }
    return grant_window(
        expires_at=fixed["expires_at"],
        expires_in_days=config.get("expires_in_days") or None,
        redeemable_from=fixed["redeemable_from"],
        now=now,
    )


def _earn_window(config: dict) -> tuple[dt.datetime | None, dt.datetime | None]:
    """(earn_from, earn_until): when reaching the step earns the reward."""
    return tuple(  # type: ignore[return-value]
        parse_datetime(config[name], name, zone=clock.shop_zone()) if config.get(name) else None
        for name in ("earn_from", "earn_until")
    )


def _give(config: dict, contact, key: str, now: dt.datetime) -> dict:
    """Grant once per key (the engine's retry or a duplicate task finds it done)."""

    expires, redeemable_from = _window(config, now)
    stamp = expires.isoformat() if expires else ""
    opens = {"redeemable_from": redeemable_from} if redeemable_from else {}
    reason = config.get("reason") or "Campaign reward"
    if config["reward"] == "points":
        ledger_grant(
            contact=contact,
            unit=POINTS,
            amount=config["points"],
            reason=reason,
            key=key,
            expires_at=expires,
            redeemable_from=redeemable_from,
            source_type="campaign",
            source_id=key,
            now=now,
        )
        return {
            "points": config["points"],
            "points_expires_at": stamp,
            **{f"points_{k}": v.isoformat() for k, v in opens.items()},
        }
    if config["reward"] == "credit":
        amount = Decimal(str(config["amount"]))
        credit_grant(
            contact=contact,
            amount=amount,
            currency=config["currency"],
            reason=reason,
            key=key,
            expires_at=expires,
            redeemable_from=redeemable_from,
            source_type="campaign",
            source_id=key,
            now=now,
        )
        return {
            "credit_amount": f"{amount:.2f}",
            "credit_currency": config["currency"],
            "credit_expires_at": stamp,
            **{f"credit_{k}": v.isoformat() for k, v in opens.items()},
        }
    coupon = Coupon.objects.filter(source_type="campaign", source_id=key).first()
    if coupon is None:
        coupon = coupon_create(
            kind=config["coupon_type"],
            value=config.get("value", 0),
            currency=config.get("currency", ""),
            min_order=config.get("min_order", 0),
            contact=contact,
            starts_at=redeemable_from,
            expires_at=expires,
            prefix=config.get("prefix", ""),
            source_type="campaign",
            source_id=key,
            now=now,
        )
    return {
        "coupon": coupon.code,
        "coupon_expires_at": stamp,
        **{f"coupon_{k}": v.isoformat() for k, v in opens.items()},
    }


def register() -> None:
    step_type_register(Grant())
