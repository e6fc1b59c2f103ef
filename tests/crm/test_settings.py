"""Production settings refuse to start without their secrets and pass `check --deploy`;
periodic tasks are declared in code for django-celery-beat."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROD_ENV = {
    "SECRET_KEY": "x" * 60 + "production-secret-for-the-check",
    "ALLOWED_HOSTS": "crm.example.com",
    "DATABASE_URL": "postgres://keepers@db.invalid:5432/keepers",
    "DJANGO_SETTINGS_MODULE": "config.settings.prod",
}
# The environment docs/operations.md documents: with it `check --deploy` is clean.
DEPLOY_ENV = {
    **PROD_ENV,
    "ANYMAIL_WEBHOOK_SECRET": "esp:" + "w" * 40,
    "KEEPERS_WEBHOOK_SECRET": "k" * 50,
}


def manage(*args: str, env: dict) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in PROD_ENV}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("missing", ["SECRET_KEY", "ALLOWED_HOSTS", "DATABASE_URL"])
def test_production_refuses_to_start_without(missing):
    env = {k: v for k, v in PROD_ENV.items() if k != missing}
    result = manage("check", env=env)
    assert result.returncode != 0
    assert f"{missing} is not set" in result.stderr


def test_check_deploy_is_clean_with_production_settings():
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=DEPLOY_ENV)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_fails_without_a_webhook_secret():
    # Anymail only warns and then accepts unauthenticated (forged) tracking events
    env = {k: v for k, v in DEPLOY_ENV.items() if k != "ANYMAIL_WEBHOOK_SECRET"}
    result = manage("check", "--deploy", env=env)
    assert result.returncode != 0
    assert "ANYMAIL_WEBHOOK_SECRET" in result.stderr and "crm.E" in result.stderr


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ANYMAIL_WEBHOOK_SECRET", "dev:dev"),
        ("KEEPERS_WEBHOOK_SECRET", ""),  # unset: the dev default
        ("KEEPERS_WEBHOOK_SECRET", "dev-webhook-secret"),
        ("SECRET_KEY", "insecure-dev-key-change-me"),
        ("SECRET_KEY", "test-secret-key-not-for-production"),
    ],
)
def test_check_deploy_fails_with_a_default_secret(name, value):
    result = manage("check", "--deploy", env={**DEPLOY_ENV, name: value})
    assert result.returncode != 0
    assert name in result.stderr and "public default" in result.stderr


def test_periodic_tasks_are_declared_in_code_with_an_expiry(settings):
    import crm.tasks  # noqa: F401  (Celery discovers task modules lazily)
    from config.celery import app

    schedule = settings.CELERY_BEAT_SCHEDULE
    assert schedule["lifecycle-recompute-nightly"]["task"] in app.tasks
    import campaigns.tasks  # noqa: F401
    import loyalty.tasks  # noqa: F401

    assert {entry["task"] for entry in schedule.values()} <= set(app.tasks)
    assert all(entry["options"]["expires"] > 0 for entry in schedule.values())
    assert settings.CELERY_BEAT_SCHEDULER == "django_celery_beat.schedulers:DatabaseScheduler"
    assert settings.CELERY_TASK_ACKS_LATE and settings.CELERY_TASK_REJECT_ON_WORKER_LOST


@pytest.mark.django_db(transaction=True)
def test_a_renamed_beat_entry_does_not_keep_running_after_the_upgrade():
    # beat copied the former hourly full refresh into its table; crm 0010 removes it
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor
    from django_celery_beat.models import CrontabSchedule, PeriodicTask

    executor = MigrationExecutor(connection)
    executor.migrate([("crm", "0009_clv_limit_fits")])
    hourly = CrontabSchedule.objects.create(minute="20")
    PeriodicTask.objects.create(
        name="segments-refresh-all", task="crm.tasks.segments_refresh_all", crontab=hourly
    )
    PeriodicTask.objects.create(
        name="made by staff", task="crm.tasks.rfm_recompute", crontab=hourly
    )

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())

    assert list(PeriodicTask.objects.values_list("name", flat=True)) == ["made by staff"]


def test_the_tasks_beat_runs_every_few_seconds_have_a_queue_of_their_own(settings):
    from datetime import timedelta

    from config.celery import app

    default, frequent = settings.CELERY_TASK_DEFAULT_QUEUE, settings.KEEPERS_FREQUENT_QUEUE
    every_few_seconds = {
        entry["task"]
        for entry in settings.CELERY_BEAT_SCHEDULE.values()
        if isinstance(entry["schedule"], timedelta) and entry["schedule"] < timedelta(minutes=1)
    }
    assert every_few_seconds == {
        "campaigns.tasks.triggers_scan",
        "crm.tasks.segments_refresh_changed",
    }
    for task in every_few_seconds:
        assert app.amqp.router.route({}, task)["queue"].name == frequent
    for task in ("loyalty.tasks.orders_placed", "campaigns.tasks.engine_tick"):
        assert app.amqp.router.route({}, task)["queue"].name == default
    # both are declared, each with its own exchange and key (a message lands in one queue
    # only), so a worker started without -Q consumes both
    declared = {(q.name, q.exchange.name, q.routing_key) for q in settings.CELERY_TASK_QUEUES}
    assert declared == {(default, default, default), (frequent, frequent, frequent)}
    assert set(app.amqp.queues) >= {default, frequent}
