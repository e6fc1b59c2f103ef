"""Every admin URL, for every kind of visitor: each registered model's changelist, add,
change, delete and history pages, every custom view a ModelAdmin or the site adds (read
from the URL patterns, parameters filled with real ids), and every admin action, GET and
POST with an empty body, on one data set (the demo shop, plus a row of each model it
lacks). What each visitor should get:

- anonymous: the login page (302), everywhere;
- staff without permissions: 403 everywhere but the index, password change and logout;
- the analyst role: the pages that read (200), 403 on every add, change, delete and
  custom write, and no action of theirs writes a line to the admin's history;
- a superuser: never a 500, and a 403 only where the ModelAdmin closes a door to
  everyone (an append-only log has no add, change or delete page).

Each custom view declares its permissions (crm.admin_access.admin_permission); the crawl
fails on one that does not, and checks it answers as declared. URLs that cannot be
crawled meaningfully are listed in SKIPPED with the reason."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from decimal import Decimal

import pytest
from django.contrib import admin
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import URLPattern, URLResolver

from crm.admin_access import AdminPermissions

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

PARAMETER = re.compile(r"<(?:\w+:)?(\w+)>")
STANDARD = {"changelist", "add", "history", "delete", "change"}
# Site views every signed-in staff member may open, whatever their permissions.
OPEN_TO_STAFF = {"index", "password_change", "password_change_done", "jsi18n"}
GET_ONLY = {"password_change_done", "jsi18n"}  # a POST is refused with 405
# Custom views that answer an empty POST with 400 and the field named (bad input).
BAD_INPUT_400 = {"crm_segment_preview"}
SKIPPED = {
    "logout": "ends the session; a GET is refused with 405 (Django's own view)",
    "login": "the login page itself (tests/crm/test_login_lockout.py)",
    "view_on_site": "redirects to a model's public URL; no admin model has one",
    "autocomplete": "needs a term and a field: crawled below with real parameters",
}
# Custom views of Django's own ModelAdmins, with the permission they check themselves.
NOT_OURS = {"auth_user_password_change": AdminPermissions(("auth.change_user",))}
CATCH_ALL = "(?P<url>.*)$"  # the site's final catch-all: a 404 for what matches nothing
# The row crawled is the first; for these, the last (the odd one the crawl adds).
CRAWLED = {"campaigns.Broadcast": "-pk"}  # the year-one broadcast


@dataclass(frozen=True)
class Url:
    path: str
    name: str  # the URL name without the admin: namespace
    kind: str  # changelist, add, change, history, delete, custom, site
    model_admin: admin.ModelAdmin | None = None
    obj: object = None
    declared: AdminPermissions | None = None


def declared_permissions(pattern: URLPattern) -> AdminPermissions | None:
    return getattr(pattern.callback, "admin_permissions", None)


def model_urls(model, model_admin) -> list[Url]:
    base = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
    info = f"{model._meta.app_label}_{model._meta.model_name}"
    obj = model._default_manager.order_by(CRAWLED.get(model._meta.label, "pk")).first()
    urls = []
    for pattern in model_admin.get_urls():
        assert isinstance(pattern, URLPattern), pattern
        name = pattern.name or ""
        kind = name.removeprefix(info + "_") if name.startswith(info + "_") else "custom"
        kind = kind if kind in STANDARD else "custom"
        if name == "" and str(pattern.pattern) == "<path:object_id>/":
            continue  # the old change URL: a redirect to the change page
        declared = declared_permissions(pattern) or NOT_OURS.get(name)
        route = str(pattern.pattern)
        if kind == "custom":
            assert declared is not None, f"{name} ({base}{route}) declares no permissions"
        if route.startswith("^"):  # the broadcast moves: one URL per action
            choices = re.search(r"\(\?P<action>([\w|]+)\)", route).group(1).split("|")
            assert obj is not None, f"no {model.__name__} to crawl {name}"
            for action in choices:
                urls.append(
                    Url(f"{base}{obj.pk}/{action}/", name, kind, model_admin, obj, declared)
                )
            continue
        params = PARAMETER.findall(route)
        target = obj
        if params == ["key", "language"]:  # a starter's preview: the first, in Japanese
            from campaigns.starters import starters

            path = base + route.replace("<slug:key>", starters()[0].key)
            urls.append(
                Url(path.replace("<str:language>", "ja"), name, kind, model_admin, obj, declared)
            )
            continue
        if params == ["contact_id"]:
            from crm.models import Contact  # the one view keyed by a contact (loyalty's)

            target = Contact.objects.order_by("pk").first()
        elif params:
            assert params in (["object_id"], ["pk"], ["id"]), f"{name}: fill {params}"
        if params and target is None:
            pytest.fail(f"no {model.__name__} in the crawl's data for {name}")
        path = base + (PARAMETER.sub(str(target.pk), route) if params else route)
        urls.append(Url(path, name, kind, model_admin, obj, declared))
    return urls


def site_urls() -> list[Url]:
    urls = []
    for pattern in admin.site.get_urls():
        if isinstance(pattern, URLResolver):
            continue  # the models' own, above
        name = pattern.name or ""
        route = str(pattern.pattern)
        if name in SKIPPED or route == CATCH_ALL:
            continue
        declared = declared_permissions(pattern)
        if name == "app_list":
            for app in ("crm", "campaigns", "loyalty", "auth", "django_celery_beat", "axes"):
                urls.append(Url(f"/admin/{app}/", name, "app_index"))
            continue
        assert not PARAMETER.search(route), f"{name}: fill the parameters of {route}"
        if name not in OPEN_TO_STAFF:
            assert declared is not None, f"the site's {name} view declares no permissions"
        urls.append(
            Url("/admin/" + route, name, "custom" if declared else "site", None, None, declared)
        )
    urls.append(
        Url(
            "/admin/autocomplete/?app_label=loyalty&model_name=ledgerentry&field_name=contact",
            "autocomplete",
            "autocomplete",
        )
    )
    return urls


def all_urls() -> list[Url]:
    urls = site_urls()
    for model, model_admin in admin.site._registry.items():
        urls += model_urls(model, model_admin)
    return urls


# ------------------------------------------------------------------------------------------
# The data: the demo shop, and one row of every model it leaves empty
# ------------------------------------------------------------------------------------------
def crawl_rows() -> None:
    """A row of each model the demo leaves empty (tests/crm/test_admin_csp_browser.py
    walks the same pages)."""
    from axes.models import AccessFailureLog
    from django_celery_beat.models import (
        ClockedSchedule,
        CrontabSchedule,
        IntervalSchedule,
        PeriodicTask,
        SolarSchedule,
    )

    from campaigns.models import (
        Broadcast,
        BroadcastRecipient,
        Campaign,
        DeliveryEvent,
        EmailTemplate,
        Enrollment,
        Message,
        Survey,
        SurveyAnswer,
        WebhookDelivery,
    )
    from campaigns.services.definitions import campaign_publish
    from campaigns.services.delivery import suppression_create
    from campaigns.services.triggers import segment_enroll
    from crm import clock
    from crm.models import Contact, ImportJob, Segment
    from crm.services.meddic import scorecard_update
    from crm.services.segments import segment_members_add, segment_save
    from loyalty.models import Referral, ReferralCode, ReferralRefusal
    from loyalty.services.coupons import coupon_create, coupon_redeem

    now = clock.now()
    contacts = list(Contact.objects.order_by("pk")[:3])
    every = IntervalSchedule.objects.create(every=1, period=IntervalSchedule.HOURS)
    CrontabSchedule.objects.create(minute="0", hour="3")
    SolarSchedule.objects.create(event="sunrise", latitude=48.85, longitude=2.35)
    ClockedSchedule.objects.create(clocked_time=now)
    PeriodicTask.objects.create(name="crawl", task="crm.tasks.clv_fit_task", interval=every)
    ImportJob.objects.create(
        kind=ImportJob.Kind.CONTACTS,
        file="imports/crawl.csv",
        status="done",
        errors=[{"row": 2, "field": "email", "message": "Not an email address."}],
    )
    scorecard_update(contact=contacts[0], changes={"metrics_note": "crawl"}, via="admin")
    static = segment_save(name="Crawl list", kind="static")
    segment_members_add(segment=static, contact_ids=[c.pk for c in contacts])
    campaign = Campaign.objects.create(
        name="Crawl",
        trigger={"type": "manual"},
        steps=[{"id": "hello", "type": "wait", "config": {"days": 1}}],
    )
    campaign_publish(campaign=campaign)
    campaign.refresh_from_db()
    segment_enroll(campaign=campaign, segment_id=static.pk, key="crawl")
    assert Enrollment.objects.exists()
    template = EmailTemplate.objects.filter(category="marketing").order_by("pk").first()
    message = Message.objects.create(
        contact=contacts[0],
        idempotency_key="crawl-1",
        category="marketing",
        subject="Crawl",
        status=Message.Status.SENT,
        created_at=now,
        sent_at=now,
        to_email=contacts[0].email,
        template=template,
    )
    DeliveryEvent.objects.create(
        message=message,
        esp_name="test",
        event_id="crawl-1",
        event_type="delivered",
        recipient=contacts[0].email,
        occurred_at=now,
        received_at=now,
    )
    suppression_create(email="bounced@example.com", reason="hard_bounce", source="crawl")
    SurveyAnswer.objects.create(
        survey=Survey.objects.get(name="NPS"),
        contact=contacts[0],
        ref="crawl",
        score=9,
        category="promoter",
        comment="Great beans",
        answered_at=now,
        updated_at=now,
    )
    WebhookDelivery.objects.create(  # its "retry now" queues a try: to a port nothing hears
        url="http://127.0.0.1:9/hook",
        payload={"kind": "crawl"},
        idempotency_key="crawl",
        status="failed",
        attempts=8,
        created_at=now,
    )
    broadcast = Broadcast.objects.order_by("pk").first()
    BroadcastRecipient.objects.create(broadcast=broadcast, contact=contacts[1], send_at=now)
    # A row the API accepted before the year bounds (crm/services/parsing.py): year 1.
    Broadcast.objects.create(
        name="Year one",
        template=template,
        segment=Segment.objects.filter(is_template=False).order_by("pk").first(),
        send_date=dt.date(1, 1, 1),
        send_time=dt.time(0, 0),
    )
    code = ReferralCode.objects.order_by("pk").first()
    friend = Contact.objects.exclude(pk=code.contact_id).order_by("-pk").first()
    Referral.objects.create(referrer=code.contact, friend=friend, code=code, created_at=now)
    ReferralRefusal.objects.create(code=code, email="self@example.com", reason="self", at=now)
    coupon = coupon_create(kind="fixed", value=Decimal("5"), currency="EUR")
    coupon_redeem(
        code=coupon.code,
        order_ref="crawl-order",
        contact=contacts[2],
        order_total="50",
        currency="EUR",
    )
    more_rows(contacts, template, broadcast, code)
    Group.objects.get(name="analyst")  # migrate made the roles
    # django-axes' records: failed logins (one kept: a success resets only its own), and
    # the demo's admin logging in
    login = Client()
    login.post("/admin/login/", {"username": "intruder", "password": "guess"})
    login.post("/admin/login/", {"username": "admin", "password": "wrong"})
    login.post("/admin/login/", {"username": "admin", "password": "keepers-demo"})
    AccessFailureLog.objects.create(  # kept only with AXES_ENABLE_ACCESS_FAILURE_LOG
        user_agent="crawl",
        ip_address="203.0.113.1",
        username="intruder",
        http_accept="*/*",
        path_info="/admin/login/",
    )


def more_rows(contacts, template, broadcast, code) -> None:
    """Two more of each row the demo has fewer than FEW_ROWS of, so every changelist is
    measured showing one row and several (test_no_changelist_grows_with_its_rows)."""
    from axes.models import AccessAttempt, AccessFailureLog, AccessLog
    from django.contrib.auth.models import User
    from django_celery_beat.models import (
        ClockedSchedule,
        CrontabSchedule,
        IntervalSchedule,
        PeriodicTask,
        SolarSchedule,
    )

    from campaigns.models import (
        Broadcast,
        BroadcastRecipient,
        DeliveryEvent,
        Message,
        Survey,
        SurveyAnswer,
        WebhookDelivery,
    )
    from campaigns.services.delivery import suppression_create
    from crm import clock
    from crm.models import ClvModelFit, Contact, ImportJob, Segment, Topic
    from crm.services.api_keys import api_key_create
    from crm.services.meddic import scorecard_update
    from loyalty.models import EarnRule, Referral, ReferralRefusal
    from loyalty.services.coupons import coupon_create, coupon_redeem

    now = clock.now()
    segment = Segment.objects.filter(is_template=False).order_by("pk").first()
    friends = list(
        Contact.objects.exclude(pk=code.contact_id)
        .filter(referred_by__isnull=True)
        .order_by("-pk")[:2]
    )
    for n in (1, 2):
        seen = {
            "user_agent": "crawl",
            "ip_address": f"203.0.113.{n + 1}",
            "username": f"crawl{n}",
            "http_accept": "*/*",
            "path_info": "/admin/login/",
        }
        AccessAttempt.objects.create(**seen, get_data="", post_data="", failures_since_start=n)
        AccessLog.objects.create(**seen)
        AccessFailureLog.objects.create(**seen)
        User.objects.create_user(f"crawl{n}", f"crawl{n}@example.com", is_staff=True)
        every = IntervalSchedule.objects.create(every=n + 1, period=IntervalSchedule.HOURS)
        CrontabSchedule.objects.create(minute=str(n), hour="4")
        SolarSchedule.objects.create(event="sunset", latitude=40 + n, longitude=2.35)
        ClockedSchedule.objects.create(clocked_time=now + dt.timedelta(days=n))
        PeriodicTask.objects.create(
            name=f"crawl {n}", task="crm.tasks.clv_fit_task", interval=every
        )
        ImportJob.objects.create(kind=ImportJob.Kind.CONTACTS, file=f"imports/{n}.csv")
        scorecard_update(contact=contacts[n], changes={"metrics_note": "crawl"}, via="admin")
        api_key_create(name=f"crawl {n}")
        ClvModelFit.objects.create(as_of=now.date(), fitted_at=now, currency="EUR")
        Broadcast.objects.create(
            name=f"Crawl {n}",
            template=template,
            segment=segment,
            send_date=now.date(),
            send_time=dt.time(9, 0),
        )
        BroadcastRecipient.objects.create(
            broadcast=broadcast, contact=contacts[(n + 1) % 3], send_at=now
        )
        message = Message.objects.create(
            contact=contacts[n],
            idempotency_key=f"crawl-more-{n}",
            category="marketing",
            subject="Crawl",
            status=Message.Status.SENT,
            created_at=now,
            sent_at=now,
            to_email=contacts[n].email,
            template=template,
        )
        DeliveryEvent.objects.create(
            message=message,
            esp_name="test",
            event_id=f"crawl-more-{n}",
            event_type="opened",
            recipient=contacts[n].email,
            occurred_at=now,
            received_at=now,
        )
        suppression_create(email=f"bounced{n}@example.com", reason="hard_bounce", source="crawl")
        Referral.objects.create(
            referrer=code.contact, friend=friends[n - 1], code=code, created_at=now
        )
        ReferralRefusal.objects.create(
            code=code, email=f"self{n}@example.com", reason="self", at=now
        )
        EarnRule.objects.get_or_create(currency=("EUR", "GBP")[n - 1])
        Topic.objects.create(slug=f"crawl-{n}", name=f"Crawl {n}", order=10 + n)
        survey = Survey.objects.create(
            name=f"Crawl survey {n}", kind=Survey.Kind.CSAT, question="How was it?"
        )
        SurveyAnswer.objects.create(
            survey=survey,
            contact=contacts[n],
            ref=f"crawl-{n}",
            score=4,
            category="satisfied",
            answered_at=now,
            updated_at=now,
        )
        WebhookDelivery.objects.create(
            url="http://127.0.0.1:9/hook",
            payload={"kind": "crawl", "n": n},
            idempotency_key=f"crawl-more-{n}",
            status="delivered",
            attempts=1,
            created_at=now,
        )
        coupon = coupon_create(kind="fixed", value=Decimal("5"), currency="EUR")
        coupon_redeem(
            code=coupon.code,
            order_ref=f"crawl-order-{n}",
            contact=contacts[n],
            order_total="50",
            currency="EUR",
        )


@pytest.fixture(scope="module")
def data(django_db_setup, django_db_blocker):
    """One data set for the module, rolled back at its end (each test runs in a savepoint
    inside it, so a superuser's POSTs do not reach the next test)."""
    with django_db_blocker.unblock(), transaction.atomic():
        call_command("demo", contacts=30, url="http://testserver", verbosity=0)
        crawl_rows()
        urls = all_urls()
        yield urls
        transaction.set_rollback(True)


def _client(user=None) -> Client:
    client = Client(raise_request_exception=False)
    if user is not None:
        client.force_login(user)
    return client


def _crawl(client: Client, urls: list[Url]):
    for url in urls:
        for method in ("GET", "POST"):
            if url.kind == "autocomplete" and method == "POST":
                continue
            answer = client.get(url.path) if method == "GET" else client.post(url.path, {})
            yield url, method, answer


def _fails(results) -> str:
    return "\n".join(f"{m} {u.path} ({u.name}): {a.status_code} {why}" for u, m, a, why in results)


# ------------------------------------------------------------------------------------------
def test_every_custom_view_declares_its_permissions_and_every_model_has_a_row(data):
    custom = [u for u in data if u.kind == "custom"]
    assert len(custom) > 20
    assert all(u.declared for u in custom)
    for model, _ in admin.site._registry.items():
        assert model._default_manager.exists(), f"the crawl has no {model._meta.label}"


def test_anonymous_visitors_are_sent_to_the_login_page(data):
    bad = [
        (u, m, a, "")
        for u, m, a in _crawl(_client(), data)
        if a.status_code != 302 or not a["Location"].startswith("/admin/login/")
    ]
    assert not bad, _fails(bad)


def test_staff_without_permissions_reach_nothing_but_the_index(data, django_user_model):
    clerk = django_user_model.objects.create_user("clerk", "c@example.com", is_staff=True)
    bad = []
    for url, method, answer in _crawl(_client(clerk), data):
        expected = {200} if url.name in OPEN_TO_STAFF else {403}
        if url.name in GET_ONLY and method == "POST":
            expected = {405}
        if url.kind == "app_index":
            expected = {404}  # Django's answer for an app with nothing the user may see
        if answer.status_code not in expected:
            bad.append((url, method, answer, f"expected {expected}"))
    assert not bad, _fails(bad)


def _may(url: Url, method: str, request, *, writes: bool) -> bool:
    """Whether the user of `request` may open the URL: what a custom view declares, or
    the ModelAdmin's own permission hooks (some close a door to everyone: an append-only
    log has no add page). Without `writes`, every add, change and delete is refused."""
    if url.declared is not None:
        return request.user.has_perms(url.declared.needed(method))
    if url.kind in ("site", "app_index", "autocomplete"):
        return True  # (the autocomplete's contacts: both users may view them)
    model_admin, obj = url.model_admin, url.obj
    if obj is not None:  # as it is now: an earlier POST may have moved it on
        obj = type(obj)._default_manager.filter(pk=obj.pk).first()
    if url.kind in ("changelist", "history") or (url.kind == "change" and method == "GET"):
        return model_admin.has_view_or_change_permission(request, obj)
    if not writes:
        return False
    if url.kind == "add":
        return model_admin.has_add_permission(request)
    if url.kind == "change":
        return model_admin.has_change_permission(request, obj)
    assert url.kind == "delete", url
    return model_admin.has_delete_permission(request, obj)


def test_the_analyst_reads_and_changes_nothing(data, django_user_model, rf):
    analyst = django_user_model.objects.create_user("ana", "a@example.com", is_staff=True)
    analyst.groups.add(Group.objects.get(name="analyst"))
    request = rf.get("/admin/")
    request.user = analyst
    client = _client(analyst)
    bad, read = [], 0
    for url, method, answer in _crawl(client, data):
        may = _may(url, method, request, writes=False)
        status = answer.status_code
        if may:
            read += 1
            page = method == "GET" and url.kind in ("changelist", "change", "history")
            if (page and status != 200) or status >= 500 or status == 403:
                bad.append((url, method, answer, "a read the analyst may make"))
        elif status != 403:
            bad.append((url, method, answer, "expected 403"))
    assert not bad, _fails(bad)
    assert read > 100  # the analyst really reads the admin

    written = LogEntry.objects.count()
    for url, answer in _actions(client, data):
        if answer.status_code >= 500:
            bad.append((url, "POST", answer, "an action"))
    assert LogEntry.objects.count() == written  # no action of the analyst's changed anything
    assert not bad, _fails(bad)


def _actions(client: Client, urls: list[Url]):
    """POST every action of every changelist on its first row (what the buttons send)."""
    for url in urls:
        if url.kind != "changelist" or url.obj is None:
            continue
        for name in url.model_admin.actions or []:
            action = name if isinstance(name, str) else name.__name__
            yield (
                Url(f"{url.path}#{action}", action, "action"),
                client.post(
                    url.path,
                    {"action": action, admin.helpers.ACTION_CHECKBOX_NAME: [url.obj.pk]},
                ),
            )


def test_a_superuser_never_meets_an_error(data, django_user_model, rf):
    boss = django_user_model.objects.create_superuser("boss", "b@example.com", "pw")
    request = rf.get("/admin/")
    request.user = boss
    client = _client(boss)
    bad = []
    for url, method, answer in _crawl(client, data):
        allowed = {200, 302}
        if method == "GET" and url.kind == "custom":
            allowed.add(405)  # a POST-only view (fit now, the segment preview, the moves)
        if method == "POST" and url.name in GET_ONLY:
            allowed = {405}
        if method == "POST" and url.name in BAD_INPUT_400:
            allowed = {400}
        if url.kind == "autocomplete":
            allowed = {200}
        if not _may(url, method, request, writes=True):
            allowed = {403}  # a door the ModelAdmin closes to everyone
        if answer.status_code not in allowed:
            bad.append((url, method, answer, f"expected {sorted(allowed)}"))
    for url, answer in _actions(client, data):
        if answer.status_code not in (200, 302):
            bad.append((url, "POST", answer, "an action"))
    assert not bad, _fails(bad)


# ------------------------------------------------------------------------------------------
# No changelist costs a query per row
# ------------------------------------------------------------------------------------------
MANY = 12  # rows on the "many" page; every model the crawl lists has at least FEW_ROWS
FEW_ROWS = 3


def _changelist_queries(client: Client, url: Url, ids: list) -> list[str]:
    model = url.model_admin.model
    lookup = f"{model._meta.pk.name}__in"
    with CaptureQueriesContext(connection) as queries:
        answer = client.get(url.path, {lookup: ",".join(str(pk) for pk in ids)})
    assert answer.status_code == 200, f"{url.path}?{lookup}: {answer.status_code}"
    assert answer.context["cl"].result_count == len(ids), url.path
    return [q["sql"] for q in queries.captured_queries]


def test_no_changelist_grows_with_its_rows(data, django_user_model):
    """Each changelist, as a superuser, showing one row and showing many: the same number
    of queries (an N+1 shows as a difference, its queries printed)."""
    boss = django_user_model.objects.create_superuser("lister", "l@example.com", "pw")
    client = _client(boss)
    grows, few = [], []
    for url in data:
        if url.kind != "changelist":
            continue
        model = url.model_admin.model
        ids = list(model._default_manager.order_by("pk").values_list("pk", flat=True)[:MANY])
        if len(ids) < FEW_ROWS:
            few.append(model._meta.label)
            continue
        one = _changelist_queries(client, url, ids[:1])
        many = _changelist_queries(client, url, ids)
        if len(many) != len(one):
            extra = "\n    ".join(q[:160] for q in many[len(one) :][:4])
            grows.append(
                f"{url.path}: {len(one)} queries for 1 row, {len(many)} for {len(ids)}\n    {extra}"
            )
    assert not grows, "\n".join(grows)
    assert not few, f"the crawl has fewer than {FEW_ROWS} rows of {few} (more_rows)"
