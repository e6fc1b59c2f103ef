"""For end-to-end tests with real worker processes: Anymail's test backend that also writes
every sent message to a folder (KEEPERS_TEST_OUTBOX), one JSON file each, so the test
process can count what the workers sent."""

import json
import os
import time
import uuid

from anymail.backends.test import EmailBackend as AnymailTestBackend


class EmailBackend(AnymailTestBackend):
    def post_to_esp(self, payload, message):
        delay = float(os.environ.get("KEEPERS_TEST_SEND_DELAY") or 0)
        if delay:  # an ESP's round trip, so a test can kill a worker in the middle of a chunk
            time.sleep(delay)
        response = super().post_to_esp(payload, message)
        folder = os.environ["KEEPERS_TEST_OUTBOX"]
        record = {
            "to": message.to,
            "subject": message.subject,
            "metadata": getattr(message, "metadata", {}),
            "tags": getattr(message, "tags", []),
        }
        path = os.path.join(folder, f"{uuid.uuid4().hex}.json")
        with open(path + ".tmp", "w") as handle:
            json.dump(record, handle)
        os.replace(path + ".tmp", path)
        return response
