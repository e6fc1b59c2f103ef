"""The shape of a campaign's stats (`GET /api/v1/campaigns/{id}/stats/`), as
campaigns.selectors.campaign_stats builds it; the view answers through it, so the OpenAPI
schema is what the API sends. Rates and rate differences are percentages (points); money
is a decimal string in cents, in the base currency (`currency`)."""

from __future__ import annotations

from rest_framework import serializers


def _money(**kwargs) -> serializers.DecimalField:
    return serializers.DecimalField(max_digits=20, decimal_places=2, **kwargs)


def _p_value() -> serializers.FloatField:
    return serializers.FloatField(
        allow_null=True,
        help_text="Two-sided p-value of 'no difference' (4 significant digits); null when "
        "the data do not define it",
    )


class LiftGroupSerializer(serializers.Serializer):
    enrolled = serializers.IntegerField()
    conversions = serializers.IntegerField(help_text="Enrolments with at least one conversion")
    conversion_rate = serializers.FloatField(help_text="conversions / enrolled, %")
    revenue = _money(help_text="Revenue of their conversions, base currency")
    revenue_per_contact = _money(help_text="revenue / enrolled, base currency")


class LiftRateSerializer(serializers.Serializer):
    difference = serializers.FloatField(
        allow_null=True, help_text="Conversion rate, treatment minus control, in points"
    )
    low = serializers.FloatField(
        allow_null=True, help_text="95% interval, lower bound (Newcombe's hybrid score)"
    )
    high = serializers.FloatField(allow_null=True, help_text="95% interval, upper bound")
    p_value = _p_value()
    test = serializers.ChoiceField(
        choices=["fisher", "z"],
        allow_null=True,
        help_text="Fisher's exact test when an expected cell is below 5, else the pooled "
        "two-proportion z-test",
    )
    relative_lift = serializers.FloatField(
        allow_null=True,
        help_text="difference / control rate, %; null when the control did not convert",
    )


class LiftRevenueSerializer(serializers.Serializer):
    difference = _money(allow_null=True, help_text="Revenue per contact, treatment minus control")
    low = _money(allow_null=True, help_text="95% interval, lower bound (Welch's t)")
    high = _money(allow_null=True, help_text="95% interval, upper bound")
    p_value = _p_value()
    test = serializers.ChoiceField(
        choices=["welch"],
        allow_null=True,
        help_text="Welch's t over each enrolment's revenue, zeros included; null when a "
        "group has fewer than 2 enrolments or no revenue varies",
    )


class LiftSerializer(serializers.Serializer):
    treatment = LiftGroupSerializer()
    holdout = LiftGroupSerializer()
    conversion_rate = LiftRateSerializer()
    revenue_per_contact = LiftRevenueSerializer()
    confidence = serializers.FloatField(help_text="The intervals' confidence level (0.95)")
    note = serializers.CharField(
        allow_null=True,
        help_text="Why the sample is too small to call (an empty group, fewer than 30 "
        "enrolments in a group, or fewer than 5 conversions or non-conversions expected in "
        "a group at the pooled rate); null when it is not",
    )


class SplitComparisonSerializer(serializers.Serializer):
    conversion_rate = LiftRateSerializer()
    revenue_per_contact = LiftRevenueSerializer()
    confidence = serializers.FloatField()
    note = serializers.CharField(allow_null=True)


class SplitStatsSerializer(serializers.Serializer):
    step = serializers.CharField(help_text="The random_split step's id")
    paths = serializers.DictField(
        child=LiftGroupSerializer(), help_text="Per path name: its enrolments and conversions"
    )
    control = serializers.CharField(
        required=False, help_text="The path every other one is compared with (the first)"
    )
    comparisons = serializers.DictField(
        child=SplitComparisonSerializer(),
        help_text="Per other path: its difference from the control, with interval and p-value",
    )


class CampaignStatsSerializer(serializers.Serializer):
    treatment = LiftGroupSerializer(help_text="Every treatment enrolment (as in `itt`)")
    holdout = LiftGroupSerializer(help_text="Every holdout enrolment")
    lift = serializers.FloatField(
        allow_null=True,
        help_text="Conversion rate, treatment minus holdout, in points; null without both",
    )
    currency = serializers.CharField(
        help_text="The base currency every amount is in; conversions in other currencies "
        "count as conversions and add no revenue"
    )
    itt = LiftSerializer(
        help_text="Intent-to-treat: every treatment enrolment, mailed or not, against every "
        "holdout enrolment"
    )
    sent_only = LiftSerializer(
        help_text="Treatment enrolments with at least one sent message against every "
        "holdout enrolment (flattering: who could be mailed may buy more anyway)"
    )
    messages = serializers.DictField(
        help_text="Counts by status and engagement, and `rates` (% of sent)"
    )
    enrollments_by_status = serializers.DictField(child=serializers.IntegerField())
    splits = SplitStatsSerializer(many=True, help_text="Each random_split step's A/B results")
    steps = serializers.DictField(
        child=serializers.DictField(),
        help_text="Per step id: waiting, passed, sent, engagement, converted",
    )
