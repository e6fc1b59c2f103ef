"""Predicted customer lifetime value: the BG/NBD model of repeat purchasing and the
Gamma-Gamma model of spend per purchase, fitted by maximum likelihood.

Sources (formula numbers refer to these):

- [FHL05a] Fader, Hardie & Lee (2005), "Counting Your Customers the Easy Way: An Alternative
  to the Pareto/NBD Model", Marketing Science 24(2): the BG/NBD likelihood (eq. 6) and the
  conditional expectation (eq. 10); P(alive) and the implementation details from Hardie's notes
  "Implementing the BG/NBD Model for Customer Base Analysis in Excel" and "Computing P(alive)
  Using the BG/NBD Model".
- [FHL05b] Fader, Hardie & Lee (2005), "RFM and CLV: Using Iso-Value Curves for Customer Base
  Analysis", Journal of Marketing Research 42(4), with Hardie's note "The Gamma-Gamma Model of
  Monetary Value" (2013): the Gamma-Gamma likelihood and conditional expected spend.

Time is counted in units of `unit_days` days, weeks by default as in the papers (and in the
published CDNOW figures); the fitted parameters only mean something in the unit they were
fitted in. Everything here is numpy over arrays of customers, except
`transactions_from_orders`, which reads the order table in one grouped query.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np
from django.db import connection
from django.db.models import QuerySet, Sum
from django.db.models.functions import TruncDate
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import minimize
from scipy.special import betaln, digamma, expit, gammaln, hyp2f1

from crm.errors import KeepersError
from crm.models import order_net

FloatArray = NDArray[np.float64]

# Average month in days, for the CLV horizon: 365.25 / 12.
DAYS_PER_MONTH = 365.25 / 12
# Log-parameters are searched within ±LOG_BOUND; a fit that ends on the bound has no interior
# maximum (too few customers or repeat purchases to identify the model).
LOG_BOUND = 15.0
# BG/NBD's a + b (Gamma-Gamma's q) beyond this: the customers' dropout probabilities
# (spend rates) hardly differ (dropout's spread is below 2 points for any mean), the
# likelihood is flat along a/(a+b) = p (q/γ = ν), and BG/NBD's hypergeometric series stop
# converging near 10⁴. The limit with one dropout probability (one spend rate) is then
# fitted too, and kept unless a likelihood-ratio test (1 degree of freedom, 5%: a
# log-likelihood more than 1.92 below) rejects it.
COMMON_DROPOUT_CONCENTRATION = 1e3
COMMON_DROPOUT_MAX_LOSS = 1.92


class ClvError(KeepersError, ValueError):
    """Data the models cannot be fitted on, or a fit that did not converge."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="clv_fit")


# --- transactions and the RFM summary ---------------------------------------------------


@dataclass(frozen=True)
class Transactions:
    """Purchases as parallel arrays: customer id, day (datetime64[D], UTC), amount."""

    customer_ids: NDArray
    days: NDArray[np.datetime64]
    amounts: FloatArray

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[Hashable, date, float | Decimal]]) -> Transactions:
        """From (customer_id, date, amount) rows; an aware datetime counts on its UTC date."""
        ids: list[Hashable] = []
        days: list[date] = []
        amounts: list[float] = []
        for customer_id, day, amount in rows:
            ids.append(customer_id)
            days.append(_utc_date(day))
            amounts.append(float(amount))
        return cls(
            customer_ids=np.array(ids),
            days=np.array(days, dtype="datetime64[D]"),
            amounts=np.array(amounts, dtype=np.float64),
        )

    def __len__(self) -> int:
        return len(self.amounts)


@dataclass(frozen=True)
class RfmSummary:
    """Per customer, from the purchases up to `as_of` (same-day purchases merged):
    x = repeat transactions, t_x = time from the first to the last transaction,
    T = time from the first transaction to as_of (both in `unit_days` units),
    zbar = mean amount of the repeat transactions (the first is left out; 0 when x = 0)."""

    customer_ids: NDArray
    x: FloatArray
    t_x: FloatArray
    T: FloatArray
    zbar: FloatArray
    as_of: date
    unit_days: float

    def __len__(self) -> int:
        return len(self.x)


def _utc_date(value: date) -> date:
    if isinstance(value, datetime):
        return value.astimezone(UTC).date() if value.tzinfo else value.date()
    return value


def rfm_summary(
    transactions: Transactions | Iterable[tuple[Hashable, date, float | Decimal]],
    as_of: date,
    *,
    unit_days: float = 7,
) -> RfmSummary:
    """Frequency, recency, age and mean repeat spend per customer as of `as_of` (inclusive),
    as defined for the BG/NBD and Gamma-Gamma models [FHL05a, FHL05b]. Sorting and grouping
    in numpy, so millions of purchases take seconds."""
    tx = (
        transactions
        if isinstance(transactions, Transactions)
        else Transactions.from_rows(transactions)
    )
    as_of = _utc_date(as_of)
    keep = tx.days <= np.datetime64(as_of, "D")
    ids = tx.customer_ids[keep]
    days = tx.days[keep].astype(np.int64)
    amounts = tx.amounts[keep]
    if len(ids) == 0:
        empty = np.zeros(0)
        return RfmSummary(ids, empty, empty, empty, empty, as_of, unit_days)

    customer_ids, code = np.unique(ids, return_inverse=True)
    order = np.lexsort((days, code))
    code, days, amounts = code[order], days[order], amounts[order]

    # One transaction per customer and day, its amount the day's sum.
    new_txn = np.ones(len(code), dtype=bool)
    new_txn[1:] = (code[1:] != code[:-1]) | (days[1:] != days[:-1])
    starts = np.flatnonzero(new_txn)
    t_code, t_day = code[starts], days[starts]
    t_amount = np.add.reduceat(amounts, starts)

    # Customers are contiguous and in the order of customer_ids (every code occurs).
    first = np.ones(len(t_code), dtype=bool)
    first[1:] = t_code[1:] != t_code[:-1]
    c_start = np.flatnonzero(first)
    c_end = np.append(c_start[1:], len(t_code))
    x = (c_end - c_start - 1).astype(np.float64)
    first_day, last_day = t_day[c_start], t_day[c_end - 1]
    repeat_amount = t_amount.copy()
    repeat_amount[c_start] = 0.0
    repeat_total = np.add.reduceat(repeat_amount, c_start)
    zbar = np.divide(repeat_total, x, out=np.zeros_like(x), where=x > 0)
    as_of_day = np.datetime64(as_of, "D").astype(np.int64)
    return RfmSummary(
        customer_ids=customer_ids,
        x=x,
        t_x=(last_day - first_day) / unit_days,
        T=(as_of_day - first_day) / unit_days,
        zbar=zbar,
        as_of=as_of,
        unit_days=unit_days,
    )


def transactions_from_orders(queryset: QuerySet, as_of: date) -> Transactions:
    """Net purchases (total − refunded_total) per contact and UTC day from a queryset of
    crm.models.Order, orders up to the end of `as_of` (UTC). One grouped query; the caller
    chooses the orders (for example leaving out fully refunded ones or other currencies).
    A fully refunded order still counts as a transaction of 0 unless filtered out."""
    as_of = _utc_date(as_of)
    end = datetime.combine(as_of + timedelta(days=1), time.min, tzinfo=UTC)
    if connection.vendor == "postgresql":
        return _transactions_postgresql(queryset.filter(ordered_at__lt=end))
    rows = list(
        queryset.filter(ordered_at__lt=end)
        .order_by()
        .annotate(day=TruncDate("ordered_at", tzinfo=UTC))
        .values("contact_id", "day")
        .annotate(amount=Sum(order_net()))
        .values_list("contact_id", "day", "amount")
    )
    n = len(rows)
    return Transactions(
        customer_ids=np.fromiter((row[0] for row in rows), dtype=np.int64, count=n),
        days=np.array([row[1] for row in rows], dtype="datetime64[D]"),
        amounts=np.fromiter((row[2] for row in rows), dtype=np.float64, count=n),
    )


def _transactions_postgresql(queryset: QuerySet) -> Transactions:
    """The same grouping in one SQL statement returning plain numbers (days since the
    epoch, float8 sums): about half the time of the ORM path at millions of orders, most
    of which went into building Python dates and Decimals."""
    sql, params = (
        queryset.order_by()
        .values("contact_id", "ordered_at", "total", "refunded_total")
        .query.sql_with_params()
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT o.contact_id, "
            "((o.ordered_at AT TIME ZONE 'UTC')::date - DATE '1970-01-01') AS day, "
            "SUM(o.total - o.refunded_total)::float8 "
            f"FROM ({sql}) o GROUP BY 1, 2",
            params,
        )
        rows = cursor.fetchall()
    n = len(rows)
    return Transactions(
        customer_ids=np.fromiter((row[0] for row in rows), dtype=np.int64, count=n),
        days=np.fromiter((row[1] for row in rows), dtype=np.int64, count=n).astype("datetime64[D]"),
        amounts=np.fromiter((row[2] for row in rows), dtype=np.float64, count=n),
    )


def cdnow_transactions(path: str | Path) -> Transactions:
    """The CDNOW sample file (master id, sample id, YYYYMMDD, CDs, dollars), keyed by the
    master customer id."""
    ids, days, amounts = [], [], []
    with open(path) as lines:
        for line in lines:
            fields = line.split()
            if not fields:
                continue
            master_id, _sample_id, ymd, _cds, dollars = fields
            ids.append(int(master_id))
            days.append(f"{ymd[:4]}-{ymd[4:6]}-{ymd[6:8]}")
            amounts.append(float(dollars))
    return Transactions(
        customer_ids=np.array(ids, dtype=np.int64),
        days=np.array(days, dtype="datetime64[D]"),
        amounts=np.array(amounts, dtype=np.float64),
    )


# --- fitting -----------------------------------------------------------------------------


@dataclass(frozen=True)
class BgNbdFit:
    """BG/NBD parameters: purchase rate λ ~ Gamma(r, α), dropout probability after each
    purchase p ~ Beta(a, b); α in the time unit of the data it was fitted on.

    `dropout` is set (and a, b are None) for the model's limit a, b → ∞ with a/(a+b) fixed:
    every customer drops out after a purchase with the same probability `dropout`. The fit
    lands there when the data show no spread in dropout between customers (a and b then run
    off together and the four-parameter fit has no interior maximum)."""

    r: float
    alpha: float
    a: float | None
    b: float | None
    log_likelihood: float
    n: int
    dropout: float | None = None

    @property
    def common_dropout(self) -> bool:
        return self.dropout is not None


@dataclass(frozen=True)
class GammaGammaFit:
    """Gamma-Gamma parameters: spend per transaction ~ Gamma(p, ν), ν ~ Gamma(q, γ).

    `nu` is set (and q, γ are None) for the limit q, γ → ∞ with q/γ = ν: every customer's
    spend per transaction has the same distribution, Gamma(p, ν), of mean p/ν. The fit
    lands there when customers' average spends differ no more than chance makes them."""

    p: float
    q: float | None
    gamma: float | None
    log_likelihood: float
    n: int
    nu: float | None = None

    @property
    def common_spend(self) -> bool:
        return self.nu is not None


def _as_float_arrays(*arrays: ArrayLike) -> list[FloatArray]:
    out = [np.asarray(a, dtype=np.float64) for a in arrays]
    if any(a.ndim != 1 for a in out) or len({len(a) for a in out}) != 1:
        raise ClvError("x, t_x, T and zbar must be one-dimensional arrays of the same length.")
    if any(not np.all(np.isfinite(a)) for a in out):
        raise ClvError("The customer summary holds a missing or infinite value.")
    return out


def _bgnbd_ll_and_grad(
    params: FloatArray, x: FloatArray, t_x: FloatArray, T: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Per-customer BG/NBD log-likelihood [FHL05a, eq. 6] in log-sum-exp form, and its
    gradient in (r, α, a, b) (rows). ln L = ln Γ(r+x) − ln Γ(r) + r ln α
    + ln[ B(a, b+x)/B(a, b) (α+T)^−(r+x) + δ(x>0) B(a+1, b+x−1)/B(a, b) (α+t_x)^−(r+x) ]."""
    r, alpha, a, b = params
    repeat = x > 0
    x_safe = np.where(repeat, x, 1.0)  # keeps B(a+1, b+x−1) finite where it is unused
    ln_beta_ab = betaln(a, b)
    ln_a_term = betaln(a, b + x) - ln_beta_ab - (r + x) * np.log(alpha + T)
    ln_b_term = np.where(
        repeat,
        betaln(a + 1, b + x_safe - 1) - ln_beta_ab - (r + x) * np.log(alpha + t_x),
        -np.inf,
    )
    ln_sum = np.logaddexp(ln_a_term, ln_b_term)
    ll = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + ln_sum

    w = np.exp(ln_b_term - ln_sum)  # share of the "dropped out after the last purchase" term
    v = 1.0 - w
    psi_ab, psi_abx = digamma(a + b), digamma(a + b + x)
    d_r = digamma(r + x) - digamma(r) + np.log(alpha) - v * np.log(alpha + T)
    d_r -= w * np.log(alpha + t_x)
    d_alpha = r / alpha - (r + x) * (v / (alpha + T) + w / (alpha + t_x))
    d_a = v * (psi_ab - psi_abx) + w * (digamma(a + 1) - digamma(a) + psi_ab - psi_abx)
    d_b = v * (digamma(b + x) - digamma(b) + psi_ab - psi_abx)
    d_b += w * (digamma(b + x_safe - 1) - digamma(b) + psi_ab - psi_abx)
    return ll, np.vstack([d_r, d_alpha, d_a, d_b])


def _gg_ll_and_grad(
    params: FloatArray, x: FloatArray, zbar: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Per-customer Gamma-Gamma log-likelihood of the mean repeat spend [FHL05b; Hardie 2013]:
    ln f = ln Γ(px+q) − ln Γ(px) − ln Γ(q) + q ln γ + (px−1) ln zbar + px ln x
    − (px+q) ln(γ + x zbar), and its gradient in (p, q, γ) (rows)."""
    p, q, gamma = params
    px = p * x
    ln_gxz = np.log(gamma + x * zbar)
    ll = (
        gammaln(px + q)
        - gammaln(px)
        - gammaln(q)
        + q * np.log(gamma)
        + (px - 1) * np.log(zbar)
        + px * np.log(x)
        - (px + q) * ln_gxz
    )
    psi = digamma(px + q)
    d_p = x * (psi - digamma(px) + np.log(zbar) + np.log(x) - ln_gxz)
    d_q = psi - digamma(q) + np.log(gamma) - ln_gxz
    d_gamma = q / gamma - (px + q) / (gamma + x * zbar)
    return ll, np.vstack([d_p, d_q, d_gamma])


def _bgnbd_common_ll_and_grad(
    params: FloatArray, x: FloatArray, t_x: FloatArray, T: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """The BG/NBD log-likelihood in its limit a, b → ∞ with a/(a+b) = p (BgNbdFit.dropout),
    where B(a, b+x)/B(a, b) → (1−p)^x and B(a+1, b+x−1)/B(a, b) → p(1−p)^(x−1):
    ln L = ln Γ(r+x) − ln Γ(r) + r ln α
    + ln[(1−p)^x (α+T)^−(r+x) + δ(x>0) p (1−p)^(x−1) (α+t_x)^−(r+x)],
    and its gradient in (r, α, odds) with odds = p/(1−p) (positive, as `_maximise` needs)."""
    r, alpha, odds = params
    repeat = x > 0
    ln_p, ln_q = np.log(odds) - np.log1p(odds), -np.log1p(odds)  # ln p, ln(1−p)
    ln_a_term = x * ln_q - (r + x) * np.log(alpha + T)
    ln_b_term = np.where(repeat, ln_p + (x - 1) * ln_q - (r + x) * np.log(alpha + t_x), -np.inf)
    ln_sum = np.logaddexp(ln_a_term, ln_b_term)
    ll = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + ln_sum

    w = np.exp(ln_b_term - ln_sum)
    v = 1.0 - w
    p = odds / (1.0 + odds)
    d_r = digamma(r + x) - digamma(r) + np.log(alpha) - v * np.log(alpha + T)
    d_r -= w * np.log(alpha + t_x)
    d_alpha = r / alpha - (r + x) * (v / (alpha + T) + w / (alpha + t_x))
    d_p = -v * x / (1.0 - p) + w * (1.0 / p - (x - 1) / (1.0 - p))
    d_odds = d_p / (1.0 + odds) ** 2
    return ll, np.vstack([d_r, d_alpha, d_odds])


def _gg_common_ll_and_grad(
    params: FloatArray, x: FloatArray, zbar: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """The Gamma-Gamma log-likelihood in its limit q, γ → ∞ with q/γ = ν (GammaGammaFit.nu):
    the mean of x purchases ~ Gamma(p, ν) is Gamma(px, xν), so
    ln f = px ln(xν) − ln Γ(px) + (px−1) ln zbar − xν·zbar; gradient in (p, ν)."""
    p, nu = params
    px = p * x
    ll = px * np.log(x * nu) - gammaln(px) + (px - 1) * np.log(zbar) - x * nu * zbar
    d_p = x * (np.log(x * nu) - digamma(px) + np.log(zbar))
    d_nu = px / nu - x * zbar
    return ll, np.vstack([d_p, d_nu])


class _Unsettled(ClvError):
    """A fit that ended on the search bound (`names`: the parameters there) or stopped
    without converging, with the parameters it reached."""

    def __init__(self, message: str, names: list[str], params: FloatArray) -> None:
        super().__init__(message)
        self.names, self.params = names, params


def _maximise(
    ll_and_grad, start: FloatArray, weights: FloatArray, names: tuple[str, ...], model: str
) -> tuple[FloatArray, float]:
    """Maximum likelihood over log-parameters (so every parameter stays positive), L-BFGS-B
    with the analytic gradient; the objective is the mean negative log-likelihood, so the
    tolerances do not depend on the number of customers."""
    total = weights.sum()

    def objective(theta: FloatArray) -> tuple[float, FloatArray]:
        params = np.exp(theta)
        ll, grad = ll_and_grad(params)
        return -(weights @ ll) / total, -(grad @ weights) * params / total

    result = minimize(
        objective,
        np.log(start),
        jac=True,
        method="L-BFGS-B",
        bounds=[(-LOG_BOUND, LOG_BOUND)] * len(start),
        options={"maxiter": 1000, "ftol": 1e-14, "gtol": 1e-9},
    )
    theta = result.x
    at_bound = [n for n, t in zip(names, theta, strict=True) if abs(t) >= LOG_BOUND - 1e-6]
    if at_bound:
        raise _Unsettled(
            f"The {model} fit did not settle: {', '.join(at_bound)} ran off to an extreme. "
            "The data have too few customers or repeat purchases to fit the model.",
            at_bound,
            np.exp(theta),
        )
    if not np.all(np.isfinite(theta)) or not np.isfinite(result.fun):
        raise ClvError(f"The {model} fit failed: {result.message}")
    if not result.success and np.max(np.abs(result.jac)) > 1e-5:
        raise _Unsettled(f"The {model} fit did not converge: {result.message}", [], np.exp(theta))
    return np.exp(theta), float(-result.fun * total)


def fit_bgnbd(x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> BgNbdFit:
    """Fit the BG/NBD model by maximum likelihood [FHL05a]. Customers with the same
    (x, t_x, T) are fitted once with a weight, which shrinks large bases a lot.

    When b runs off or a + b ends beyond COMMON_DROPOUT_CONCENTRATION (the likelihood
    keeps rising as a and b grow together: the customers' dropout probabilities do not
    differ), the model's limit with one dropout probability for everyone is fitted too and
    returned, with `dropout` set, unless it fits significantly worse (see BgNbdFit)."""
    x, t_x, T = _as_float_arrays(x, t_x, T)
    n = len(x)
    if n < 2:
        raise ClvError(f"The BG/NBD fit needs at least 2 customers, got {n}.")
    if np.any(x < 0) or np.any(x != np.round(x)):
        raise ClvError("x (repeat transactions) must be whole numbers ≥ 0.")
    if np.any(t_x < 0) or np.any(t_x > T * (1 + 1e-12)):
        raise ClvError("Each customer needs 0 ≤ t_x ≤ T.")
    if not np.any(x > 0):
        raise ClvError(
            "The BG/NBD fit needs at least one customer with a repeat purchase; "
            f"none of the {n} customers has one."
        )
    rows, counts = np.unique(np.column_stack([x, t_x, T]), axis=0, return_counts=True)
    ux, ut_x, uT = rows.T
    # Start from a purchase rate of mean(x)/mean(T) with r = 1, and p ~ Beta(1, 3).
    rate = max(x.mean() / max(T.mean(), 1e-9), 1e-6)
    start = np.array([1.0, 1.0 / rate, 1.0, 3.0])
    weights = counts.astype(np.float64)
    full: BgNbdFit | None = None
    try:
        params, ll = _maximise(
            lambda prm: _bgnbd_ll_and_grad(prm, ux, ut_x, uT),
            start,
            weights,
            ("r", "alpha", "a", "b"),
            "BG/NBD",
        )
    except _Unsettled as error:
        a, b = error.params[2:]
        if "b" not in error.names and a + b <= COMMON_DROPOUT_CONCENTRATION:
            raise
    else:
        r, alpha, a, b = (float(v) for v in params)
        full = BgNbdFit(r=r, alpha=alpha, a=a, b=b, log_likelihood=ll, n=n)
        if a + b <= COMMON_DROPOUT_CONCENTRATION:
            return full
    params, ll = _maximise(
        lambda prm: _bgnbd_common_ll_and_grad(prm, ux, ut_x, uT),
        start[:3] * [1.0, 1.0, 1.0 / 3.0],  # dropout 0.25
        weights,
        ("r", "alpha", "dropout"),
        "BG/NBD (one dropout probability for all)",
    )
    if full is not None and ll < full.log_likelihood - COMMON_DROPOUT_MAX_LOSS:
        return full
    r, alpha, odds = (float(v) for v in params)
    return BgNbdFit(
        r=r, alpha=alpha, a=None, b=None, log_likelihood=ll, n=n, dropout=odds / (1.0 + odds)
    )


def fit_gamma_gamma(x: ArrayLike, zbar: ArrayLike) -> GammaGammaFit:
    """Fit the Gamma-Gamma spend model by maximum likelihood [FHL05b] on the customers with
    x > 0 and zbar > 0 (the others carry no information about spend per repeat purchase).

    As for BG/NBD: when q or γ runs off, or q ends beyond COMMON_DROPOUT_CONCENTRATION
    (customers' spend rates ν hardly differ), the limit with one ν for everyone is fitted
    too and returned, with `nu` set, unless it fits significantly worse."""
    x, zbar = _as_float_arrays(x, zbar)
    used = (x > 0) & (zbar > 0)
    x, zbar = x[used], zbar[used]
    n = len(x)
    if n < 2:
        raise ClvError(
            "The Gamma-Gamma fit needs at least 2 customers with a repeat purchase of "
            f"positive value, got {n}."
        )
    # Start with p = 1, q = 2 and γ matching the mean spend: E[zbar] ≈ pγ/(q−1).
    start = np.array([1.0, 2.0, float(np.mean(zbar))])
    full: GammaGammaFit | None = None
    try:
        params, ll = _maximise(
            lambda prm: _gg_ll_and_grad(prm, x, zbar),
            start,
            np.ones(n),
            ("p", "q", "gamma"),
            "Gamma-Gamma",
        )
    except _Unsettled as error:
        q = error.params[1]
        if not {"q", "gamma"} & set(error.names) and q <= COMMON_DROPOUT_CONCENTRATION:
            raise
    else:
        p, q, gamma = (float(v) for v in params)
        full = GammaGammaFit(p=p, q=q, gamma=gamma, log_likelihood=ll, n=n)
        if q <= COMMON_DROPOUT_CONCENTRATION:
            return full
    params, ll = _maximise(
        lambda prm: _gg_common_ll_and_grad(prm, x, zbar),
        np.array([1.0, 1.0 / float(np.mean(zbar))]),  # p = 1, mean spend p/ν = mean zbar
        np.ones(n),
        ("p", "nu"),
        "Gamma-Gamma (one spend distribution for all)",
    )
    if full is not None and ll < full.log_likelihood - COMMON_DROPOUT_MAX_LOSS:
        return full
    p, nu = (float(v) for v in params)
    return GammaGammaFit(p=p, q=None, gamma=None, log_likelihood=ll, n=n, nu=nu)


# --- predictions -------------------------------------------------------------------------


def _hyp2f1(A: float, B: float, C: FloatArray, z: FloatArray) -> FloatArray:
    """Gauss's ₂F₁(A, B; C; z) for 0 ≤ z < 1: scipy's, and the series summed directly where
    scipy returns no finite value (large C with z near 1, where its transformations
    overflow; found at x ≥ 100 with a > 1). There C − A − B = x + r + 1 − a is large, so
    the terms fall fast."""
    C, z = np.broadcast_arrays(C, z)
    value = np.asarray(hyp2f1(A, B, C, z), dtype=np.float64)
    bad = ~np.isfinite(value)
    if bad.any():
        value = value.copy()
        value[bad] = _gauss_series(A, B, C[bad], z[bad])
    return value


def _gauss_series(
    A: float, B: float, C: FloatArray, z: FloatArray, max_terms: int = 100_000
) -> FloatArray:
    """Σ (A)ₙ(B)ₙ / ((C)ₙ n!) zⁿ, stopped once the tail is provably negligible: for n ≥ |A|
    every later term ratio z(m+A)(m+B)/((m+C)(m+1)) is at most q = z·max(1, (n+B)/(n+1))
    (as C > A), so the tail is below |termₙ|·q/(1−q). NaN where that never happens."""
    term = np.ones_like(z)
    total = np.ones_like(z)
    done = np.zeros(z.shape, dtype=bool)
    for n in range(max_terms):
        term = term * ((A + n) * (B + n) / ((C + n) * (n + 1)) * z)
        total = total + np.where(done, 0.0, term)
        if n + 1 >= abs(A):
            q = z * max(1.0, (n + 1 + B) / (n + 2))
            with np.errstate(divide="ignore"):
                tail = np.abs(term) * q / (1.0 - q)
            done |= (q < 1) & (tail <= 1e-16 * np.abs(total))
            if done.all():
                return total
    return np.where(done, total, np.nan)


def probability_alive(fit: BgNbdFit, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> FloatArray:
    """P(alive | x, t_x, T) = 1 / [1 + δ(x>0) a/(b+x−1) ((α+T)/(α+t_x))^(r+x)]
    [FHL05a; Hardie, "Computing P(alive) Using the BG/NBD Model"], computed as a logistic of
    the log-odds so large x cannot overflow. 1 for a customer with no repeat purchase."""
    x, t_x, T = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (x, t_x, T)))
    repeat = x > 0
    x_safe = np.where(repeat, x, 1.0)
    if fit.common_dropout:  # a/(b+x−1) → p/(1−p) as a, b → ∞ with a/(a+b) = p
        log_odds_ratio = np.log(fit.dropout) - np.log1p(-fit.dropout)
    else:
        log_odds_ratio = np.log(fit.a) - np.log(fit.b + x_safe - 1)
    log_odds_dead = log_odds_ratio + (fit.r + x) * (np.log(fit.alpha + T) - np.log(fit.alpha + t_x))
    return np.where(repeat, expit(-log_odds_dead), 1.0)


def expected_purchases(
    fit: BgNbdFit, t: ArrayLike, x: ArrayLike, t_x: ArrayLike, T: ArrayLike
) -> FloatArray:
    """Conditional expected number of transactions in the next t time units [FHL05a, eq. 10]:
    E[Y(t) | x, t_x, T] = P(alive) · (a+b+x−1)/(a−1)
    · [1 − ((α+T)/(α+T+t))^(r+x) ₂F₁(r+x, b+x; a+b+x−1; z)], z = t/(α+T+t).
    The bracket is evaluated through Euler's transformation,
    (1−z)^(r+x) ₂F₁(r+x, b+x; c; z) = (1−z)^(a−1) ₂F₁(a+b−1−r, a−1; c; z),
    whose parameters stay small for large x (the series then converges fast and does not
    overflow). Broadcasts over t and the customer arrays."""
    t, x, t_x, T = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (t, x, t_x, T)))
    if fit.common_dropout:
        # The limit a, b → ∞ with a/(a+b) = p: (a+b+x−1)/(a−1) → 1/p and
        # ₂F₁(r+x, b+x; a+b+x−1; z) → (1 − (1−p)z)^−(r+x), so the bracket becomes
        # 1 − ((α+T)/(α+T+p·t))^(r+x).
        p, r, alpha = fit.dropout, fit.r, fit.alpha
        bracket = -np.expm1((r + x) * (np.log(alpha + T) - np.log(alpha + T + p * t)))
        return probability_alive(fit, x, t_x, T) / p * bracket
    r, alpha, a, b = fit.r, fit.alpha, fit.a, fit.b
    c = a + b + x - 1
    z = t / (alpha + T + t)
    tail = np.exp((a - 1) * np.log1p(-z)) * _hyp2f1(a + b - 1 - r, a - 1, c, z)
    return probability_alive(fit, x, t_x, T) * c / (a - 1) * (1.0 - tail)


def expected_spend(fit: GammaGammaFit, x: ArrayLike, zbar: ArrayLike) -> FloatArray:
    """Conditional expected spend per transaction [FHL05b; Hardie 2013]:
    E[Z | p, q, γ, x, zbar] = p(γ + x·zbar) / (px + q − 1), a weighted mean of the population
    mean pγ/(q−1) and the customer's own zbar; the population mean when x = 0. In the limit
    with one ν for everyone (GammaGammaFit.nu), p/ν for every customer."""
    x, zbar = np.broadcast_arrays(np.asarray(x, dtype=np.float64), np.asarray(zbar, np.float64))
    if fit.common_spend:
        return np.full(x.shape, fit.p / fit.nu)
    if fit.q <= 1:
        raise ClvError(
            f"The Gamma-Gamma fit has q = {fit.q:.3g} ≤ 1, so the mean spend is not finite."
        )
    return fit.p * (fit.gamma + x * zbar) / (fit.p * x + fit.q - 1)


def predicted_clv(
    bgfit: BgNbdFit,
    ggfit: GammaGammaFit,
    x: ArrayLike,
    t_x: ArrayLike,
    T: ArrayLike,
    zbar: ArrayLike,
    *,
    months: int = 12,
    monthly_discount: float = 0.01,
    unit_days: float = 7,
) -> FloatArray:
    """Discounted expected spend over the next `months` months, per customer:
    Σ_{m=1..months} [E[Y(m·M)] − E[Y((m−1)·M)]] · E[Z] / (1+d)^m,
    where E[Y(t)] is `expected_purchases` (cumulative, so the difference is the expected
    number of purchases in month m), M is an average month (365.25/12 days) in the fit's time
    unit (`unit_days`), E[Z] is `expected_spend` and d the monthly discount rate; purchases
    are discounted as if made at the end of their month (the usual discrete approximation,
    as in the `lifetimes` library). Revenue, not margin: multiply by a margin if wanted."""
    if months < 1:
        raise ClvError("The CLV horizon must be at least one month.")
    if monthly_discount <= -1:
        raise ClvError("The monthly discount rate must be above −100%.")
    x, t_x, T, zbar = np.broadcast_arrays(
        *(np.asarray(v, dtype=np.float64) for v in (x, t_x, T, zbar))
    )
    month = DAYS_PER_MONTH / unit_days
    steps = np.arange(months + 1, dtype=np.float64).reshape((-1,) + (1,) * x.ndim)
    cumulative = expected_purchases(bgfit, steps * month, x, t_x, T)
    per_month = np.diff(cumulative, axis=0)
    discount = (1.0 + monthly_discount) ** -steps[1:]
    return (per_month * discount).sum(axis=0) * expected_spend(ggfit, x, zbar)
