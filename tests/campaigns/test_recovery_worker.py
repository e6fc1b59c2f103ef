"""kill -9 of a real sending worker (Celery on Redis, PostgreSQL) in the middle of a
broadcast: nothing is sent twice, and every message is either sent or counted as
unconfirmed in the broadcast's stats — the broadcast is never "sent" while some are. Then
the ESP's tracking events confirm what it had, and a deliberate resend reaches the rest."""

import datetime as dt
import time
from collections import Counter

import pytest
from anymail.signals import AnymailTrackingEvent
from django.core import mail

from campaigns.models import Broadcast, EmailTemplate, Message
from campaigns.services.broadcasts import broadcast_schedule, broadcast_stats
from campaigns.services.delivery import delivery_event_record
from campaigns.services.recovery import messages_resend
from campaigns.services.sending import SEND_CHUNK
from crm import clock
from tests.campaigns.test_broadcasts import audience

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

N = 300


def test_a_sender_killed_mid_chunk_sends_nothing_twice_and_leaves_every_message_counted(
    keepers,
):
    EmailTemplate.objects.create(
        name="news", subject="News", html_body="<p>Hi {{ first_name }}</p>"
    )
    segment = audience(N, ["UTC"])
    now = clock.now()
    broadcast = Broadcast.objects.create(
        name="News",
        template=EmailTemplate.objects.get(name="news"),
        segment=segment,
        send_date=now.date(),
        send_time=(now - dt.timedelta(minutes=1)).time().replace(second=0, microsecond=0),
    )
    broadcast_schedule(broadcast=broadcast, now=now - dt.timedelta(hours=1))
    keepers.env.update(
        KEEPERS_SHOP_TIME_ZONE="UTC",
        KEEPERS_ENGINE_BATCH="100",
        KEEPERS_TEST_SEND_DELAY="0.02",  # a chunk of 50 takes about a second
        KEEPERS_SENDING_TIMEOUT_SECONDS="5",
    )
    keepers.worker("engine", queues="engine", concurrency=1)
    keepers.worker("sender", queues="send", concurrency=1)
    keepers.beat()
    keepers.wait_for(lambda: len(keepers.outbox()) >= 75, timeout=120, what="sending mid-way")
    keepers.kill("sender")  # in the middle of its second chunk
    at_kill = len(keepers.outbox())
    assert at_kill < N, "the sender finished before it could be killed"
    keepers.worker("sender-2", queues="send", concurrency=1)

    def settled() -> bool:
        broadcast.refresh_from_db()
        unsettled = Message.objects.filter(status__in=["queued", "sending"]).exists()
        return broadcast.status in ("sent", "unconfirmed") and not unsettled

    keepers.wait_for(settled, timeout=180, what="the broadcast to settle")
    time.sleep(2)  # a few more beats: nothing else may go out or change
    outbox = keepers.outbox()
    broadcast.refresh_from_db()

    # no duplicate
    got = Counter(m["to"][0] for m in outbox)
    assert set(got.values()) == {1}, got.most_common(3)
    # every message sent or unconfirmed, one per recipient; every "sent" one really went out
    statuses = Counter(Message.objects.values_list("status", flat=True))
    assert sum(statuses.values()) == N and set(statuses) <= {"sent", "unconfirmed"}, statuses
    sent_to = set(Message.objects.filter(status="sent").values_list("to_email", flat=True))
    assert sent_to <= set(got)
    unconfirmed = statuses["unconfirmed"]
    # the crash window: at most one chunk of the one killed process
    assert 1 <= unconfirmed <= SEND_CHUNK, statuses
    # counted, and the broadcast not "sent" while any are
    stats = broadcast_stats(broadcast)["messages"]
    assert (stats["sent"], stats["unconfirmed"]) == (statuses["sent"], unconfirmed)
    assert broadcast.status == "unconfirmed"

    # the ESP reports on what it had: those are confirmed through the Anymail metadata
    had = {int(m["metadata"]["message_id"]) for m in outbox}
    lost = list(
        Message.objects.filter(status="unconfirmed")
        .exclude(pk__in=had)
        .values_list("pk", flat=True)
    )
    for message in Message.objects.filter(status="unconfirmed", pk__in=had):
        delivery_event_record(
            event=AnymailTrackingEvent(
                event_type="delivered",
                event_id=f"d-{message.pk}",
                recipient=message.to_email,
                metadata={"message_id": str(message.pk)},
                timestamp=clock.now(),
            ),
            esp_name="Test",
        )
    assert set(Message.objects.filter(status="unconfirmed").values_list("pk", flat=True)) == set(
        lost
    )
    # what nobody got is resent deliberately (in this process: Celery is eager here)
    assert messages_resend(ids=lost) == len(lost)
    everyone = Counter(m["to"][0] for m in outbox) + Counter(e.to[0] for e in mail.outbox)
    assert len(everyone) == N and set(everyone.values()) == {1}
    keepers.wait_for(
        lambda: Broadcast.objects.get(pk=broadcast.pk).status == "sent",
        timeout=60,
        what="the broadcast to be sent",
    )
    print(f"killed at {at_kill} in the outbox; {unconfirmed} unconfirmed, {len(lost)} lost")
