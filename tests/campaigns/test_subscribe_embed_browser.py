"""The subscribe form embedded on the shop's own site, in headless Chromium: the shop's
page (another site: 127.0.0.1, while Keepers is served as localhost) frames /subscribe/,
and a visitor subscribes from inside the frame. Chromium sends none of our cookies
there (a cross-site frame), so the form must not depend on one: before the signed form
token it was a CSRF 403."""

import http.server
import re
import socket
import threading

import pytest
from django.core import mail

from crm.models import OptInRequest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _free_port() -> int:
    for port in [*range(8660, 8670), 0]:  # this workplace's range first, else any
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return probe.getsockname()[1]
    raise RuntimeError("no free port")


@pytest.fixture
def shop_site(live_server):
    """The shop's page, on its own origin, embedding the form as docs/operations.md says."""
    assert "localhost" in live_server.url
    html = (
        "<!doctype html><html><head><title>Shop</title></head><body><h1>The shop</h1>"
        f'<iframe src="{live_server.url}/subscribe/?source=shop%20footer" title="Subscribe"'
        ' width="400" height="520" style="border:0"></iframe></body></html>'
    ).encode()

    class Shop(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.end_headers()
            self.wfile.write(html)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", _free_port()), Shop)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_a_visitor_subscribes_from_the_form_embedded_on_the_shops_site(
    live_server, browser_page, shop_site, settings
):
    settings.KEEPERS_PUBLIC_URL = live_server.url
    page = browser_page
    posts = []
    page.on(
        "request",
        lambda request: (
            posts.append(request)
            if request.method == "POST" and "/subscribe/" in request.url
            else None
        ),
    )
    page.goto(shop_site)
    form = page.frame_locator("iframe")
    form.get_by_label("Your email address").fill("framed@example.com")
    form.get_by_role("button", name="Subscribe").click()
    form.get_by_text("Check your inbox").wait_for()

    assert len(posts) == 1
    headers = posts[0].all_headers()
    assert "cookie" not in headers  # nothing of ours rides along in a cross-site frame
    assert posts[0].frame.parent_frame is not None and page.url == shop_site  # in the frame
    opt_in = OptInRequest.objects.get()
    assert (opt_in.contact.email, opt_in.source) == ("framed@example.com", "shop footer")
    assert re.search(r"/c/[^/\s]+/", mail.outbox[0].body)
    # the honeypot is off screen for a person
    page.goto(f"{live_server.url}/subscribe/")
    box = page.locator("#website").bounding_box()
    assert box is not None and box["x"] + box["width"] <= 0
