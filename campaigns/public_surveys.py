"""The public survey page, /s/<token>/, reached from a score in an email's answer row.

Opening the link is the answer (one click): the score is recorded and the page thanks
the contact and asks whether they want to add anything — a comment, or a different
score. Posting the form (CSRF-protected) saves it and thanks them. A tampered or expired
link gets the friendly bad-link page. Same standards as the preference center: no
login, mobile-first, accessible, in the contact's language (English or Japanese).

Included at the site root by config/urls.py."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path
from django.utils import translation
from django.views.decorators.http import require_http_methods

from campaigns.services.surveys import (
    COMMENT_MAX_LENGTH,
    survey_answer,
    survey_limits_take,
    survey_link_read,
    survey_scale,
)
from crm.client_ip import client_ip
from crm.errors import KeepersError
from crm.limits import RateLimited
from crm.links import contact_language, private_page
from crm.models import Contact


def _language(contact: Contact | None) -> str:
    """The contact's language when we know it, else the one the browser asked for."""
    if contact is not None and contact.locale:
        return contact_language(contact)
    return "ja" if (translation.get_language() or "").startswith("ja") else "en"


def _page(
    request: HttpRequest, template: str, context: dict, *, language: str, status: int = 200
) -> HttpResponse:
    with translation.override(language):
        response = render(
            request,
            f"campaigns/public/{template}.html",
            {
                "LANGUAGE_CODE": language,
                "shop_name": settings.KEEPERS_SHOP_NAME,
                "shop_url": settings.KEEPERS_SHOP_URL,
                **context,
            },
            status=status,
        )
    response.headers["Content-Language"] = language
    return response


@private_page
@require_http_methods(["GET", "HEAD", "POST"])
def survey_page(request: HttpRequest, token: str) -> HttpResponse:
    link = survey_link_read(token)
    if link is None:
        return _page(request, "bad_link", {}, language=_language(None), status=404)
    language = _language(link.contact)
    context = {
        "survey": link.survey,
        # the survey's wording in the contact's language (English where not translated)
        "question": link.survey.text_in("question", language),
        "comment_prompt": link.survey.text_in("comment_prompt", language),
        "thanks": link.survey.text_in("thanks", language),
        "contact": link.contact,
        "scale": list(survey_scale(link.survey.kind)),
        "comment_max": COMMENT_MAX_LENGTH,
    }
    if request.method == "HEAD":  # link checkers and prefetchers: answer nothing
        return _page(request, "survey", {**context, "selected": str(link.score)}, language=language)
    with translation.override(language):  # the service's error messages
        try:
            survey_limits_take(contact=link.contact, ip=client_ip(request))
        except RateLimited as limited:
            response = _page(
                request,
                "too_many",
                {"minutes": limited.retry_minutes},
                language=language,
                status=429,
            )
            response.headers["Retry-After"] = str(limited.retry_after)
            return response
        try:
            if request.method == "POST":
                answer = survey_answer(
                    token=token,
                    score=request.POST.get("score"),
                    comment=request.POST.get("comment", ""),
                )
                return _page(
                    request, "survey_thanks", {**context, "answer": answer}, language=language
                )
            answer = survey_answer(token=token)
        except KeepersError as failure:
            return _page(
                request,
                "survey",
                {
                    **context,
                    "error": failure.message,
                    "error_field": failure.field,
                    "selected": str(request.POST.get("score", link.score)),
                    "comment": request.POST.get("comment", ""),
                },
                language=language,
                status=failure.status_code,
            )
    return _page(
        request,
        "survey",
        {**context, "answer": answer, "selected": str(answer.score), "comment": answer.comment},
        language=language,
    )


urlpatterns = [path("s/<str:token>/", survey_page, name="survey")]
