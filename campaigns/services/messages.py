"""The one door for every email Keepers queues or test-sends: a campaign step, a
broadcast, a system email (double opt-in, a fresh preference link) and the admin's test
sends all build their Message here, so a new header or field is one change.

The Message copies what the template says at this moment (category, Reply-To), so
editing a template later changes nothing already rendered; sending reads only the
Message (campaigns.services.sending)."""

from __future__ import annotations

import datetime as dt

from campaigns.models import Broadcast, EmailTemplate, Enrollment, Message
from campaigns.services.rendering import Rendered
from crm.models import Contact


def message_build(
    *,
    contact: Contact,
    rendered: Rendered,
    idempotency_key: str,
    now: dt.datetime,
    template: EmailTemplate | None = None,
    category: str = "",
    to_email: str = "",
    subject_prefix: str = "",
    topic: str = "",
    step_id: str = "",
    enrollment: Enrollment | None = None,
    campaign_id: int | None = None,
    broadcast: Broadcast | None = None,
) -> Message:
    """An unsaved Message of what was rendered for `contact`, to their address (or
    `to_email`, a test send's). Category and Reply-To come from `template` (a system email
    without one names its category); `idempotency_key` makes the send once-only when the
    message is saved (a unique column)."""
    return Message(
        contact_id=contact.pk,
        enrollment=enrollment,
        campaign_id=campaign_id,
        broadcast=broadcast,
        step_id=step_id,
        template=template,
        category=template.category if template is not None else category,
        reply_to=template.reply_to if template is not None else "",
        idempotency_key=idempotency_key,
        to_email=to_email or contact.email,
        subject=f"{subject_prefix}{rendered.subject}",
        topic=topic,
        html=rendered.html,
        text=rendered.text,
        created_at=now,
    )
