"""Metrics API: the summary (CRR, churn, NRR, CAC, CLV:CAC, CSAT, NPS, S/E/N, revenue),
cohort retention and the lifecycle funnel. The figures and their definitions live in
crm.services.metrics; these views parse the query string, call it and shape the answer.
Money is a decimal string in the base currency; rates are percentages (null when their
denominator is zero)."""

from __future__ import annotations

from datetime import date

from django.urls import path
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from crm.errors import KeepersError
from crm.services import metrics
from crm.services.parsing import check_year, parse_int


def _money(**kwargs) -> serializers.DecimalField:
    return serializers.DecimalField(max_digits=20, decimal_places=2, allow_null=True, **kwargs)


def _rate(**kwargs) -> serializers.FloatField:
    return serializers.FloatField(allow_null=True, **kwargs)


# --- output shapes (they also document the API) ---------------------------------------------


class MetricsPeriodSerializer(serializers.Serializer):
    start = serializers.DateField()
    end = serializers.DateField()
    previous_start = serializers.DateField(help_text="Start of the preceding period (NRR)")
    previous_end = serializers.DateField()


class MetricsFiltersSerializer(serializers.Serializer):
    channel = serializers.CharField(allow_null=True)
    segment = serializers.IntegerField(allow_null=True)
    stage = serializers.CharField(allow_null=True)


class MetricsCustomersSerializer(serializers.Serializer):
    start = serializers.IntegerField(help_text="S: customers at the start of the period")
    end = serializers.IntegerField(help_text="E: customers at the end of the period")
    new = serializers.IntegerField(help_text="N: customers whose first order is in the period")
    to_date = serializers.IntegerField(help_text="Contacts with an order on or before the end")
    repeat = serializers.IntegerField(help_text="Of those, with two or more orders")


class MetricsNrrSerializer(serializers.Serializer):
    rate = _rate(help_text="NRR, %")
    revenue = _money(help_text="Net revenue in the period from the S customers")
    previous_revenue = _money(help_text="Their net revenue in the preceding period")


class MetricsRevenueSerializer(serializers.Serializer):
    orders = serializers.IntegerField(help_text="Orders in the period (all currencies)")
    gross = _money()
    refunded = _money()
    net = _money()


class MetricsChannelSerializer(serializers.Serializer):
    channel = serializers.CharField(allow_blank=True, help_text="Acquisition channel")
    customers = MetricsCustomersSerializer()
    retention_rate = _rate()
    churn_rate = _rate()
    revenue = MetricsRevenueSerializer()
    spend = _money()
    cac = _money()
    average_clv = _money()
    clv_cac = _rate(help_text="Average historic CLV ÷ CAC")


class MetricsCsatSerializer(serializers.Serializer):
    score = _rate(help_text="% of answers 4–5")
    answers = serializers.IntegerField()
    satisfied = serializers.IntegerField()


class MetricsNpsSerializer(serializers.Serializer):
    score = _rate(help_text="% promoters (9–10) − % detractors (0–6)")
    answers = serializers.IntegerField()
    promoters = serializers.IntegerField()
    passives = serializers.IntegerField()
    detractors = serializers.IntegerField()


class MetricsSurveysSerializer(serializers.Serializer):
    csat = MetricsCsatSerializer()
    nps = MetricsNpsSerializer()


class MetricsSummarySerializer(serializers.Serializer):
    period = MetricsPeriodSerializer()
    filters = MetricsFiltersSerializer()
    active_window_days = serializers.IntegerField()
    currency = serializers.CharField()
    customers = MetricsCustomersSerializer()
    retention_rate = _rate(help_text="CRR = (E − N) / S × 100")
    churn_rate = _rate(help_text="(S − (E − N)) / S × 100 = 100 − CRR")
    net_revenue_retention = MetricsNrrSerializer()
    revenue = MetricsRevenueSerializer()
    spend = _money(help_text="Marketing and sales spend in the period (null with a segment)")
    cac = _money(help_text="Spend ÷ N")
    average_clv = _money(help_text="Average historic CLV (net revenue to date) of customers")
    clv_cac = _rate()
    surveys = MetricsSurveysSerializer()
    channels = MetricsChannelSerializer(many=True)


class MetricsCohortSerializer(serializers.Serializer):
    cohort = serializers.DateField(help_text="First day of the month of the first orders")
    customers = serializers.IntegerField()
    active = serializers.ListField(
        child=serializers.IntegerField(), help_text="Customers ordering N months after"
    )
    percent = serializers.ListField(child=_rate(), help_text="active ÷ customers × 100")
    revenue = _money(help_text="The cohort's net revenue up to the end")
    revenue_by_month = serializers.ListField(child=_money())
    average_clv = _money()


class MetricsCohortsSerializer(serializers.Serializer):
    months = serializers.IntegerField()
    end = serializers.DateField()
    currency = serializers.CharField()
    cohorts = MetricsCohortSerializer(many=True)


class MetricsStageSerializer(serializers.Serializer):
    stage = serializers.CharField()
    label = serializers.CharField()
    contacts = serializers.IntegerField()


class MetricsTransitionSerializer(serializers.Serializer):
    from_stage = serializers.CharField()
    to_stage = serializers.CharField()
    contacts = serializers.IntegerField()
    rate = _rate(help_text="Moves ÷ contacts in from_stage at the month's opening × 100")


class MetricsFunnelMonthSerializer(serializers.Serializer):
    month = serializers.DateField()
    start = serializers.DateField()
    end = serializers.DateField()
    stages = serializers.DictField(
        child=serializers.IntegerField(), help_text="Contacts per stage at the month's close"
    )
    new_contacts = serializers.IntegerField()
    transitions = MetricsTransitionSerializer(many=True)


class MetricsReachSerializer(serializers.Serializer):
    visitors = serializers.IntegerField()
    page_views = serializers.IntegerField()
    single_page_visitors = serializers.IntegerField()
    bounce_rate = _rate()


class MetricsAcquisitionSerializer(serializers.Serializer):
    new_subscribers = serializers.IntegerField()
    visitors = serializers.IntegerField()
    signup_rate = _rate()


class MetricsConversionSerializer(serializers.Serializer):
    new_subscribers = serializers.IntegerField()
    first_orders = serializers.IntegerField()
    rate = _rate()
    median_days = serializers.FloatField(allow_null=True)


class MetricsRetentionSerializer(serializers.Serializer):
    retention_rate = _rate()
    churn_rate = _rate()
    customers = serializers.IntegerField()
    repeat_customers = serializers.IntegerField()
    repeat_purchase_rate = _rate()


class MetricsLoyaltySerializer(serializers.Serializer):
    nps = _rate()
    nps_answers = serializers.IntegerField()
    average_clv = _money()
    currency = serializers.CharField()
    referrals = serializers.IntegerField(allow_null=True)
    referral_rate = _rate()


class MetricsFunnelPeriodSerializer(serializers.Serializer):
    start = serializers.DateField()
    end = serializers.DateField()


class MetricsFunnelSerializer(serializers.Serializer):
    period = MetricsFunnelPeriodSerializer()
    stages = MetricsStageSerializer(many=True)
    months = MetricsFunnelMonthSerializer(many=True)
    reach = MetricsReachSerializer()
    acquisition = MetricsAcquisitionSerializer()
    conversion = MetricsConversionSerializer()
    retention = MetricsRetentionSerializer()
    loyalty = MetricsLoyaltySerializer()


# --- input ----------------------------------------------------------------------------------


def _date(request: Request, name: str) -> date:
    value = _optional_date(request, name)
    if value is None:
        raise KeepersError(
            f"{name} is required (a date, for example 2026-01-31).", field=name, code="required"
        )
    return value


def _optional_date(request: Request, name: str) -> date | None:
    value = request.query_params.get(name, "").strip()
    if not value:
        return None
    try:
        parsed = date.fromisoformat(value)
    except ValueError:
        raise KeepersError(
            f"'{value}' is not a date (YYYY-MM-DD, for example 2026-01-31).", field=name
        ) from None
    check_year(parsed, name)
    return parsed


START = OpenApiParameter("start", date, required=True, description="First day, YYYY-MM-DD")
END = OpenApiParameter("end", date, required=True, description="Last day, YYYY-MM-DD")


class MetricsSummary(APIView):
    @extend_schema(
        parameters=[
            START,
            END,
            OpenApiParameter("channel", str, description="Only this acquisition channel"),
            OpenApiParameter("segment", int, description="Only this segment's current members"),
            OpenApiParameter("stage", str, description="Only contacts now in this stage"),
        ],
        responses=MetricsSummarySerializer,
    )
    def get(self, request: Request) -> Response:
        """Lifecycle metrics for a period of whole days (shop time).

        A *customer at date d* has an order on or before d and their last order within
        the active window (KEEPERS_ACTIVE_WINDOW_DAYS, 365) before d. S = customers at the
        start, E = at the end, N = customers whose first order is in the period.
        CRR = (E − N) / S × 100; churn = (S − (E − N)) / S × 100. NRR = net revenue in the
        period from the S customers ÷ theirs in the preceding period of equal length × 100.
        CAC = spend in the period ÷ N, overall and per channel. CSAT = % of answers 4–5;
        NPS = % promoters (9–10) − % detractors (0–6). Historic CLV = net revenue to date.
        Revenue, spend, CAC and CLV count the base currency only; customers, all orders."""
        start, end = _date(request, "start"), _date(request, "end")
        segment = request.query_params.get("segment", "").strip()
        result = metrics.metrics_summary(
            start,
            end,
            channel=request.query_params.get("channel") or None,
            segment_id=parse_int(segment, "segment", minimum=1) if segment else None,
            stage=request.query_params.get("stage") or None,
        )
        return Response(MetricsSummarySerializer(result).data)


class MetricsCohorts(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("months", int, description="How many monthly cohorts (24)"),
            OpenApiParameter("end", date, description="Last day counted (today)"),
        ],
        responses=MetricsCohortsSerializer,
    )
    def get(self, request: Request) -> Response:
        """Monthly acquisition cohorts (month of the first order) × months since the first
        order: customers ordering in each month, as counts and percentages of the cohort,
        and the cohort's net revenue (base currency) per month and in total."""
        months = request.query_params.get("months", "").strip()
        result = metrics.cohorts(
            parse_int(months, "months", minimum=1) if months else 24,
            end=_optional_date(request, "end"),
        )
        return Response(MetricsCohortsSerializer(result).data)


class MetricsFunnel(APIView):
    @extend_schema(parameters=[START, END], responses=MetricsFunnelSerializer)
    def get(self, request: Request) -> Response:
        """The lifecycle funnel: contacts per stage today and per month, the monthly rates
        of moving between stages, and the measures of each stage: reach (visitors, page
        views, bounce rate), acquisition (signup rate), conversion (subscriber → first
        order rate and median days), retention (CRR, churn, repeat-purchase rate) and
        loyalty (NPS, average historic CLV, referral rate)."""
        start, end = _date(request, "start"), _date(request, "end")
        return Response(MetricsFunnelSerializer(metrics.funnel(start, end)).data)


urlpatterns = [
    path("metrics/summary/", MetricsSummary.as_view(), name="metrics-summary"),
    path("metrics/cohorts/", MetricsCohorts.as_view(), name="metrics-cohorts"),
    path("metrics/funnel/", MetricsFunnel.as_view(), name="metrics-funnel"),
]
