"""Surveys API: list, read, create and update surveys (wording in English and Japanese),
their answers (filter by score and category) and their NPS / CSAT summary per period."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from campaigns.models import Survey, SurveyAnswer
from campaigns.selectors import (
    SURVEY_CATEGORIES,
    SURVEY_PERIODS,
    survey_answers,
    survey_summary,
)
from crm.api.pagination import NewestFirstCursorPagination
from crm.api.schema import error_responses
from crm.errors import KeepersError

CATEGORIES = [c for categories in SURVEY_CATEGORIES.values() for c in categories]


class SurveySerializer(serializers.ModelSerializer):
    kind = serializers.ChoiceField(
        choices=Survey.Kind.choices, help_text="The scale: csat (1–5) or nps (0–10)"
    )
    answers = serializers.IntegerField(source="answers.count", read_only=True)

    class Meta:
        model = Survey
        fields = [
            "id",
            "name",
            "kind",
            "question",
            "question_ja",
            "comment_prompt",
            "comment_prompt_ja",
            "thanks",
            "thanks_ja",
            "active",
            "answers",
            "created_at",
        ]
        read_only_fields = ["created_at"]

    def validate_kind(self, value: str) -> str:
        survey = self.instance
        if survey is not None and value != survey.kind and survey.answers.exists():
            raise serializers.ValidationError(
                "The survey has answers on its scale; the scale cannot change."
            )
        return value


class AnswerSerializer(serializers.ModelSerializer):
    survey = serializers.CharField(source="survey.name", read_only=True)
    email = serializers.CharField(source="contact.email", read_only=True)

    class Meta:
        model = SurveyAnswer
        fields = [
            "id",
            "survey",
            "contact_id",
            "email",
            "score",
            "category",
            "comment",
            "ref",
            "answered_at",
            "updated_at",
        ]


class FiguresSerializer(serializers.Serializer):
    answers = serializers.IntegerField()
    promoter = serializers.IntegerField(required=False)
    passive = serializers.IntegerField(required=False)
    detractor = serializers.IntegerField(required=False)
    satisfied = serializers.IntegerField(required=False)
    neutral = serializers.IntegerField(required=False)
    unsatisfied = serializers.IntegerField(required=False)
    promoter_pct = serializers.FloatField(required=False, allow_null=True)
    passive_pct = serializers.FloatField(required=False, allow_null=True)
    detractor_pct = serializers.FloatField(required=False, allow_null=True)
    satisfied_pct = serializers.FloatField(required=False, allow_null=True)
    neutral_pct = serializers.FloatField(required=False, allow_null=True)
    unsatisfied_pct = serializers.FloatField(required=False, allow_null=True)
    nps = serializers.IntegerField(
        required=False, allow_null=True, help_text="NPS surveys: % promoters − % detractors"
    )
    csat = serializers.FloatField(
        required=False, allow_null=True, help_text="CSAT surveys: % of 4–5 answers"
    )


class PeriodSerializer(FiguresSerializer):
    start = serializers.DateField(help_text="The period's first day (shop time)")


class SummarySerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=Survey.Kind.choices)
    period = serializers.ChoiceField(choices=list(SURVEY_PERIODS))
    total = FiguresSerializer()
    periods = PeriodSerializer(many=True, help_text="Newest first; periods with answers only")


NAME_TAKEN = error_responses(400, d400="Invalid input, or another survey has this name")


@extend_schema_view(
    create=extend_schema(responses={201: SurveySerializer, **NAME_TAKEN}),
    partial_update=extend_schema(responses={200: SurveySerializer, **NAME_TAKEN}),
)
class SurveyViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    """CSAT (1–5) and NPS (0–10) surveys, put into emails with {% survey_row "NAME" %}.
    Contacts see the `_ja` wording when their locale is Japanese (the English where it
    is blank)."""

    serializer_class = SurveySerializer
    queryset = Survey.objects.all()
    filterset_fields = ["kind", "active"]
    http_method_names = ["get", "post", "patch", "head", "options"]

    @extend_schema(
        parameters=[
            OpenApiParameter("score", OpenApiTypes.INT, description="Only this score (0–10)"),
            OpenApiParameter("category", OpenApiTypes.STR, enum=CATEGORIES),
        ],
        responses={200: AnswerSerializer(many=True)},
    )
    @action(detail=True, methods=["get"], filterset_fields=[])
    def answers(self, request: Request, pk=None) -> Response:
        """The survey's answers, newest first (cursor pagination): an answer's score is
        its newest, given first at `answered_at`."""
        answers = survey_answers(survey=self.get_object())
        score = request.query_params.get("score")
        if score is not None:
            if not (score.isdigit() and int(score) <= 10):
                raise KeepersError("score must be a whole number from 0 to 10.", field="score")
            answers = answers.filter(score=int(score))
        category = request.query_params.get("category")
        if category is not None:
            if category not in CATEGORIES:
                raise KeepersError(
                    f"category must be one of {', '.join(CATEGORIES)}.", field="category"
                )
            answers = answers.filter(category=category)
        paginator = NewestFirstCursorPagination()
        page = paginator.paginate_queryset(answers, request, view=self)
        return paginator.get_paginated_response(AnswerSerializer(page, many=True).data)

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "period",
                OpenApiTypes.STR,
                enum=list(SURVEY_PERIODS),
                description="month (default) or week, in the shop's time zone",
            )
        ],
        responses={200: SummarySerializer},
    )
    @action(detail=True, methods=["get"], filterset_fields=[])
    def summary(self, request: Request, pk=None) -> Response:
        """NPS (promoters, passives, detractors) or CSAT (% of 4–5) over all answers and
        per period; an answer counts in the period it was first given."""
        period = request.query_params.get("period", "month")
        if period not in SURVEY_PERIODS:
            raise KeepersError(
                f"period must be one of {', '.join(SURVEY_PERIODS)}.", field="period"
            )
        return Response(
            SummarySerializer(survey_summary(survey=self.get_object(), period=period)).data
        )
