"""Celery entry points: thin, idempotent, calling services."""

from celery import shared_task

from crm.services.imports import import_job_run
from crm.services.lifecycle import lifecycle_recompute_all


@shared_task(name="crm.tasks.lifecycle_recompute_all")
def lifecycle_recompute_all_task() -> int:
    """Nightly: every contact to the stage its data says (a re-run changes nothing)."""
    return lifecycle_recompute_all(reason="nightly recompute")


@shared_task(name="crm.tasks.import_job_run", acks_late=True)
def import_job_run_task(job_id: int) -> None:
    import_job_run(job_id=job_id)
