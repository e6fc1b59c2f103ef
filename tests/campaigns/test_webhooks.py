"""The webhook step: a signed JSON POST, retried with backoff until the integrator says 2xx."""

import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import time_machine
from django.conf import settings

from campaigns.models import Campaign, WebhookDelivery
from campaigns.services.definitions import campaign_publish
from campaigns.services.webhooks import webhook_deliver
from campaigns.steps import webhook_signature
from tests.campaigns.conftest import T0, shopper, track

pytestmark = pytest.mark.django_db


@pytest.fixture
def integrator():
    """A local HTTP endpoint standing in for the integrator: fails once, then accepts."""
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((dict(self.headers), body))
            self.send_response(500 if len(received) == 1 else 200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", received
    server.shutdown()


@pytest.fixture
def eager_retries():
    """Eager tasks in tests propagate errors; let Celery run an eager retry instead."""
    from config.celery import app

    app.conf.task_eager_propagates = False
    yield
    app.conf.task_eager_propagates = True


def test_webhook_is_signed_and_retried(templates, run, integrator, eager_retries):
    url, received = integrator
    campaign = Campaign.objects.create(
        name="Hook",
        trigger={"type": "event", "name": "Go"},
        steps=[
            {"id": "hook", "type": "webhook", "config": {"url": url, "payload": {"kind": "vip"}}}
        ],
    )
    campaign_publish(campaign=campaign)
    with time_machine.travel(T0, tick=False) as clock:
        shopper("hook@example.com")
        track("hook@example.com", "Go", T0, "go")
        clock.shift(timedelta(seconds=10))
        run()
    # the first POST got a 500; the task retried (eagerly here; 30 s later in production)
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("delivered", 2, 200)
    assert webhook_deliver(delivery_id=delivery.pk) is None  # delivered: nothing more to do
    assert len(received) == 2
    headers, body = received[-1]
    expected = webhook_signature(
        settings.KEEPERS_WEBHOOK_SECRET, headers["X-Keepers-Timestamp"], body
    )
    assert headers["X-Keepers-Signature"] == f"v1={expected}"
    payload = json.loads(body)
    assert payload["contact"]["email"] == "hook@example.com" and payload["kind"] == "vip"
    assert headers["Idempotency-Key"] == delivery.idempotency_key


def test_backoff_grows_and_gives_up(db):
    from crm import clock

    delivery = WebhookDelivery.objects.create(
        url="http://127.0.0.1:9/nothing-listens",
        payload={},
        idempotency_key="k",
        created_at=clock.now(),
    )
    waits = [webhook_deliver(delivery_id=delivery.pk, attempt=n) for n in range(8)]
    assert waits[:4] == [30, 60, 120, 240] and waits[-1] is None
    delivery.refresh_from_db()
    assert delivery.status == "failed" and delivery.attempts == 8 and delivery.last_error
