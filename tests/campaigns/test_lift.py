"""The lift statistics (campaigns/lift.py) against published worked examples, scipy's own
implementations on raw data, and edge cases; no database."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from campaigns.lift import (
    MIN_ENROLLED,
    Outcome,
    compare,
    rate_difference,
    revenue_difference,
    too_small_note,
    wilson_interval,
)


def outcome(revenues: list[float]) -> Outcome:
    """The sufficient statistics of one group, from each enrolment's revenue (0 = did not
    convert)."""
    return Outcome(
        enrolled=len(revenues),
        converted=sum(1 for r in revenues if r),
        revenue=sum((Decimal(str(r)) for r in revenues), Decimal(0)),
        revenue_squares=sum((Decimal(str(r)) ** 2 for r in revenues), Decimal(0)),
    )


def counts(converted: int, enrolled: int) -> Outcome:
    return Outcome(enrolled=enrolled, converted=converted)


# Newcombe (1998), "Two-sided confidence intervals for the single proportion: comparison of
# seven methods", Statistics in Medicine 17:857-872, Table II, method 3 (Wilson's score
# interval without continuity correction).
@pytest.mark.parametrize(
    ("converted", "enrolled", "low", "high"),
    [
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
    ],
)
def test_wilson_interval_matches_newcombes_worked_examples(converted, enrolled, low, high):
    got = wilson_interval(converted, enrolled)

    assert got == pytest.approx((low, high), abs=5e-5)
    ci = stats.binomtest(converted, enrolled).proportion_ci(method="wilson")
    assert got == pytest.approx((ci.low, ci.high), abs=1e-12)


# Newcombe (1998), "Interval estimation for the difference between independent proportions:
# comparison of eleven methods", Statistics in Medicine 17:873-890, Table II, method 10
# (the hybrid score interval), its eight examples (a)-(h).
@pytest.mark.parametrize(
    ("x1", "n1", "x0", "n0", "low", "high"),
    [
        (56, 70, 48, 80, 0.0524, 0.3339),
        (9, 10, 3, 10, 0.1705, 0.8090),
        (6, 7, 2, 7, 0.0582, 0.8062),
        (5, 56, 0, 29, -0.0381, 0.1926),
        (0, 10, 0, 20, -0.1611, 0.2775),
        (0, 10, 0, 10, -0.2775, 0.2775),
        (10, 10, 0, 20, 0.6791, 1.0),
        (10, 10, 0, 10, 0.6075, 1.0),
    ],
)
def test_rate_difference_interval_matches_newcombes_table(x1, n1, x0, n0, low, high):
    got = rate_difference(treatment=counts(x1, n1), control=counts(x0, n0))

    assert got.estimate == pytest.approx(x1 / n1 - x0 / n0)
    assert (got.low, got.high) == pytest.approx((low, high), abs=5e-5)


def test_small_cells_are_tested_with_fishers_exact_test():
    # Fisher's lady tasting tea (The Design of Experiments, 1935, ch. II): all 4 cups with
    # milk first picked, none of the other 4; one table in 70 is as extreme each way, so the
    # two-sided p-value is 2/70.
    got = rate_difference(treatment=counts(4, 4), control=counts(0, 4))

    assert got.test == "fisher"
    assert got.p_value == pytest.approx(2 / 70)


def test_large_cells_are_tested_with_the_pooled_z_test():
    # Newcombe's example (a), by hand: pooled rate 104/150 = 0.69333,
    # SE = sqrt(0.69333 × 0.30667 × (1/70 + 1/80)) = 0.075467, z = 0.2 / 0.075467 = 2.6502,
    # two-sided p = 2 × (1 − Φ(2.6502)) = 0.008045; the same as Pearson's chi-square
    # without continuity correction (χ² = z² = 7.0234).
    got = rate_difference(treatment=counts(56, 70), control=counts(48, 80))

    assert got.test == "z"
    assert got.p_value == pytest.approx(0.008045, abs=5e-7)
    chi2 = stats.chi2_contingency([[56, 14], [48, 32]], correction=False)
    assert got.p_value == pytest.approx(chi2.pvalue, rel=1e-9)


def test_the_test_switches_to_fisher_when_an_expected_cell_is_below_five():
    # 10/10 against 0/10: every expected cell is 10 × 0.5 = 5, the z-test; 10/10 against
    # 0/20: the treatment's expected non-conversions are 10 × 2/3 = 3.3, Fisher's.
    assert rate_difference(treatment=counts(10, 10), control=counts(0, 10)).test == "z"
    assert rate_difference(treatment=counts(10, 10), control=counts(0, 20)).test == "fisher"


def test_revenue_difference_is_welchs_t_over_each_enrolments_revenue():
    # By hand: treatment 0, 0, 10, 20 (mean 7.5, s² = 275/3), control 0, 0, 0, 10 (mean 2.5,
    # s² = 25); SE² = 91.667/4 + 25/4 = 29.167, t = 5 / 5.4006 = 0.9258,
    # Welch-Satterthwaite df = 29.167² / (22.917²/3 + 6.25²/3) = 4.523.
    treated, held = [0, 0, 10, 20], [0, 0, 0, 10]

    got = revenue_difference(treatment=outcome(treated), control=outcome(held))

    assert got.estimate == pytest.approx(5.0)
    assert got.test == "welch"
    reference = stats.ttest_ind(treated, held, equal_var=False)
    assert reference.statistic == pytest.approx(0.9258, abs=5e-5)
    assert reference.df == pytest.approx(4.523, abs=5e-4)
    assert got.p_value == pytest.approx(reference.pvalue, rel=1e-9)
    ci = reference.confidence_interval(0.95)
    assert (got.low, got.high) == pytest.approx((ci.low, ci.high), rel=1e-9)


# scipy warns when a group's revenues are all equal (its moment calculation cancels)
@pytest.mark.filterwarnings("ignore:Precision loss occurred:RuntimeWarning")
@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from([0, 0, 0, 0.01, 9.99, 25, 120.5, 999.95]), min_size=2, max_size=60),
    st.lists(st.sampled_from([0, 0, 0, 0.01, 9.99, 25, 120.5, 999.95]), min_size=2, max_size=60),
)
def test_welch_from_the_sums_is_scipys_welch_on_the_raw_revenues(treated, held):
    got = revenue_difference(treatment=outcome(treated), control=outcome(held))

    assert got.estimate == pytest.approx(np.mean(treated) - np.mean(held), abs=1e-9)
    if len(set(treated)) == 1 and len(set(held)) == 1:  # no spread at all
        assert (got.low, got.high, got.p_value) == (None, None, None)
        return
    reference = stats.ttest_ind(treated, held, equal_var=False)
    ci = reference.confidence_interval(0.95)
    assert got.p_value == pytest.approx(reference.pvalue, rel=1e-6, abs=1e-12)
    assert (got.low, got.high) == pytest.approx((ci.low, ci.high), rel=1e-6, abs=1e-9)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 400), st.integers(0, 400), st.integers(0, 400), st.integers(0, 400))
def test_the_rate_interval_holds_its_estimate_inside_minus_one_to_one(a, b, c, d):
    treated, held = counts(min(a, b), max(a, b)), counts(min(c, d), max(c, d))

    got = rate_difference(treatment=treated, control=held)

    if not treated.enrolled or not held.enrolled:
        assert got.estimate is None
        return
    assert -1 <= got.low <= got.estimate <= got.high <= 1
    assert 0 <= got.p_value <= 1


def test_the_interval_covers_the_true_difference_where_wald_does_not():
    # 2,000 simulated experiments per case, seeded: Newcombe's interval covers the true
    # difference at least 95% of the time (it is conservative at small counts); the Wald
    # interval (d ± 1.96 SE), at 15 per group and rates of 5% and 2%, covers it about 65%.
    rng = np.random.default_rng(7)
    for n, p1, p0 in [(3000, 0.12, 0.08), (20, 0.3, 0.1), (15, 0.05, 0.02)]:
        covered = wald_covered = 0
        for x1, x0 in zip(rng.binomial(n, p1, 2000), rng.binomial(n, p0, 2000), strict=True):
            got = rate_difference(treatment=counts(int(x1), n), control=counts(int(x0), n))
            covered += got.low <= p1 - p0 <= got.high
            q1, q0 = x1 / n, x0 / n
            half = 1.96 * np.sqrt(q1 * (1 - q1) / n + q0 * (1 - q0) / n)
            wald_covered += q1 - q0 - half <= p1 - p0 <= q1 - q0 + half
        assert covered / 2000 >= 0.935, (n, p1, p0)
        if n == 15:
            assert wald_covered / 2000 < 0.75


def test_zero_conversions_in_both_groups():
    got = compare(treatment=counts(0, 500), control=counts(0, 500), names=("treatment", "holdout"))

    assert got.rate.estimate == 0
    assert got.rate.low < 0 < got.rate.high  # no conversions is not "no difference for sure"
    assert (got.rate.test, got.rate.p_value) == ("fisher", 1.0)
    assert got.relative is None  # the holdout did not convert: no relative lift
    assert got.revenue.estimate == 0
    assert (got.revenue.low, got.revenue.high, got.revenue.p_value) == (None, None, None)
    assert got.note == (
        "Too small to call: at the pooled conversion rate, 0.0 conversions are expected among "
        "the treatment (at least 5 are needed)."
    )


def test_everybody_converted():
    treated = Outcome(
        enrolled=40, converted=40, revenue=Decimal(800), revenue_squares=Decimal(16000)
    )
    held = Outcome(enrolled=40, converted=40, revenue=Decimal(400), revenue_squares=Decimal(4000))

    got = compare(treatment=treated, control=held, names=("treatment", "holdout"))

    assert (got.rate.estimate, got.rate.p_value, got.relative) == (0, 1.0, 0)
    assert got.rate.low == pytest.approx(-got.rate.high)
    # every treatment enrolment brought 20, every holdout one 10: no spread to test against
    assert got.revenue.estimate == 10
    assert got.revenue.p_value is None
    assert "non-conversions are expected among the treatment" in got.note


def test_empty_groups_give_no_figures_and_say_so():
    got = compare(treatment=Outcome(), control=Outcome(), names=("treatment", "holdout"))

    assert got.rate == got.revenue
    assert (got.rate.estimate, got.rate.low, got.rate.p_value, got.relative) == (None,) * 4
    assert got.note == "No treatment enrolments yet: nothing to compare."


def test_one_group_empty():
    got = compare(treatment=counts(30, 200), control=Outcome(), names=("treatment", "holdout"))

    assert (got.rate.estimate, got.revenue.estimate, got.relative) == (None, None, None)
    assert got.note == "No holdout enrolments yet: nothing to compare."


def test_one_enrolment_per_group_has_a_revenue_difference_but_no_interval():
    got = revenue_difference(treatment=outcome([30]), control=outcome([0]))

    assert got.estimate == 30
    assert (got.low, got.high, got.p_value, got.test) == (None, None, None, None)


def test_too_small_to_call():
    enough = counts(60, 400)
    assert too_small_note(treatment=enough, control=counts(50, 400)) is None
    assert too_small_note(treatment=enough, control=counts(2, MIN_ENROLLED - 1)) == (
        "Too small to call: 29 control enrolments (at least 30 per group are needed)."
    )
    # 3 of 400 and 1 of 400: the pooled rate is 0.5%, 2.0 conversions expected per group
    assert too_small_note(treatment=counts(3, 400), control=counts(1, 400), names=("b", "a")) == (
        "Too small to call: at the pooled conversion rate, 2.0 conversions are expected "
        "among the b (at least 5 are needed)."
    )


def test_outcomes_add_up_and_their_variance_is_the_sample_variance():
    mailed, unmailed = [0, 12.5, 0, 40], [0, 0, 99.99]

    total = outcome(mailed) + outcome(unmailed)

    assert total == outcome(mailed + unmailed)
    assert float(total.revenue_variance) == pytest.approx(np.var(mailed + unmailed, ddof=1))
    assert float(total.revenue_mean) == pytest.approx(np.mean(mailed + unmailed))
    assert Outcome(enrolled=1).revenue_variance is None


def test_relative_lift_is_the_difference_over_the_controls_rate():
    got = compare(treatment=counts(120, 1000), control=counts(80, 1000))

    assert got.relative == pytest.approx(0.5)
    assert got.confidence == 0.95
