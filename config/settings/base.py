"""Settings shared by every environment. Everything that differs between machines comes
from the environment; dev.py, test.py and prod.py only choose defaults and guards."""

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from celery.schedules import crontab
from csp import constants as csp
from kombu import Exchange, Queue

from .env import env_bool, env_decimal, env_int, env_list, env_networks, env_rate, env_str

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(env_str("KEEPERS_VAR_DIR", str(BASE_DIR / "var")))

# --- Core -------------------------------------------------------------------------------
DEV_SECRET_KEY = "insecure-dev-key-change-me"
SECRET_KEY = env_str("SECRET_KEY", DEV_SECRET_KEY)
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "crm.apps.KeepersAdminConfig",  # django.contrib.admin with Keepers' site (the dashboard)
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "anymail",
    "csp",
    "axes",  # login lockout (below, "Staff login")
    "crm",
    "campaigns",
    "loyalty",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",  # Content-Security-Policy (below, "Headers")
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # last: turns a locked-out login into its page
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Headers: a Content-Security-Policy on every page (django-csp) -----------------------
# Scripts and styles come from our static files or carry the request's nonce
# (`nonce="{{ request.csp_nonce }}"`); no inline handlers or style attributes. Signed
# customer pages add no-store and noindex (campaigns.public_pages.private_page).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [csp.SELF],
        "script-src": [csp.SELF, csp.NONCE],
        "style-src": [csp.SELF, csp.NONCE],
        "img-src": [csp.SELF, "data:"],
        "object-src": [csp.NONE],
        "base-uri": [csp.NONE],
        "form-action": [csp.SELF],
    }
}

# --- Database: SQLite in var/ unless DATABASE_URL names PostgreSQL -------------------------
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'keepers.sqlite3'}"),
        conn_max_age=env_int("DB_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web process, the worker and beat share the file without "database is locked".
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # The orders' covering index (crm.Order) is a plain index on SQLite; that is intended.
    SILENCED_SYSTEM_CHECKS = ["models.W040"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Staff login: lockout after repeated failures (django-axes) ------------------------------
# Axes' backend comes first: it refuses a locked-out username+address before the password
# is checked. KEEPERS_LOGIN_FAILURE_LIMIT failures of one username from one address lock
# that pair for KEEPERS_LOGIN_COOLOFF_HOURS (a success resets the count); the address is
# the one every app reads (crm/client_ip.py, behind KEEPERS_TRUSTED_PROXIES).
# `manage.py axes_reset_username NAME` unlocks early (docs/operations.md).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("KEEPERS_LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(hours=env_int("KEEPERS_LOGIN_COOLOFF_HOURS", 1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "crm.client_ip.client_ip"
AXES_LOCKOUT_TEMPLATE = "admin/lockout.html"
AXES_HTTP_RESPONSE_CODE = 429
AXES_VERBOSE = False  # no banner on every manage.py command; lockouts are still logged

# --- Internationalisation: times are stored in UTC; contacts have their own zone ----------
LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("ja", "日本語")]
TIME_ZONE = env_str("KEEPERS_TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
MEDIA_ROOT = VAR_DIR / "media"

# --- Celery: broker from CELERY_BROKER_URL; at-least-once delivery, idempotent tasks -------
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
CELERY_BROKER_TRANSPORT_OPTIONS: dict = {}
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "broker"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir),
        "data_folder_out": str(_broker_dir),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
else:
    # Longer than any countdown we schedule, so Redis does not redeliver a task still waiting.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 6 * 3600}
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_TASK_DEFAULT_QUEUE", "celery")
# The tasks beat runs every few seconds (the trigger scan, the incremental segment pass)
# have a queue of their own, so a backlog on the default queue (a bulk import's work, a
# broadcast's batches) cannot delay journeys: a worker started with -Q KEEPERS_FREQUENT_QUEUE
# takes only them. Both queues are declared, so a worker started without -Q consumes both.
KEEPERS_FREQUENT_QUEUE = env_str("KEEPERS_FREQUENT_QUEUE", "frequent")
CELERY_TASK_QUEUES = tuple(
    Queue(name, Exchange(name, type="direct"), routing_key=name)
    for name in dict.fromkeys([CELERY_TASK_DEFAULT_QUEUE, KEEPERS_FREQUENT_QUEUE])
)
CELERY_TASK_ROUTES = {
    "campaigns.tasks.triggers_scan": {"queue": KEEPERS_FREQUENT_QUEUE},
    "crm.tasks.segments_refresh_changed": {"queue": KEEPERS_FREQUENT_QUEUE},
}
# Sending can run on its own queue and workers (KEEPERS_SEND_QUEUE), apart from the engine.
if env_str("KEEPERS_SEND_QUEUE", ""):
    CELERY_TASK_ROUTES["campaigns.tasks.messages_send"] = {
        "queue": env_str("KEEPERS_SEND_QUEUE", "")
    }
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# Periodic work, declared here and nowhere else. Each entry expires before the next run, so
# a backlog after downtime never runs the same job twice.
CELERY_BEAT_SCHEDULE = {
    "lifecycle-recompute-nightly": {
        "task": "crm.tasks.lifecycle_recompute_all",
        "schedule": crontab(hour=3, minute=15),
        "options": {"expires": 6 * 3600},
    },
    "rfm-recompute-nightly": {
        "task": "crm.tasks.rfm_recompute",
        "schedule": crontab(hour=3, minute=45),
        "options": {"expires": 6 * 3600},
    },
    "segments-refresh-changed": {
        "task": "crm.tasks.segments_refresh_changed",
        "schedule": timedelta(seconds=5),
        "options": {"expires": 10},
    },
    "campaigns-engine-tick": {
        "task": "campaigns.tasks.engine_tick",
        "schedule": timedelta(minutes=1),
        "options": {"expires": 50},
    },
    "campaigns-broadcasts-tick": {
        "task": "campaigns.tasks.broadcasts_tick",
        "schedule": timedelta(minutes=1),
        "options": {"expires": 50},
    },
    "campaigns-triggers-scan": {
        "task": "campaigns.tasks.triggers_scan",
        "schedule": timedelta(seconds=5),
        "options": {"expires": 10},
    },
    "campaigns-date-triggers": {
        "task": "campaigns.tasks.date_triggers_run",
        "schedule": crontab(minute=5),
        "options": {"expires": 3000},
    },
    "recommendations-refresh-nightly": {
        "task": "crm.tasks.recommendations_refresh",
        "schedule": crontab(hour=3, minute=30),
        "options": {"expires": 6 * 3600},
    },
    "loyalty-expire": {
        "task": "loyalty.tasks.expire_due",
        "schedule": crontab(minute=10),
        "options": {"expires": 3000},
    },
    "loyalty-referral-rewards": {
        "task": "loyalty.tasks.referrals_reward_due",
        "schedule": crontab(minute=25),
        "options": {"expires": 3000},
    },
    "loyalty-tiers-nightly": {
        "task": "loyalty.tasks.tiers_recompute",
        "schedule": crontab(hour=2, minute=40),
        "options": {"expires": 6 * 3600},
    },
    "loyalty-birthday-bonuses": {
        "task": "loyalty.tasks.birthday_bonuses",
        "schedule": crontab(minute=15),
        "options": {"expires": 3000},
    },
    "loyalty-reconcile": {
        "task": "loyalty.tasks.reconcile",
        "schedule": crontab(hour=4, minute=10),
        "options": {"expires": 6 * 3600},
    },
    "crm-clv-fit-nightly": {
        "task": "crm.tasks.clv_fit",
        "schedule": crontab(hour=4, minute=30),
        "options": {"expires": 6 * 3600},
    },
    "segments-refresh-drifting": {
        "task": "crm.tasks.segments_refresh_drifting",
        "schedule": crontab(minute=20),
        "options": {"expires": 3000},
    },
    "campaigns-unconfirmed-sweep": {
        "task": "campaigns.tasks.messages_unconfirmed_sweep",
        "schedule": timedelta(minutes=1),
        "options": {"expires": 50},
    },
    "campaigns-webhooks-lost-sweep": {
        "task": "campaigns.tasks.webhooks_lost_sweep",
        "schedule": timedelta(minutes=5),
        "options": {"expires": 250},
    },
    "campaigns-message-bodies-purge": {
        "task": "campaigns.tasks.message_bodies_purge",
        "schedule": crontab(hour=4, minute=50),
        "options": {"expires": 6 * 3600},
    },
    "segments-refresh-all-nightly": {
        "task": "crm.tasks.segments_refresh_all",
        "schedule": crontab(hour=3, minute=50),
        "options": {"expires": 6 * 3600},
    },
}

if env_bool("KEEPERS_FAST_BEAT", False):
    # End-to-end tests: beat drives the engine every second instead of every minute.
    for _name in (
        "campaigns-engine-tick",
        "campaigns-broadcasts-tick",
        "campaigns-triggers-scan",
        "segments-refresh-changed",
        "campaigns-unconfirmed-sweep",
    ):
        CELERY_BEAT_SCHEDULE[_name]["schedule"] = timedelta(seconds=1)
        CELERY_BEAT_SCHEDULE[_name]["options"] = {"expires": 5}

# --- Email: Anymail; the ESP is chosen by EMAIL_BACKEND and ANYMAIL_* --------------------
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.filebased.EmailBackend")
EMAIL_FILE_PATH = VAR_DIR / "outbox"
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Keepers Demo Shop <shop@example.com>")
# Reply-To of every email whose template sets none; empty: replies go to the sender.
KEEPERS_REPLY_TO = env_str("REPLY_TO_EMAIL", "")
DEV_WEBHOOK_SECRET = "dev:dev"
ANYMAIL = {
    "WEBHOOK_SECRET": env_str("ANYMAIL_WEBHOOK_SECRET", DEV_WEBHOOK_SECRET),
}
# ESP credentials, when set: ANYMAIL_POSTMARK_SERVER_TOKEN, ANYMAIL_MAILGUN_API_KEY, ...
ANYMAIL.update(
    {
        key.removeprefix("ANYMAIL_"): value
        for key, value in os.environ.items()
        if key.startswith("ANYMAIL_") and key != "ANYMAIL_WEBHOOK_SECRET" and value
    }
)

# --- REST API ----------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["crm.api.auth.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["crm.api.auth.HasApiKeyScope"],
    "DEFAULT_PARSER_CLASSES": ["crm.api.parsers.LimitedJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "crm.api.pagination.NewestFirstCursorPagination",
    "PAGE_SIZE": 100,
    "DEFAULT_SCHEMA_CLASS": "crm.api.schema.KeepersAutoSchema",
    "EXCEPTION_HANDLER": "crm.api.errors.exception_handler",
    "DEFAULT_THROTTLE_CLASSES": ["crm.api.auth.ApiKeyRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"api_key": env_str("KEEPERS_API_RATE", "100000/minute")},
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Keepers API",
    "DESCRIPTION": (
        "Contacts, events, orders and products for Keepers, the customer-lifecycle CRM. "
        "Authenticate with `Authorization: Bearer <api key>`. Every 4xx answers "
        '`{"code", "message", "details"}`. The Segment-compatible tracking endpoints live '
        "at `/v1/batch`, `/v1/identify`, `/v1/track`, `/v1/page` and `/v1/alias`."
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    # Swagger UI served from our own static files: no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "MeddicStatusEnum": "crm.models.MeddicStatus",
        "SurveyKindEnum": "campaigns.models.Survey.Kind",
    },
}
# Request bodies: JSON endpoints take up to this many bytes (1,000 events a request fit).
KEEPERS_MAX_BODY_BYTES = env_int("KEEPERS_MAX_BODY_BYTES", 8 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = KEEPERS_MAX_BODY_BYTES
# Bounds on integrator input (crm/services/parsing.py): JSON nesting, the size of one
# attributes / properties object, tags on a contact, and the years a date may fall in.
KEEPERS_MAX_JSON_DEPTH = env_int("KEEPERS_MAX_JSON_DEPTH", 32)
KEEPERS_MAX_ATTRIBUTES_BYTES = env_int("KEEPERS_MAX_ATTRIBUTES_BYTES", 64 * 1024)
KEEPERS_MAX_TAGS = env_int("KEEPERS_MAX_TAGS", 100)
KEEPERS_DATE_MIN_YEAR = env_int("KEEPERS_DATE_MIN_YEAR", 1900)
KEEPERS_DATE_MAX_YEAR = env_int("KEEPERS_DATE_MAX_YEAR", 2100)
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024

# --- Keepers: the shop and the lifecycle model ---------------------------------------------
KEEPERS_SHOP_NAME = env_str("KEEPERS_SHOP_NAME", "Keepers Demo Shop")
KEEPERS_BASE_CURRENCY = env_str("KEEPERS_BASE_CURRENCY", "USD")
KEEPERS_SHOP_ADDRESS = env_str("KEEPERS_SHOP_ADDRESS", "1 Market Street, Springfield, USA")
KEEPERS_SHOP_URL = env_str("KEEPERS_SHOP_URL", "https://shop.example.com")
# the logo in block emails' header (an https address; empty: the shop's name instead)
KEEPERS_SHOP_LOGO_URL = env_str("KEEPERS_SHOP_LOGO_URL", "")
# Where customers reach Keepers' public pages (links in emails).
KEEPERS_PUBLIC_URL = env_str("KEEPERS_PUBLIC_URL", "http://127.0.0.1:8000")
KEEPERS_SHOP_TIME_ZONE = env_str("KEEPERS_SHOP_TIME_ZONE", "UTC")
# Tests only: a file holding seconds to add to the clock in every process (never in production).
KEEPERS_CLOCK_FILE = env_str("KEEPERS_CLOCK_FILE", "")
# Enrollments a worker advances per task (the tick fans due enrollments out in batches).
KEEPERS_ENGINE_BATCH = env_int("KEEPERS_ENGINE_BATCH", 500)
# Referrals: the friend's first order must reach the minimum (base currency); rewards wait
# for the return window; rewards are points:N, credit:AMOUNT:CUR[:DAYS] or coupon:PCT[:DAYS].
# Loyalty tiers: downgrades happen only on this yearly review day (MM-DD, shop time).
KEEPERS_TIER_REVIEW = env_str("KEEPERS_TIER_REVIEW", "01-01")
KEEPERS_REFERRAL_MIN_ORDER = env_decimal("KEEPERS_REFERRAL_MIN_ORDER", "30")
KEEPERS_REFERRAL_RETURN_DAYS = env_int("KEEPERS_REFERRAL_RETURN_DAYS", 30)
KEEPERS_REFERRAL_MONTHLY_CAP = env_int("KEEPERS_REFERRAL_MONTHLY_CAP", 10)
KEEPERS_REFERRAL_REFERRER_REWARD = env_str("KEEPERS_REFERRAL_REFERRER_REWARD", "credit:10:USD:90")
KEEPERS_REFERRAL_FRIEND_REWARD = env_str("KEEPERS_REFERRAL_FRIEND_REWARD", "credit:10:USD:30")
# Metrics: a contact is a customer at d when their last order is within this many days.
KEEPERS_ACTIVE_WINDOW_DAYS = env_int("KEEPERS_ACTIVE_WINDOW_DAYS", 365)
# Predicted CLV: horizon and monthly discount rate; optionally, at_risk from P(alive).
KEEPERS_CLV_HORIZON_MONTHS = env_int("KEEPERS_CLV_HORIZON_MONTHS", 12)
KEEPERS_CLV_MONTHLY_DISCOUNT = float(env_decimal("KEEPERS_CLV_MONTHLY_DISCOUNT", "0.01"))
KEEPERS_AT_RISK_FROM_CLV = env_bool("KEEPERS_AT_RISK_FROM_CLV", False)
KEEPERS_AT_RISK_P_ALIVE = float(env_decimal("KEEPERS_AT_RISK_P_ALIVE", "0.3"))
# Recommendations: bestsellers are counted over this many days.
KEEPERS_BESTSELLER_DAYS = env_int("KEEPERS_BESTSELLER_DAYS", 90)
# Delivery: an address is suppressed after this many soft-bounced messages in a row.
KEEPERS_SOFT_BOUNCE_LIMIT = env_int("KEEPERS_SOFT_BOUNCE_LIMIT", 3)
# Journeys: an event received more than this many hours after it happened (a late upload,
# a backfill) does not start journeys; it still counts for goals and conversions.
KEEPERS_LATE_EVENT_HOURS = env_int("KEEPERS_LATE_EVENT_HOURS", 24)
# A queued message older than this is handed to a sender again by the tick.
KEEPERS_STALE_QUEUED_SECONDS = env_int("KEEPERS_STALE_QUEUED_SECONDS", 120)
# A message claimed for sending and not marked after this long becomes "unconfirmed".
KEEPERS_SENDING_TIMEOUT_SECONDS = env_int("KEEPERS_SENDING_TIMEOUT_SECONDS", 600)
# A pending webhook delivery overdue by this long (its retry task lost) is handed out again.
KEEPERS_WEBHOOK_LOST_SECONDS = env_int("KEEPERS_WEBHOOK_LOST_SECONDS", 900)
# Message bodies (HTML, text) are emptied this many days after queueing; 0 keeps them.
KEEPERS_MESSAGE_BODY_DAYS = env_int("KEEPERS_MESSAGE_BODY_DAYS", 180)
# Signs outbound webhooks (HMAC-SHA256); set your own in production.
DEV_KEEPERS_WEBHOOK_SECRET = "dev-webhook-secret"
KEEPERS_WEBHOOK_SECRET = env_str("KEEPERS_WEBHOOK_SECRET", DEV_KEEPERS_WEBHOOK_SECRET)
# Secrets whose development and test values are public (in this repository):
# `check --deploy` refuses each of them (crm/checks.py).
KEEPERS_PUBLIC_SECRETS = {
    "SECRET_KEY": [DEV_SECRET_KEY, "test-secret-key-not-for-production"],
    "ANYMAIL_WEBHOOK_SECRET": [DEV_WEBHOOK_SECRET],
    "KEEPERS_WEBHOOK_SECRET": [DEV_KEEPERS_WEBHOOK_SECRET],
}
# Lifecycle thresholds (docs/architecture.md, "Lifecycle stages"). Windows are days.
KEEPERS_AT_RISK_DAYS = env_int("KEEPERS_AT_RISK_DAYS", 90)
KEEPERS_LAPSED_DAYS = env_int("KEEPERS_LAPSED_DAYS", 180)
KEEPERS_LOYAL_MIN_ORDERS = env_int("KEEPERS_LOYAL_MIN_ORDERS", 4)
KEEPERS_LOYAL_SPEND_12M = env_decimal("KEEPERS_LOYAL_SPEND_12M", "500")
KEEPERS_UNENGAGED_DAYS = env_int("KEEPERS_UNENGAGED_DAYS", 90)
# Events that count as engagement with email (opens and clicks; tracking adds them later).
KEEPERS_ENGAGEMENT_EVENTS = env_list(
    "KEEPERS_ENGAGEMENT_EVENTS", "Email Opened,Email Clicked,Email Link Clicked"
)
# Send policy for marketing mail (never transactional): caps per contact and quiet hours in
# the contact's own time zone. A held message waits for the next allowed moment.
KEEPERS_CAP_24H = env_int("KEEPERS_CAP_24H", 2)
KEEPERS_CAP_7D = env_int("KEEPERS_CAP_7D", 6)
KEEPERS_QUIET_HOURS = env_list("KEEPERS_QUIET_HOURS", "21:00,08:00")  # start, end (local)
# Segment-compatible tracking limits (Segment's own).
KEEPERS_TRACK_MAX_EVENT_BYTES = env_int("KEEPERS_TRACK_MAX_EVENT_BYTES", 32 * 1024)
KEEPERS_TRACK_MAX_BATCH_BYTES = env_int("KEEPERS_TRACK_MAX_BATCH_BYTES", 500 * 1024)
KEEPERS_BATCH_MAX_ITEMS = env_int("KEEPERS_BATCH_MAX_ITEMS", 1000)
# Client addresses (crm.client_ip): requests from these proxies (addresses or CIDR
# networks) have their client's address read from X-Forwarded-For; anyone else's
# connection address is the client's. Empty: no proxy is believed.
KEEPERS_TRUSTED_PROXIES = env_networks("KEEPERS_TRUSTED_PROXIES")
# Abuse limits on the public pages (crm.limits, counted in the cache): "N/second|minute|
# hour|day" or "off", per client address and per email address (or contact).
KEEPERS_RATE_SUBSCRIBE_IP = env_rate("KEEPERS_RATE_SUBSCRIBE_IP", "10/hour")
KEEPERS_RATE_SUBSCRIBE_ADDRESS = env_rate("KEEPERS_RATE_SUBSCRIBE_ADDRESS", "3/day")
KEEPERS_RATE_RENEW_IP = env_rate("KEEPERS_RATE_RENEW_IP", "10/hour")
KEEPERS_RATE_RENEW_ADDRESS = env_rate("KEEPERS_RATE_RENEW_ADDRESS", "3/hour")
KEEPERS_RATE_SURVEY_IP = env_rate("KEEPERS_RATE_SURVEY_IP", "60/hour")
KEEPERS_RATE_SURVEY_CONTACT = env_rate("KEEPERS_RATE_SURVEY_CONTACT", "20/hour")
# Test sends of a template (admin preview, POST /api/v1/email-templates/<id>/test-send/):
# per sender (an API key, a staff user) and per address sent to.
KEEPERS_RATE_TEST_SEND = env_rate("KEEPERS_RATE_TEST_SEND", "30/hour")
KEEPERS_RATE_TEST_SEND_ADDRESS = env_rate("KEEPERS_RATE_TEST_SEND_ADDRESS", "20/hour")
# The subscribe form's signed token (it works without cookies, so the form can be embedded
# on the shop's site) is good for one submission within this many seconds.
KEEPERS_SUBSCRIBE_FORM_MAX_AGE = env_int("KEEPERS_SUBSCRIBE_FORM_MAX_AGE", 86400)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}
