"""Predicted CLV, fitted and stored: BG/NBD and Gamma-Gamma (crm.clv) on the orders up to
an `as_of` date, one ClvModelFit row per fit, and every customer's predictions written
set-based to ContactClv. Run nightly by `crm.tasks.clv_fit` and on demand by the API.

What the fit reads: orders in the base currency (KEEPERS_BASE_CURRENCY), net of refunds,
fully refunded orders left out, ordered up to the end of `as_of` (UTC); time in weeks.

Which fit the predictions come from: the successful fit with the latest `as_of` (the most
recently fitted among equals). A fit back-dated behind it (a backtest, or the CDNOW check)
is stored with its parameters but leaves ContactClv alone, so segments and the at_risk
stage never jump back in time. A fit that fails is stored with status `failed` and its
error, the previous predictions stay, and no exception leaves `clv_fit`.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Avg, Count, Q

from crm import clock, clv
from crm.models import ClvModelFit, Contact, ContactClv, Order, Segment
from crm.services.segments import segment_refresh
from crm.tasks import lifecycle_recompute_all_task

log = logging.getLogger(__name__)

UNIT_DAYS = 7  # weeks, as in the papers and the published CDNOW figures
WRITE_CHUNK = 20_000  # ContactClv rows per INSERT … ON CONFLICT statement
PURCHASE_HORIZONS = {"purchases_30d": 30, "purchases_90d": 90, "purchases_365d": 365}
PREDICTION_FIELDS = (
    "x",
    "t_x",
    "T",
    "zbar",
    "probability_alive",
    "purchases_30d",
    "purchases_90d",
    "purchases_365d",
    "expected_spend",
    "predicted_clv",
    "historic_clv",
)


def clv_horizon_months() -> int:
    return settings.KEEPERS_CLV_HORIZON_MONTHS


def clv_monthly_discount() -> float:
    return settings.KEEPERS_CLV_MONTHLY_DISCOUNT


@dataclass(frozen=True)
class _Predictions:
    """Per customer (aligned with `contact_ids`), ready to write."""

    contact_ids: np.ndarray
    columns: dict[str, np.ndarray]


def clv_fit(
    *,
    as_of: date | None = None,
    horizon_months: int | None = None,
    monthly_discount: float | None = None,
) -> ClvModelFit:
    """Fit both models on the orders up to `as_of` (default: today, UTC) and store the fit;
    when it succeeds and is the latest by `as_of`, replace every customer's predictions
    (one upsert per WRITE_CHUNK customers, then one DELETE of the customers no longer in
    the base) and refresh the segments that read them.

    Never raises for data the models cannot fit or bad options: the returned fit then has
    status `failed` and says why in `error`. Safe to run twice or concurrently: the second
    run stores a second fit and rewrites the same predictions (writers of predictions
    take one lock, in PostgreSQL an advisory transaction lock)."""
    started = time.monotonic()
    if isinstance(as_of, datetime):
        as_of = as_of.astimezone(UTC).date()
    as_of = as_of or clock.now().astimezone(UTC).date()
    months = clv_horizon_months() if horizon_months is None else horizon_months
    discount = clv_monthly_discount() if monthly_discount is None else monthly_discount
    fit = ClvModelFit(
        as_of=as_of,
        fitted_at=clock.now(),  # when the orders are read: a later order is not in the fit
        unit_days=UNIT_DAYS,
        currency=settings.KEEPERS_BASE_CURRENCY,
        # 0 for a horizon out of range: the fit then fails and says why
        horizon_months=months if _valid_months(months) else 0,
        monthly_discount=float(discount) if _is_number(discount) else 0.0,
    )
    try:
        _check_options(months, discount)
        if as_of > clock.now().astimezone(UTC).date():
            raise clv.ClvError(f"as_of ({as_of}) is in the future.")
        predictions = _fit(fit)
    except Exception as error:  # a failed fit is a stored row, never a failed nightly task
        if not isinstance(error, clv.ClvError):
            log.exception("CLV fit as of %s failed", as_of)
        return _failed(fit, error, started)
    try:
        written = _store(fit, predictions, started)
    except Exception as error:
        log.exception("Storing the CLV fit as of %s failed", as_of)
        return _failed(fit, error, started)
    if written:
        try:
            _refresh_segments()
        except Exception:  # the fit and predictions are stored; the hourly refresh catches up
            log.exception("Refreshing the segments that read CLV predictions failed")
    return fit


def clv_latest(*, as_of: date | None = None) -> ClvModelFit | None:
    """The successful fit the predictions come from: the latest `as_of`, the most recently
    fitted among equals. With `as_of`, the most recent successful fit for that date."""
    fits = ClvModelFit.objects.filter(status=ClvModelFit.Status.OK)
    if as_of is not None:
        return fits.filter(as_of=as_of).order_by("-fitted_at", "-pk").first()
    return fits.order_by("-as_of", "-fitted_at", "-pk").first()


def clv_overview() -> dict | None:
    """The current predictions at a glance, for the dashboard: the fit they come from, the
    customers predicted, their average predicted CLV and the share likely active
    (P(alive) ≥ 0.5). None before the first successful fit. Two queries. Every stored fit
    rewrites all rows under one lock, so the rows share one fit: read it from a row."""
    row = ContactClv.objects.select_related("fit").order_by().first()
    if row is None:
        return None
    fit = row.fit
    figures = ContactClv.objects.aggregate(
        customers=Count("pk"),
        average=Avg("predicted_clv"),
        alive=Count("pk", filter=Q(probability_alive__gte=0.5)),
    )
    customers = figures["customers"]
    return {
        "fit": fit,
        "customers": customers,
        "average_clv": (
            None if figures["average"] is None else Decimal(f"{figures['average']:.2f}")
        ),
        "likely_active": round(figures["alive"] * 100 / customers, 2) if customers else None,
    }


def clv_stages_follow(*, fit: ClvModelFit) -> bool:
    """After an on-demand fit: when KEEPERS_AT_RISK_FROM_CLV is on, queue the lifecycle
    recompute (after commit) so the at_risk stage follows the new probabilities. The
    nightly task recomputes in-line instead. Returns whether a recompute was queued."""
    if not settings.KEEPERS_AT_RISK_FROM_CLV or clv_latest() != fit:
        return False  # off, or a failed or back-dated fit: the predictions did not change
    transaction.on_commit(lifecycle_recompute_all_task.delay)
    return True


# --- fitting ---------------------------------------------------------------------------------


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _valid_months(months: object) -> bool:
    return isinstance(months, int) and not isinstance(months, bool) and 1 <= months <= 1200


def _check_options(months: object, discount: object) -> None:
    if not _valid_months(months):
        raise clv.ClvError(f"The CLV horizon must be 1 to 1200 months, not {months!r}.")
    if not _is_number(discount) or not 0 <= discount < 1:  # type: ignore[operator]
        raise clv.ClvError(f"The monthly discount rate must be from 0 to 1, not {discount!r}.")


def _orders():
    return Order.objects.live().filter(currency=settings.KEEPERS_BASE_CURRENCY)


def _fit(fit: ClvModelFit) -> _Predictions:
    """Read the orders (one grouped query), fit, predict. Fills in the fit's parameters as
    they are found, so a Gamma-Gamma failure still records the BG/NBD fit."""
    transactions = clv.transactions_from_orders(_orders(), fit.as_of)
    summary = clv.rfm_summary(transactions, fit.as_of, unit_days=UNIT_DAYS)
    fit.customers = len(summary)
    bg = clv.fit_bgnbd(summary.x, summary.t_x, summary.T)
    fit.r, fit.alpha, fit.a, fit.b, fit.dropout = bg.r, bg.alpha, bg.a, bg.b, bg.dropout
    fit.bgnbd_log_likelihood = bg.log_likelihood
    gg = clv.fit_gamma_gamma(summary.x, summary.zbar)
    fit.p, fit.q, fit.gamma, fit.nu = gg.p, gg.q, gg.gamma, gg.nu
    fit.gg_log_likelihood, fit.gg_customers = gg.log_likelihood, gg.n

    x, t_x, T, zbar = summary.x, summary.t_x, summary.T, summary.zbar
    columns: dict[str, np.ndarray] = {
        "x": x,
        "t_x": t_x,
        "T": T,
        "zbar": zbar,
        "probability_alive": clv.probability_alive(bg, x, t_x, T),
    }
    horizons = np.array(list(PURCHASE_HORIZONS.values()), dtype=np.float64) / UNIT_DAYS
    purchases = clv.expected_purchases(bg, horizons[:, None], x, t_x, T)
    for name, row in zip(PURCHASE_HORIZONS, purchases, strict=True):
        columns[name] = row
    columns["expected_spend"] = clv.expected_spend(gg, x, zbar)
    columns["predicted_clv"] = clv.predicted_clv(
        bg,
        gg,
        x,
        t_x,
        T,
        zbar,
        months=fit.horizon_months,
        monthly_discount=fit.monthly_discount,
        unit_days=UNIT_DAYS,
    )
    bad = sum(int((~np.isfinite(v)).sum()) for v in columns.values())
    if bad:
        raise clv.ClvError(f"The predictions hold {bad} missing or infinite values.")
    # Historic CLV: net revenue to date per customer, the same orders the models saw.
    ids, code = np.unique(transactions.customer_ids, return_inverse=True)
    if not np.array_equal(ids, summary.customer_ids):  # both are the sorted distinct ids
        raise clv.ClvError("The customer summary and the revenue totals disagree.")
    columns["historic_clv"] = np.round(
        np.bincount(code, weights=transactions.amounts, minlength=len(ids)), 2
    )
    return _Predictions(contact_ids=summary.customer_ids.astype(np.int64), columns=columns)


def _failed(fit: ClvModelFit, error: Exception, started: float) -> ClvModelFit:
    fit.status = ClvModelFit.Status.FAILED
    message = getattr(error, "message", None) or str(error) or type(error).__name__
    fit.error = message if isinstance(error, clv.ClvError) else f"{type(error).__name__}: {message}"
    fit.duration_ms = _elapsed_ms(started)
    fit.pk = None  # a failure while storing: record it as a new row
    fit.save()
    return fit


def _elapsed_ms(started: float) -> int:
    return min(int((time.monotonic() - started) * 1000), 2**31 - 1)


# --- storing ---------------------------------------------------------------------------------


@transaction.atomic
def _store(fit: ClvModelFit, predictions: _Predictions, started: float) -> bool:
    """Save the fit and, when it is the latest by as_of, its predictions. Returns whether
    the predictions were written."""
    _lock_predictions()
    fit.save()
    newer = (
        ClvModelFit.objects.filter(status=ClvModelFit.Status.OK, as_of__gt=fit.as_of)
        .exclude(pk=fit.pk)
        .exists()
    )
    if not newer:
        ids = predictions.contact_ids
        for start in range(0, len(ids), WRITE_CHUNK):
            chunk = slice(start, start + WRITE_CHUNK)
            _upsert(fit, ids[chunk], {k: v[chunk] for k, v in predictions.columns.items()})
        # Customers no longer in the base (every order refunded, or erased) lose their row.
        ContactClv.objects.exclude(fit=fit).delete()
    ClvModelFit.objects.filter(pk=fit.pk).update(duration_ms=_elapsed_ms(started))
    fit.duration_ms = _elapsed_ms(started)
    return not newer


def _lock_predictions() -> None:
    """One writer of predictions at a time (PostgreSQL; SQLite serialises writers anyway),
    so two fits cannot interleave their chunks."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext('keepers.clv_predictions'))")


def _upsert(fit: ClvModelFit, ids: np.ndarray, columns: dict[str, np.ndarray]) -> None:
    if connection.vendor == "postgresql":
        _upsert_postgresql(fit, ids, columns)
        return
    existing = set(Contact.objects.filter(pk__in=ids.tolist()).values_list("pk", flat=True))
    rows = [
        ContactClv(
            contact_id=int(pk),
            fit_id=fit.pk,
            **{name: _python(name, columns[name][i]) for name in PREDICTION_FIELDS},
        )
        for i, pk in enumerate(ids)
        if int(pk) in existing
    ]
    ContactClv.objects.bulk_create(
        rows,
        batch_size=500,
        update_conflicts=True,
        unique_fields=["contact"],
        update_fields=["fit", *PREDICTION_FIELDS],
    )


def _python(name: str, value: np.generic) -> object:
    if name == "x":
        return int(value)
    if name == "historic_clv":
        return Decimal(f"{float(value):.2f}")
    return float(value)


def _upsert_postgresql(fit: ClvModelFit, ids: np.ndarray, columns: dict[str, np.ndarray]) -> None:
    """INSERT … SELECT FROM unnest(one array per column) … ON CONFLICT (contact_id) DO
    UPDATE: one statement and a dozen parameters per chunk. A contact erased since the
    orders were read is skipped rather than failing the fit. (COPY into a staging table
    was no faster: on 1M customers the time goes to the table's four indexes and two
    foreign keys, not to sending the rows.)"""
    qn = connection.ops.quote_name
    meta = ContactClv._meta
    table, contacts = qn(meta.db_table), qn(Contact._meta.db_table)
    names = ["contact", *PREDICTION_FIELDS]
    cols = [qn(meta.get_field(n).column) for n in names]
    types = {"contact": "bigint", "x": "integer", "historic_clv": "numeric"}
    arrays = ", ".join(f"%s::{types.get(n, 'double precision')}[]" for n in names)
    updates = ", ".join(f"{c} = excluded.{c}" for c in [qn("fit_id"), *cols[1:]])
    sql = (
        f"INSERT INTO {table} ({', '.join(cols)}, {qn('fit_id')}) "
        f"SELECT {', '.join(f'v.{c}' for c in cols)}, %s "
        f"FROM unnest({arrays}) AS v({', '.join(cols)}) "
        f"WHERE EXISTS (SELECT 1 FROM {contacts} c WHERE c.id = v.{cols[0]}) "
        f"ON CONFLICT ({cols[0]}) DO UPDATE SET {updates}"
    )
    params: list[object] = [fit.pk, ids.tolist()]
    for name in PREDICTION_FIELDS:
        values = columns[name]
        params.append(values.astype(np.int64).tolist() if name == "x" else values.tolist())
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _refresh_segments() -> None:
    """Segments whose rules read predictions (a `clv` condition), each in its own
    transaction, as rfm_recompute does for RFM."""

    for segment in Segment.objects.filter(
        kind=Segment.Kind.DYNAMIC, is_active=True, is_template=False
    ):
        if "clv" in segment.depends_on:
            segment_refresh(segment_id=segment.pk)
