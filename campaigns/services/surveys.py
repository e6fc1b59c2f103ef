"""CSAT and NPS answers from one-click email links.

Each score in an email's answer row ({% survey_row %}) is its own signed link carrying
(survey, contact, ref, score); `ref` names the send the link came from, so one contact
answers each send once. Opening a link records the score; opening another score's link
from the same email changes it; the page then takes an optional comment.

Every recorded or changed score is also a crm event, "Survey Answered" (survey, kind,
score, category, ref), so answers drive segments and campaign triggers like any other
behaviour. A re-click with the same score changes nothing and records nothing; a changed
score records a new event, so the contact's latest event always says their current
answer (campaigns that react to it wait a little and step aside when a newer answer
arrives — see campaigns.playbooks)."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.core import signing
from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _

from campaigns.models import Survey, SurveyAnswer
from crm import clock
from crm.errors import KeepersError, NotFound
from crm.limits import limit_take
from crm.models import Contact
from crm.services.contacts import Identity
from crm.services.events import SURVEY_ANSWERED, SURVEY_SOURCE, EventIn, events_ingest

SURVEY_SALT = "keepers.survey"  # distinct from the preference and unsubscribe links
SURVEY_MAX_AGE = 60 * 86400
SURVEY_EVENT = SURVEY_ANSWERED  # crm reads these events for CSAT and NPS
COMMENT_MAX_LENGTH = 5000

SCALES = {Survey.Kind.CSAT: (1, 5), Survey.Kind.NPS: (0, 10)}


def survey_scale(kind: str) -> range:
    low, high = SCALES[Survey.Kind(kind)]
    return range(low, high + 1)


def survey_category(kind: str, score: int) -> str:
    """CSAT: 4–5 satisfied, 3 neutral, 1–2 unsatisfied. NPS: 9–10 promoter, 7–8 passive,
    0–6 detractor. Raises KeepersError for a score outside the kind's scale."""
    _score_check(kind, score)
    if kind == Survey.Kind.CSAT:
        return "satisfied" if score >= 4 else "neutral" if score == 3 else "unsatisfied"
    return "promoter" if score >= 9 else "passive" if score >= 7 else "detractor"


def _score_check(kind: str, score: object) -> int:
    """The score as an int, or KeepersError naming the kind's scale."""
    low, high = SCALES[Survey.Kind(kind)]
    value = None
    if isinstance(score, int) and not isinstance(score, bool):
        value = score
    elif isinstance(score, str) and score.strip().lstrip("-").isdigit():
        value = int(score)
    if value is None or not low <= value <= high:
        raise KeepersError(
            _("Choose a score from %(low)d to %(high)d.") % {"low": low, "high": high},
            field="score",
            code="out_of_range",
        )
    return value


def survey_link(survey: Survey, contact: Contact, score: int, ref: str) -> str:
    """The public URL that answers `survey` with `score` for `contact`, signed and valid
    for SURVEY_MAX_AGE."""
    score = _score_check(survey.kind, score)
    token = signing.dumps(
        [survey.pk, contact.pk, str(ref)[:100], score], salt=SURVEY_SALT, compress=True
    )
    return f"{settings.KEEPERS_PUBLIC_URL.rstrip('/')}/s/{token}/"


def survey_limits_take(*, contact: Contact, ip: str | None) -> None:
    """Count an answer (a click or the page's form) against the limits, per client address
    (KEEPERS_RATE_SURVEY_IP) and per contact (KEEPERS_RATE_SURVEY_CONTACT): RateLimited
    (429) when over, and the caller records nothing."""
    limit_take(scope="survey:ip", key=ip, rate=settings.KEEPERS_RATE_SURVEY_IP)
    limit_take(
        scope="survey:contact", key=str(contact.pk), rate=settings.KEEPERS_RATE_SURVEY_CONTACT
    )


@dataclass(frozen=True)
class SurveyLink:
    survey: Survey
    contact: Contact
    ref: str
    score: int


def survey_link_read(token: str) -> SurveyLink | None:
    """What a survey link says, or None when it is tampered with, expired, or its survey
    or contact no longer exists."""
    try:
        survey_id, contact_id, ref, score = signing.loads(
            token, salt=SURVEY_SALT, max_age=SURVEY_MAX_AGE
        )
    except (signing.BadSignature, ValueError, TypeError):
        return None
    survey = Survey.objects.filter(pk=survey_id).first()
    contact = Contact.objects.filter(pk=contact_id).first()
    if survey is None or contact is None:
        return None
    return SurveyLink(survey=survey, contact=contact, ref=str(ref), score=score)


@transaction.atomic
def survey_answer(
    *, token: str, score: int | str | None = None, comment: str | None = None
) -> SurveyAnswer:
    """Record the answer of a survey link: its own score, or `score` when the contact
    changes it on the page; `comment` (when given) replaces the comment.

    One row per (survey, contact, ref): the row is locked while it changes, and the
    unique constraint decides a race between two first clicks. The "Survey Answered"
    event is ingested only when the score is new or different, with a message id made of
    the answer, its score and the time it changed — a re-click, or a retried request,
    never records a second event. Answers are accepted after a survey is deactivated:
    the contact took the time to answer a link we sent."""
    link = survey_link_read(token)
    if link is None:
        raise NotFound(_("This survey link does not work."), code="bad_link")
    survey, contact = link.survey, link.contact
    score = _score_check(survey.kind, link.score if score in (None, "") else score)
    if comment is not None:
        comment = comment.strip()
        if len(comment) > COMMENT_MAX_LENGTH:
            raise KeepersError(
                _("Please keep your comment under %(limit)d characters.")
                % {"limit": COMMENT_MAX_LENGTH},
                field="comment",
            )
    category = survey_category(survey.kind, score)
    now = clock.now()
    answer, created = _answer_locked(link, score=score, category=category, now=now)
    changed = created or answer.score != score
    if not created:
        fields = []
        if answer.score != score:
            answer.score, answer.category = score, category
            fields += ["score", "category"]
        if comment is not None and comment != answer.comment:
            answer.comment = comment
            fields.append("comment")
        if fields:
            answer.updated_at = now
            answer.save(update_fields=[*fields, "updated_at"])
    elif comment:
        answer.comment = comment
        answer.save(update_fields=["comment"])
    if changed:
        _answered_event(answer, survey, contact)
    return answer


def _answer_locked(
    link: SurveyLink, *, score: int, category: str, now
) -> tuple[SurveyAnswer, bool]:
    """The (survey, contact, ref) row, locked; created with `score` when it is new."""
    mine = {"survey": link.survey, "contact": link.contact, "ref": link.ref}
    answer = SurveyAnswer.objects.select_for_update().filter(**mine).first()
    if answer is not None:
        return answer, False
    try:
        with transaction.atomic():
            return SurveyAnswer.objects.create(
                **mine, score=score, category=category, answered_at=now, updated_at=now
            ), True
    except IntegrityError:  # another click created it first: update that one
        return SurveyAnswer.objects.select_for_update().get(**mine), False


def _answered_event(answer: SurveyAnswer, survey: Survey, contact: Contact) -> None:
    if not contact.email and not contact.external_id:
        return
    stamp = int(answer.updated_at.timestamp() * 1_000_000)
    events_ingest(
        [
            EventIn(
                name=SURVEY_EVENT,
                identity=Identity(
                    email=contact.email or None, external_id=contact.external_id or None
                ),
                properties={
                    "survey": survey.name,
                    "kind": survey.kind,
                    "score": answer.score,
                    "category": answer.category,
                    "ref": answer.ref,
                },
                occurred_at=answer.updated_at,
                message_id=f"survey-answer:{answer.pk}:{answer.score}:{stamp}",
                source=SURVEY_SOURCE,
            )
        ],
        source=SURVEY_SOURCE,
    )
