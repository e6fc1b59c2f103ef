"""Celery entry points: thin, idempotent, calling services.

One direction for task dispatch, in every app: services import the `*_task` they enqueue
at module level, and a task imports its service when it runs (the function-level imports
below), so no import cycle joins a service and its task."""

from celery import shared_task
from django.conf import settings

from crm.models import ClvModelFit


@shared_task(name="crm.tasks.lifecycle_recompute_all")
def lifecycle_recompute_all_task() -> int:
    """Nightly: every contact to the stage its data says (a re-run changes nothing)."""
    # services import tasks, not back: the task reads its service when it runs
    from crm.services.lifecycle import lifecycle_recompute_all

    return lifecycle_recompute_all(reason="nightly recompute")


@shared_task(name="crm.tasks.rfm_recompute")
def rfm_recompute_task() -> int:
    """Nightly: RFM quintiles over customers, then the segments that read them."""
    # services import tasks, not back: the task reads its service when it runs
    from crm.services.rfm import rfm_recompute

    return rfm_recompute()


@shared_task(name="crm.tasks.clv_fit")
def clv_fit_task() -> int:
    """Nightly: BG/NBD + Gamma-Gamma on the orders up to today, every customer's predictions
    rewritten; then, when KEEPERS_AT_RISK_FROM_CLV is on, every contact's stage, so at_risk
    follows the new probabilities. A fit that fails is stored as failed (the previous
    predictions stay) and the task still succeeds; a re-run stores another fit and writes
    the same predictions. Returns the fit's id."""
    # services import tasks, not back: the task reads its service when it runs
    from crm.services.clv_fits import clv_fit
    from crm.services.lifecycle import lifecycle_recompute_all

    fit = clv_fit()
    if fit.status == ClvModelFit.Status.OK and settings.KEEPERS_AT_RISK_FROM_CLV:
        lifecycle_recompute_all(reason="clv fit")
    return fit.pk


@shared_task(name="crm.tasks.recommendations_refresh")
def recommendations_refresh_task() -> dict[str, int]:
    """Nightly: co-purchase counts and bestsellers for email recommendations, rebuilt
    set-based in one transaction (a re-run writes the same rows)."""
    # services import tasks, not back: the task reads its service when it runs
    from crm.services.recommendations import recommendations_refresh

    return recommendations_refresh()


@shared_task(name="crm.tasks.segments_refresh_changed")
def segments_refresh_changed_task() -> int:
    """Every few seconds: re-evaluate changed contacts against the segments they can affect.
    Loops while there is a backlog, within one task run."""
    # services import tasks, not back: the task reads its service when it runs
    from crm.services.segments import segments_refresh_changed

    total = 0
    for _ in range(20):
        consumed = segments_refresh_changed()
        total += consumed
        if not consumed:
            break
    return total


@shared_task(name="crm.tasks.segments_refresh_all")
def segments_refresh_all_task() -> int:
    """Nightly: full, set-based refresh of every dynamic segment (a safety net: the
    incremental pass keeps them current as contacts change)."""
    # services import tasks, not back: the task reads its service when it runs
    from crm.services.segments import segments_refresh_all

    return segments_refresh_all()


@shared_task(name="crm.tasks.segments_refresh_drifting")
def segments_refresh_drifting_task() -> int:
    """Hourly: full refresh of the segments whose rules drift with time ("within N days")
    and of those built on them."""
    # services import tasks, not back: the task reads its service when it runs
    from crm.services.segments import segments_refresh_all

    return segments_refresh_all(drifting_only=True)


@shared_task(name="crm.tasks.segment_refresh")
def segment_refresh_task(segment_id: int) -> int:
    # services import tasks, not back: the task reads its service when it runs
    from crm.services.segments import segment_refresh

    result = segment_refresh(segment_id=segment_id)
    return len(result.entered) + len(result.exited)


@shared_task(name="crm.tasks.import_job_run", acks_late=True)
def import_job_run_task(job_id: int) -> None:
    # services import tasks, not back: the task reads its service when it runs
    from crm.services.imports import import_job_run

    import_job_run(job_id=job_id)
