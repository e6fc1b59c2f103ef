"""Celery entry points for the engine: thin and idempotent.

One direction for task dispatch, in every app: services import the `*_task` they enqueue
at module level, and a task imports its service when it runs (the function-level imports
below), so no import cycle joins a service and its task."""

from celery import shared_task


@shared_task(name="campaigns.tasks.engine_tick")
def engine_tick_task() -> int:
    from campaigns.services.engine import engine_tick  # services import tasks, not back

    return engine_tick()


@shared_task(name="campaigns.tasks.enrollments_advance")
def enrollments_advance_task(ids: list[int]) -> dict:
    from campaigns.services.engine import enrollments_advance  # services import tasks, not back

    return enrollments_advance(ids=ids)


@shared_task(name="campaigns.tasks.messages_send")
def messages_send_task(ids: list[int]) -> dict:
    from campaigns.services.sending import messages_send  # services import tasks, not back

    return messages_send(ids=ids)


@shared_task(name="campaigns.tasks.broadcasts_tick")
def broadcasts_tick_task() -> dict:
    from campaigns.services.broadcasts import broadcasts_tick  # services import tasks, not back

    return broadcasts_tick()


@shared_task(name="campaigns.tasks.broadcast_recipients_send")
def broadcast_recipients_send_task(ids: list[int]) -> dict:
    # services import tasks, not back
    from campaigns.services.broadcasts import broadcast_recipients_send

    return broadcast_recipients_send(ids=ids)


@shared_task(name="campaigns.tasks.triggers_scan")
def triggers_scan_task() -> int:
    from campaigns.services.triggers import triggers_scan  # services import tasks, not back

    return triggers_scan()


@shared_task(name="campaigns.tasks.date_triggers_run")
def date_triggers_run_task() -> int:
    from campaigns.services.triggers import date_triggers_run  # services import tasks, not back

    return date_triggers_run()


@shared_task(name="campaigns.tasks.webhook_deliver", bind=True, max_retries=8)
def webhook_deliver_task(self, delivery_id: int) -> None:
    from campaigns.services.webhooks import webhook_deliver  # services import tasks, not back

    retry_in = webhook_deliver(delivery_id=delivery_id, attempt=self.request.retries)
    if retry_in is not None:
        raise self.retry(countdown=retry_in)


@shared_task(name="campaigns.tasks.messages_unconfirmed_sweep")
def messages_unconfirmed_sweep_task() -> int:
    from campaigns.services.recovery import messages_unconfirmed_sweep  # services import tasks

    return messages_unconfirmed_sweep()


@shared_task(name="campaigns.tasks.webhooks_lost_sweep")
def webhooks_lost_sweep_task() -> int:
    from campaigns.services.recovery import webhooks_lost_sweep  # services import tasks

    return webhooks_lost_sweep()


@shared_task(name="campaigns.tasks.message_bodies_purge")
def message_bodies_purge_task() -> int:
    from campaigns.services.recovery import message_bodies_purge  # services import tasks

    return message_bodies_purge()
