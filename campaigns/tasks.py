"""Celery entry points for the engine: thin and idempotent."""

from celery import shared_task

from campaigns.services.broadcasts import broadcast_recipients_send, broadcasts_tick
from campaigns.services.engine import engine_tick, enrollments_advance
from campaigns.services.sending import messages_send
from campaigns.services.triggers import date_triggers_run, triggers_scan
from campaigns.services.webhooks import webhook_deliver


@shared_task(name="campaigns.tasks.engine_tick")
def engine_tick_task() -> int:
    return engine_tick()


@shared_task(name="campaigns.tasks.enrollments_advance")
def enrollments_advance_task(ids: list[int]) -> dict:
    return enrollments_advance(ids=ids)


@shared_task(name="campaigns.tasks.messages_send")
def messages_send_task(ids: list[int]) -> dict:
    return messages_send(ids=ids)


@shared_task(name="campaigns.tasks.broadcasts_tick")
def broadcasts_tick_task() -> dict:
    return broadcasts_tick()


@shared_task(name="campaigns.tasks.broadcast_recipients_send")
def broadcast_recipients_send_task(ids: list[int]) -> dict:
    return broadcast_recipients_send(ids=ids)


@shared_task(name="campaigns.tasks.triggers_scan")
def triggers_scan_task() -> int:
    return triggers_scan()


@shared_task(name="campaigns.tasks.date_triggers_run")
def date_triggers_run_task() -> int:
    return date_triggers_run()


@shared_task(name="campaigns.tasks.webhook_deliver", bind=True, max_retries=8)
def webhook_deliver_task(self, delivery_id: int) -> None:
    retry_in = webhook_deliver(delivery_id=delivery_id, attempt=self.request.retries)
    if retry_in is not None:
        raise self.retry(countdown=retry_in)
