"""Settings for cdphub: everything comes from the environment, with embedded defaults for one machine."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("CDPHUB_DATA_DIR", BASE_DIR / "var"))
DATA_DIR.mkdir(parents=True, exist_ok=True)


def env_flag(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _embedded_secret(filename: str, make) -> str:
    """Read a secret generated once into the data dir (the embedded default for one machine)."""
    path = DATA_DIR / filename
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(make())
    return path.read_text().strip()


SECRET_KEY = os.environ.get("CDPHUB_SECRET_KEY") or _embedded_secret("secret_key", lambda: secrets.token_urlsafe(50))
DEBUG = env_flag("CDPHUB_DEBUG")
ALLOWED_HOSTS = [
    h.strip() for h in os.environ.get("CDPHUB_ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]").split(",") if h.strip()
]
CSRF_TRUSTED_ORIGINS = [h.strip() for h in os.environ.get("CDPHUB_CSRF_TRUSTED_ORIGINS", "").split(",") if h.strip()]
ALLOW_PRIVATE_URLS = env_flag("CDPHUB_ALLOW_PRIVATE_URLS")
# The vendor sandbox's URL (e.g. http://127.0.0.1:9100): calls to the real hosts it fakes (SFMC, Marketo, Zendesk,
# Braze) go there instead, for the demo and tests without internet (integrations/vendors/http.py). Empty: off.
SANDBOX_URL = os.environ.get("CDPHUB_SANDBOX_URL", "").strip().rstrip("/")
# Functions (integrations/functions): each invocation's wall-clock limit, as Segment's (5 s), and each V8
# context's heap limit.
FUNCTION_TIMEOUT = float(os.environ.get("CDPHUB_FUNCTION_TIMEOUT", "5"))
FUNCTION_MEMORY_MB = int(os.environ.get("CDPHUB_FUNCTION_MEMORY_MB", "128"))
BEHIND_PROXY = env_flag("CDPHUB_BEHIND_PROXY")  # trust X-Forwarded-For for context.ip

INSTALLED_APPS = [
    "cdphub.apps.AdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_q",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "integrations",
    "deliveries",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, so it sees a view's exception first: the database unreachable is a 503 with Retry-After, not a 500.
    "deliveries.outage.DatabaseOutageMiddleware",
]

ROOT_URLCONF = "cdphub.urls"
WSGI_APPLICATION = "cdphub.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
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

# SQLite in WAL mode with IMMEDIATE transactions: a deferred read-then-write transaction gets
# SQLITE_BUSY at once without honouring the busy timeout ("database is locked"); see stack.md §3.
SQLITE_OPTIONS = {
    "transaction_mode": "IMMEDIATE",
    "timeout": 20,
    "init_command": (
        "PRAGMA journal_mode=WAL;"
        "PRAGMA synchronous=NORMAL;"
        "PRAGMA temp_store=MEMORY;"
        "PRAGMA cache_size=-20000;"
        "PRAGMA journal_size_limit=67108864;"
    ),
}

DATABASE_URL = os.environ.get("CDPHUB_DATABASE_URL", "")
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)}
    if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
        DATABASES["default"]["OPTIONS"] = SQLITE_OPTIONS
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": DATA_DIR / "cdphub.sqlite3",
            "OPTIONS": SQLITE_OPTIONS,
            "CONN_MAX_AGE": 60,
            # A file, not memory: live servers, child processes and concurrency tests share it.
            "TEST": {"NAME": DATA_DIR / "test-cdphub.sqlite3"},
        }
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("CDPHUB_TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)  # WhiteNoise warns on every start until collectstatic has run
STATICFILES_DIRS = [BASE_DIR / "static"] if (BASE_DIR / "static").is_dir() else []
# gunicorn serves static files through WhiteNoise (compressed), so no extra web server is needed.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# Delivery: django-q2 runs drain tasks; retries, leases and limits live in our own tables (stack.md §2).
BROKER_URL = os.environ.get("CDPHUB_BROKER", "")
Q_CLUSTER = {
    "name": "cdphub",
    "workers": int(os.environ.get("CDPHUB_WORKERS", "4")),
    "timeout": 300,  # > a drain's time box + a vendor call
    "retry": 360,  # ORM redelivery timeout: must exceed timeout
    "max_attempts": 1,  # our Delivery rows own retries
    "ack_failures": True,
    "save_limit": -1,  # the Attempt table is the log; keeping successes costs 5-7x throughput
    "queue_limit": 8,
    "poll": 0.05,
    "catch_up": False,
    "label": "Task queue",
    "cache": "qcluster",
    "log_level": os.environ.get("CDPHUB_WORKER_LOG_LEVEL", "WARNING"),
}
if BROKER_URL.startswith("redis"):
    Q_CLUSTER["redis"] = BROKER_URL
    Q_CLUSTER["broker_class"] = "deliveries.broker.RedisBroker"  # rides out a Redis restart (deliveries/broker.py)
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "qcluster": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": BROKER_URL},
    }
else:
    Q_CLUSTER["orm"] = "default"
    Q_CLUSTER["broker_class"] = "deliveries.broker.DatabaseBroker"
    Q_CLUSTER["bulk"] = 4
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "qcluster": {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache", "LOCATION": DATA_DIR / "cache"},
    }

DELIVERY_RETRY_BASE = float(os.environ.get("CDPHUB_RETRY_BASE_SECONDS", "10"))
DELIVERY_RETRY_CAP = float(os.environ.get("CDPHUB_RETRY_CAP_SECONDS", "900"))
DELIVERY_LEASE_MARGIN = float(os.environ.get("CDPHUB_LEASE_MARGIN_SECONDS", "30"))
DELIVERY_DRAIN_SECONDS = float(os.environ.get("CDPHUB_DRAIN_SECONDS", "5"))
DELIVERY_QUEUE_LEASE = float(os.environ.get("CDPHUB_QUEUE_LEASE_SECONDS", "60"))
DELIVERY_SWEEP_SECONDS = float(os.environ.get("CDPHUB_SWEEP_SECONDS", "2"))
# A drain that ran out of work waits this long for more before handing its process back (0: never).
DELIVERY_LINGER_SECONDS = float(os.environ.get("CDPHUB_LINGER_SECONDS", "0.5"))
# The circuit breaker (deliveries/engine/circuit.py): a destination whose calls failed this many times in a row,
# for at least this long, is set aside and probed, first after CIRCUIT_PROBE_SECONDS, then twice as long each
# time up to the cap.
CIRCUIT_FAILURES = int(os.environ.get("CDPHUB_CIRCUIT_FAILURES", "50"))
CIRCUIT_FAILING_SECONDS = float(os.environ.get("CDPHUB_CIRCUIT_FAILING_SECONDS", "10"))
CIRCUIT_PROBE_SECONDS = float(os.environ.get("CDPHUB_CIRCUIT_PROBE_SECONDS", "30"))
CIRCUIT_PROBE_CAP_SECONDS = float(os.environ.get("CDPHUB_CIRCUIT_PROBE_CAP_SECONDS", "600"))

# Retention (deliveries/engine/purge.py): the days each kind of row is kept; a superuser can override each in the
# admin (Retention policy). Exchange bodies: an attempt's HTTP request and response bodies, kept as a summary
# (method, URL, status, duration, sizes) after that. Test sends: the Event Tester's events and deliveries.
RETENTION_DEFAULT_DAYS = {
    "events": 30,
    "deliveries": 30,
    "exchange_bodies": 14,
    "test_sends": 1,
    "rejected_events": 7,
    "minute_rollups": 3,
    "hourly_rollups": 400,
}


def retention_days(name: str, default: int) -> int:
    """CDPHUB_RETENTION_<NAME>_DAYS: a whole number of days, at least 1 (nothing is kept for less than a day)."""
    variable = f"CDPHUB_RETENTION_{name.upper()}_DAYS"
    raw = os.environ.get(variable, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(f"{variable} must be a whole number of days, at least 1 (it is {raw!r}).")
    return int(raw)


RETENTION_DAYS = {name: retention_days(name, days) for name, days in RETENTION_DEFAULT_DAYS.items()}
# The sweeper purges at most this often, for at most this long each time; no purge transaction holds the
# database's write lock longer than RETENTION_CHUNK_MS (the chunk size adapts to it).
RETENTION_PURGE_EVERY_SECONDS = float(os.environ.get("CDPHUB_RETENTION_PURGE_EVERY_SECONDS", "60"))
RETENTION_PURGE_BUDGET_SECONDS = float(os.environ.get("CDPHUB_RETENTION_PURGE_BUDGET_SECONDS", "0.5"))
RETENTION_CHUNK_MS = float(os.environ.get("CDPHUB_RETENTION_CHUNK_MS", "50"))

# Alerts (deliveries/engine/alerts/): rules are evaluated by the sweeper at most this often, and told by email
# (Django's SMTP backend) and/or a webhook signed like the webhook vendor's. Each rule may name its own recipients,
# URL and secret; these are the hub's defaults. Nothing configured: alerts are listed in the admin only.
ALERT_EVALUATE_SECONDS = float(os.environ.get("CDPHUB_ALERT_EVALUATE_SECONDS", "30"))
ALERT_EMAILS = [a.strip() for a in os.environ.get("CDPHUB_ALERT_EMAILS", "").split(",") if a.strip()]
ALERT_FROM = os.environ.get("CDPHUB_ALERT_FROM", "cdphub <cdphub@localhost>")
ALERT_WEBHOOK_URL = os.environ.get("CDPHUB_ALERT_WEBHOOK_URL", "").strip()
ALERT_WEBHOOK_SECRET = os.environ.get("CDPHUB_ALERT_WEBHOOK_SECRET", "")
EMAIL_HOST = os.environ.get("CDPHUB_EMAIL_HOST", "localhost")
EMAIL_PORT = int(os.environ.get("CDPHUB_EMAIL_PORT", "25"))
EMAIL_HOST_USER = os.environ.get("CDPHUB_EMAIL_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("CDPHUB_EMAIL_PASSWORD", "")
EMAIL_USE_TLS = env_flag("CDPHUB_EMAIL_USE_TLS")
EMAIL_TIMEOUT = 5  # seconds: the sweeper waits for it, and a dead SMTP server must not hold it long

# Ingest keeps the source of a write key and the destinations of a source this long per process; a change
# made elsewhere (another worker, another machine) reaches ingest within it (deliveries/ingest.py).
INGEST_CACHE_SECONDS = float(os.environ.get("CDPHUB_INGEST_CACHE_SECONDS", "5"))

# The public base URL shown in snippets on the source page (the request's host when empty).
PUBLIC_URL = os.environ.get("CDPHUB_PUBLIC_URL", "")

# The management API (/api/v1/, deliveries/api/). The Tracking API's views set their own classes: no session, no
# throttle, the write key as the only authentication.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "deliveries.api.auth.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",  # the browsable API, with CSRF
    ],
    "DEFAULT_PERMISSION_CLASSES": ["deliveries.api.auth.ModelPermissions"],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_PARSER_CLASSES": ["deliveries.api.parsing.JsonParser"],
    "DEFAULT_THROTTLE_CLASSES": ["deliveries.api.auth.UserThrottle", "deliveries.api.auth.AnonymousThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "user": os.environ.get("CDPHUB_API_THROTTLE", "1200/min"),
        "anon": os.environ.get("CDPHUB_API_ANON_THROTTLE", "60/min"),
    },
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "deliveries.api.errors.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "cdphub management API",
    "DESCRIPTION": (
        "Configure sources, destinations and JavaScript functions (their versions, roll back and Run test), read "
        "events and their deliveries, retry and replay, and export or import the workspace. Authenticate with "
        "`Authorization: Bearer <API token>` (create one in the admin "
        "under API tokens); a token acts as its user, so a Marketer's token has a Marketer's limits. Secrets are "
        'write-only: accepted on create and update, answered as "set", never returned.'
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1",  # tags and operation ids from the resource: "sources", not "api"
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,  # writeOnly secrets: a request body and a response body of their own
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "cdphub": {"handlers": ["console"], "level": os.environ.get("CDPHUB_LOG_LEVEL", "INFO")},
        "django": {"handlers": ["console"], "level": "WARNING"},
        # Refused API requests are answered and recorded for the Debugger; one log line each is noise.
        "django.request": {"handlers": ["console"], "level": "ERROR", "propagate": False},
    },
}
