"""Staff screens for surveys: the question, scale and follow-up in each language, the NPS
or CSAT summary per period on the survey's page, and its answers (filter by survey, score
and category; download what the list shows as CSV)."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.db.models import Count
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.text import Truncator

from campaigns.models import Survey, SurveyAnswer
from campaigns.selectors import SURVEY_PERIODS, survey_answers, survey_summary
from crm.admin_access import admin_permission
from crm.csv_response import csv_response

ANSWER_CSV_HEADER = [
    "answered_at",
    "updated_at",
    "survey",
    "score",
    "category",
    "contact_id",
    "email",
    "comment",
    "ref",
]


@admin.register(Survey)
class SurveyAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "question", "active", "answer_count", "answers_link"]
    list_filter = ["kind", "active"]
    search_fields = ["name", "question", "question_ja"]
    fieldsets = [
        (None, {"fields": ["name", "kind", "active"]}),
        ("English", {"fields": ["question", "comment_prompt", "thanks"]}),
        (
            "Japanese",
            {
                "fields": ["question_ja", "comment_prompt_ja", "thanks_ja"],
                "description": "Shown to contacts whose locale is Japanese; left blank, "
                "they see the English.",
            },
        ),
    ]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_answers=Count("answers"))

    def get_readonly_fields(self, request, obj=None):
        # the answers' categories were given on this scale
        return ["kind"] if obj is not None and obj.answers.exists() else []

    def has_delete_permission(self, request, obj=None):
        # deleting would take its answers with it: switch it off instead
        if obj is not None and obj.answers.exists():
            return False
        return super().has_delete_permission(request, obj)

    @admin.display(description="answers", ordering="_answers")
    def answer_count(self, obj: Survey) -> int:
        return obj._answers

    @admin.display(description="")
    def answers_link(self, obj: Survey) -> str:
        url = reverse("admin:campaigns_surveyanswer_changelist")
        return format_html('<a href="{}?survey__id__exact={}">Answers</a>', url, obj.pk)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        survey = self.get_object(request, object_id)
        if survey is not None:
            period = request.GET.get("period", "month")
            period = period if period in SURVEY_PERIODS else "month"
            answers = reverse("admin:campaigns_surveyanswer_changelist")
            extra_context = {
                **(extra_context or {}),
                "summary": survey_summary(survey=survey, period=period),
                "periods": list(SURVEY_PERIODS),
                "answers_url": f"{answers}?survey__id__exact={survey.pk}",
                "csv_url": f"{reverse('admin:campaigns_surveyanswer_export')}"
                f"?survey__id__exact={survey.pk}",
            }
        return super().change_view(request, object_id, form_url, extra_context)


class AnswerCategoryFilter(admin.SimpleListFilter):
    title = "category"
    parameter_name = "category"

    def lookups(self, request, model_admin):
        return [
            (c, c)
            for c in ("promoter", "passive", "detractor", "satisfied", "neutral", "unsatisfied")
        ]

    def queryset(self, request, queryset):
        return queryset.filter(category=self.value()) if self.value() else queryset


@admin.register(SurveyAnswer)
class SurveyAnswerAdmin(admin.ModelAdmin):
    """Customers' answers: read only (an answer is what the customer said, and its
    "Survey Answered" event carries the same score)."""

    list_display = ["answered_at", "survey", "score", "category", "contact", "short_comment"]
    list_filter = ["survey", "score", AnswerCategoryFilter, "answered_at"]
    search_fields = ["contact__email", "comment", "ref"]
    list_select_related = ["survey", "contact"]
    date_hierarchy = "answered_at"
    ordering = ["-answered_at", "-id"]
    show_full_result_count = False

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in SurveyAnswer._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="comment")
    def short_comment(self, obj: SurveyAnswer) -> str:
        return Truncator(obj.comment).chars(80)

    def get_urls(self):
        return [
            path(
                "export.csv",
                self.admin_site.admin_view(self.export_view),
                name="campaigns_surveyanswer_export",
            ),
            *super().get_urls(),
        ]

    def changelist_view(self, request, extra_context=None):
        query = request.GET.urlencode()
        extra_context = {
            **(extra_context or {}),
            "csv_url": reverse("admin:campaigns_surveyanswer_export")
            + (f"?{query}" if query else ""),
        }
        return super().changelist_view(request, extra_context)

    @admin_permission("campaigns.view_surveyanswer", "crm.view_contact")
    def export_view(self, request: HttpRequest) -> HttpResponse:
        """The answers the list shows with the same filters, as CSV (every cell through
        crm.csv_response's formula guard: a comment is the customer's text)."""
        try:
            filtered = self.get_changelist_instance(request).get_queryset(request)
        except IncorrectLookupParameters:
            return HttpResponseRedirect(reverse("admin:campaigns_surveyanswer_changelist"))
        answers = survey_answers().filter(pk__in=filtered.values("pk"))
        return csv_response(
            filename="survey-answers.csv",
            header=ANSWER_CSV_HEADER,
            rows=(
                [
                    answer.answered_at.isoformat(),
                    answer.updated_at.isoformat(),
                    answer.survey.name,
                    answer.score,
                    answer.category,
                    answer.contact_id,
                    answer.contact.email,
                    answer.comment,
                    answer.ref,
                ]
                for answer in answers.iterator(chunk_size=2000)
            ),
        )
