"""The lift of one group of enrolments over another: the difference in conversion rate and in
revenue per contact, each with a 95% interval and a two-sided p-value, and a note when the
groups are too small to call. Treatment against holdout is a campaign's lift; the branches
of a random split are compared the same way.

Pure functions over each group's sufficient statistics (`Outcome`: enrolled, converted,
revenue and the sum of squares of each enrolment's revenue), so the selector that builds
the groups (`campaigns.selectors.enrollment_outcomes`) reads them in two aggregate queries
whatever the number of enrolments, and outcomes can be added up (the intent-to-treat
treatment is the mailed treatment plus the rest).

Sources:

- [N98] Newcombe (1998), "Interval estimation for the difference between independent
  proportions: comparison of eleven methods", Statistics in Medicine 17: the hybrid score
  interval (method 10) and the worked examples of its Table II.
- [N98a] Newcombe (1998), "Two-sided confidence intervals for the single proportion:
  comparison of seven methods", Statistics in Medicine 17: Wilson's interval (method 3) and
  its worked examples.
- [W27] Wilson (1927), "Probable inference, the law of succession, and statistical
  inference", JASA 22: the score interval for one proportion.
- [W47] Welch (1947), "The generalization of 'Student's' problem when several different
  population variances are involved", Biometrika 34.

Rules, with why:

- **Conversion rate difference**: Newcombe's hybrid score interval [N98, method 10], built
  from the Wilson interval of each rate. The plain Wald interval (difference ± z·SE)
  undercovers at small counts and collapses to zero width at 0 or n conversions (0 of 40
  against 0 of 40 "is" exactly 0 ± 0); Newcombe's stays inside [-1, 1], is defined for
  empty and full cells, keeps close to (or above) 95% coverage down to a handful of
  enrolments (N98's evaluation; the simulation in tests/campaigns/test_lift.py: 15 per
  group at 5% and 2%, Wald covers 65%), and needs only the normal quantile, no iteration.
- **Its p-value** (no difference, two-sided): Fisher's exact test when any of the four
  expected cells (converted / not, per group, at the pooled rate) is below
  `MIN_EXPECTED` (Cochran's rule for when the normal approximation is trusted); else the
  pooled two-proportion z-test, which is Pearson's chi-square without continuity
  correction. Fisher's is exact but conservative and its cost grows with the counts, so it
  is kept for small cells. The interval and the test are separate methods: near p = 0.05
  one can exclude zero and the other not.
- **Revenue per contact difference**: Welch's t over each enrolment's revenue, zeros
  included (an enrolment that did not convert brought 0), with the Welch-Satterthwaite
  degrees of freedom [W47]. Revenue per contact is a mean; Welch's does not assume the
  groups' variances are equal (a campaign that makes more people buy changes the spread
  too), and it needs only n, the sum and the sum of squares per group. With most
  enrolments at zero the t-approximation needs enough converters, which is what the note
  guards.
- **Relative lift**: the rate difference over the control's rate, when the control's
  rate is above zero; a point estimate only (its interval is wide and asymmetric, and the
  absolute difference is the figure to act on).
- **Too small to call** (`note`): a group is empty, or has fewer than `MIN_ENROLLED`
  enrolments (the t-approximation for revenue per contact is not trusted below that), or
  fewer than `MIN_EXPECTED` conversions or non-conversions are expected in a group at the
  pooled rate (the same rule that switches the test to Fisher's). The figures are still
  given; the note says not to act on them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal, localcontext

from scipy import stats

CONFIDENCE = 0.95
MIN_ENROLLED = 30
MIN_EXPECTED = 5


@dataclass(frozen=True)
class Outcome:
    """One group of enrolments: how many, how many converted (at least once), the revenue of
    their conversions, and the sum over enrolments of (that enrolment's revenue)²."""

    enrolled: int = 0
    converted: int = 0
    revenue: Decimal = Decimal(0)
    revenue_squares: Decimal = Decimal(0)

    def __add__(self, other: Outcome) -> Outcome:
        return Outcome(
            enrolled=self.enrolled + other.enrolled,
            converted=self.converted + other.converted,
            revenue=self.revenue + other.revenue,
            revenue_squares=self.revenue_squares + other.revenue_squares,
        )

    @property
    def rate(self) -> float | None:
        return self.converted / self.enrolled if self.enrolled else None

    @property
    def revenue_mean(self) -> Decimal | None:
        return self.revenue / self.enrolled if self.enrolled else None

    @property
    def revenue_variance(self) -> Decimal | None:
        """The sample variance of per-enrolment revenue (n - 1), from the sums; Decimal, so
        Σx² - (Σx)²/n does not cancel away in floating point."""
        if self.enrolled < 2:
            return None
        with localcontext() as ctx:
            ctx.prec = 50
            n = Decimal(self.enrolled)
            variance = (self.revenue_squares - self.revenue * self.revenue / n) / (n - 1)
        return max(variance, Decimal(0))


@dataclass(frozen=True)
class Difference:
    """treatment - control, with its interval and the p-value of "no difference"; None where
    the data do not define it (an empty group, no variation)."""

    estimate: float | None
    low: float | None
    high: float | None
    p_value: float | None
    test: str | None  # "fisher", "z", "welch"


@dataclass(frozen=True)
class Comparison:
    rate: Difference  # in proportions (0.04 = 4 points)
    relative: float | None  # rate difference / control rate (0.5 = +50%)
    revenue: Difference  # revenue per contact, in the revenue's currency
    note: str | None
    confidence: float = CONFIDENCE


def _z(confidence: float) -> float:
    return float(stats.norm.ppf(0.5 + confidence / 2))


def wilson_interval(
    converted: int, enrolled: int, *, confidence: float = CONFIDENCE
) -> tuple[float, float]:
    """Wilson's score interval for converted / enrolled [W27]; (0, 1) when nobody enrolled."""
    if enrolled == 0:
        return 0.0, 1.0
    z = _z(confidence)
    p = converted / enrolled
    denominator = 1 + z * z / enrolled
    centre = (p + z * z / (2 * enrolled)) / denominator
    half = z * math.sqrt(p * (1 - p) / enrolled + z * z / (4 * enrolled * enrolled)) / denominator
    # At 0 and n the bound is exactly 0 (1); the formula leaves rounding dust.
    low = 0.0 if converted == 0 else max(0.0, centre - half)
    high = 1.0 if converted == enrolled else min(1.0, centre + half)
    return low, high


def _min_expected(treatment: Outcome, control: Outcome) -> float:
    """The smallest expected cell of the 2×2 table (converted / not, per group) at the pooled
    rate."""
    n = treatment.enrolled + control.enrolled
    pooled = (treatment.converted + control.converted) / n
    return min(
        group.enrolled * share for group in (treatment, control) for share in (pooled, 1 - pooled)
    )


def rate_difference(
    *, treatment: Outcome, control: Outcome, confidence: float = CONFIDENCE
) -> Difference:
    """Conversion rate of treatment minus control, Newcombe's hybrid score interval [N98,
    method 10], and the two-sided p-value (Fisher's exact test when an expected cell is
    below MIN_EXPECTED, else the pooled z-test): see the module's docstring for why."""
    if not treatment.enrolled or not control.enrolled:
        return Difference(None, None, None, None, None)
    p1, p0 = treatment.converted / treatment.enrolled, control.converted / control.enrolled
    l1, u1 = wilson_interval(treatment.converted, treatment.enrolled, confidence=confidence)
    l0, u0 = wilson_interval(control.converted, control.enrolled, confidence=confidence)
    d = p1 - p0
    low = d - math.sqrt((p1 - l1) ** 2 + (u0 - p0) ** 2)
    high = d + math.sqrt((u1 - p1) ** 2 + (p0 - l0) ** 2)
    if _min_expected(treatment, control) < MIN_EXPECTED:
        table = [
            [treatment.converted, treatment.enrolled - treatment.converted],
            [control.converted, control.enrolled - control.converted],
        ]
        p_value, test = float(stats.fisher_exact(table).pvalue), "fisher"
    else:
        n = treatment.enrolled + control.enrolled
        pooled = (treatment.converted + control.converted) / n
        se = math.sqrt(pooled * (1 - pooled) * (1 / treatment.enrolled + 1 / control.enrolled))
        p_value, test = float(2 * stats.norm.sf(abs(d) / se)), "z"
    return Difference(d, max(low, -1.0), min(high, 1.0), min(p_value, 1.0), test)


def revenue_difference(
    *, treatment: Outcome, control: Outcome, confidence: float = CONFIDENCE
) -> Difference:
    """Revenue per contact of treatment minus control, with Welch's t interval and
    p-value over per-enrolment revenue, zeros included [W47]. The estimate needs an
    enrolment in each group; the interval and p-value need two in each and some variation."""
    if not treatment.enrolled or not control.enrolled:
        return Difference(None, None, None, None, None)
    d = float(treatment.revenue_mean - control.revenue_mean)
    if treatment.enrolled < 2 or control.enrolled < 2:
        return Difference(d, None, None, None, None)
    v1 = float(treatment.revenue_variance) / treatment.enrolled
    v0 = float(control.revenue_variance) / control.enrolled
    se = math.sqrt(v1 + v0)
    if se == 0:  # every enrolment brought the same (nobody bought): no spread to test against
        return Difference(d, None, None, None, None)
    df = (v1 + v0) ** 2 / (v1 * v1 / (treatment.enrolled - 1) + v0 * v0 / (control.enrolled - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, df)) * se
    p_value = float(2 * stats.t.sf(abs(d) / se, df))
    return Difference(d, d - half, d + half, p_value, "welch")


def too_small_note(
    *, treatment: Outcome, control: Outcome, names: tuple[str, str] = ("treatment", "control")
) -> str | None:
    """Why these groups are too small to call, or None: a group is empty, has fewer than
    MIN_ENROLLED enrolments, or is expected to have fewer than MIN_EXPECTED conversions
    (or non-conversions) at the pooled rate."""
    groups = tuple(zip(names, (treatment, control), strict=True))
    for name, group in groups:
        if not group.enrolled:
            return f"No {name} enrolments yet: nothing to compare."
    small = [f"{group.enrolled} {name}" for name, group in groups if group.enrolled < MIN_ENROLLED]
    if small:
        return (
            f"Too small to call: {' and '.join(small)} enrolments "
            f"(at least {MIN_ENROLLED} per group are needed)."
        )
    pooled = (treatment.converted + control.converted) / (treatment.enrolled + control.enrolled)
    cells = [
        (group.enrolled * share, outcome, name)
        for name, group in groups
        for outcome, share in (("conversions", pooled), ("non-conversions", 1 - pooled))
    ]
    # the smallest cell; of equals the first, so treatment before control
    expected, outcome, name = min(cells, key=lambda cell: cell[0])
    if expected < MIN_EXPECTED:
        return (
            f"Too small to call: at the pooled conversion rate, {expected:.1f} {outcome} are "
            f"expected among the {name} (at least {MIN_EXPECTED} are needed)."
        )
    return None


def compare(
    *,
    treatment: Outcome,
    control: Outcome,
    names: tuple[str, str] = ("treatment", "control"),
    confidence: float = CONFIDENCE,
) -> Comparison:
    """Everything above for one pair of groups; `names` are what the note calls them."""
    rate = rate_difference(treatment=treatment, control=control, confidence=confidence)
    relative = None
    if rate.estimate is not None and control.converted:
        relative = rate.estimate / (control.converted / control.enrolled)
    return Comparison(
        rate=rate,
        relative=relative,
        revenue=revenue_difference(treatment=treatment, control=control, confidence=confidence),
        note=too_small_note(treatment=treatment, control=control, names=names),
        confidence=confidence,
    )
