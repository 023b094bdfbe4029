"""Settings, read from the environment only (django-environ).

Every variable is listed with its default in `.env.example`. Without any
environment the server runs on the embedded default that `make run` uses:
SQLite, Celery tasks executed in-process, mail written to files, the database
as the shared cache.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import environ

from keys.logs import init_sentry, logging_config

from .settings_api import rest_framework_settings, spectacular_settings

# pysequoia attaches a full Rust backtrace to every error when this is 1: it
# costs time and memory and must never reach a user. Set here, once, before
# anything can call into the OpenPGP library.
os.environ["RUST_BACKTRACE"] = "0"

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# The .env file (ENV_FILE, default ./.env) fills in what the environment does
# not set; everything below is read after it, so .env can set every setting.
ENV_FILE = Path(os.environ.get("ENV_FILE", BASE_DIR / ".env"))
if ENV_FILE.exists():
    environ.Env.read_env(ENV_FILE)

VAR_DIR = Path(env.str("VAR_DIR", default=str(BASE_DIR / "var")))

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    # A stable per-checkout key for the embedded default; production sets
    # SECRET_KEY (a system check warns when it is missing outside DEBUG).
    _key_file = VAR_DIR / "secret_key"
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    if not _key_file.exists():
        import secrets

        _key_file.write_text(secrets.token_urlsafe(50))
        _key_file.chmod(0o600)
    SECRET_KEY = _key_file.read_text().strip()
    SECRET_KEY_FROM_FILE = True
else:
    SECRET_KEY_FROM_FILE = False

PORT = env.int("PORT", default=8000)
SITE_URL = env.str("SITE_URL", default=f"http://127.0.0.1:{PORT}").rstrip("/")
SITE_NAME = env.str("SITE_NAME", default="OpenPGP keyserver")

# Web Key Directory (draft-koch-openpgp-webkey-service): the domains served.
WKD_DOMAINS = [d.lower() for d in env.list("WKD_DOMAINS", default=[])]
# Serve the advanced method (/.well-known/openpgpkey/<domain>/hu/...) whatever
# the Host header (a CNAME of openpgpkey.<domain> to this server); when false,
# only when Host is openpgpkey.<domain>.
WKD_ADVANCED_ANY_HOST = env.bool("WKD_ADVANCED_ANY_HOST", default=True)
# The WKS submission address, served as .../submission-address when set;
# "{domain}" is replaced by the domain asked for.
WKD_SUBMISSION_ADDRESS = env.str("WKD_SUBMISSION_ADDRESS", default="")
# gpg pointed at hkp://127.0.0.1:PORT sends "Host: localhost:PORT".
ALLOWED_HOSTS = [
    *env.list("ALLOWED_HOSTS", default=[]),
    "localhost",
    "127.0.0.1",
    "[::1]",
    *WKD_DOMAINS,
    *[f"openpgpkey.{d}" for d in WKD_DOMAINS],
]
_site_host = SITE_URL.split("://", 1)[-1].split("/", 1)[0].split(":")[0]
if _site_host and _site_host not in ALLOWED_HOSTS:
    ALLOWED_HOSTS.append(_site_host)
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[SITE_URL])
CSRF_FAILURE_VIEW = "keys.views.pages.csrf_failure"  # a styled 403: reload the page, allow cookies
# Client addresses: REMOTE_ADDR, unless the request came through one of these
# proxies, in which case the right-most untrusted X-Forwarded-For entry.
TRUSTED_PROXIES = env.list("TRUSTED_PROXIES", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "csp",
    "keys",
    "federation",
]

MIDDLEWARE = [
    "keys.views.observe.RequestMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "keys.views.csp.PageCSPMiddleware",
    "keys.replica.ReplicaMiddleware",
    "keys.views.http.ProtocolMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "keys.views.http.KeyserverErrorMiddleware",
]

ROOT_URLCONF = "attester.urls"
WSGI_APPLICATION = "attester.wsgi.application"

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
                "django.template.context_processors.i18n",
                "keys.context_processors.site",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'keyserver.sqlite3'}")}
# A streaming replica (PostgreSQL): lookups in web requests read it, every
# write and every read that must see one reads the primary (keys/replica.py).
DATABASE_REPLICA_URL = env.str("DATABASE_REPLICA_URL", default="")
if DATABASE_REPLICA_URL:
    DATABASES["replica"] = {**env.db("DATABASE_REPLICA_URL"), "TEST": {"MIRROR": "default"}}
DATABASE_ROUTERS = ["keys.replica.PrimaryReplicaRouter"]
# After an unsafe request a browser reads the primary for this long (replication lag).
REPLICA_PIN_SECONDS = env.int("REPLICA_PIN_SECONDS", default=15)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A second writer (the in-process scheduler) waits instead of failing
    # with "database is locked".
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 20
else:
    # The hot lookups (keys/rows.py) run as prepared statements, planned once
    # per connection; the ORM's client-side cursors are not affected. Set it
    # empty behind a transaction-pooling proxy that cannot keep them.
    _prepare = env.str("DB_PREPARE_THRESHOLD", default="5")
    # Persistent connections, or DB_POOL=N: psycopg's pool of N per process (measured).
    _pool = env.int("DB_POOL", default=0)
    for _db in DATABASES.values():
        _db["CONN_MAX_AGE"] = 0 if _pool else env.int("CONN_MAX_AGE", default=60)
        _db["CONN_HEALTH_CHECKS"] = not _pool
        _db.setdefault("OPTIONS", {})["prepare_threshold"] = int(_prepare) if _prepare else None
        if _pool:
            _db["OPTIONS"]["pool"] = {"min_size": 1, "max_size": _pool, "timeout": 10}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Rate limits, negative caches and circuit breakers live here, so every
# process sees the same counters: Redis when configured, else the database.
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {
            # Redis, or the process's memory while Redis does not answer (keys/cache.py).
            "BACKEND": "keys.cache.ResilientRedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env.str("CACHE_KEY_PREFIX", default="ks"),
            "OPTIONS": {
                "socket_connect_timeout": env.float("REDIS_TIMEOUT", default=0.5),
                "socket_timeout": env.float("REDIS_TIMEOUT", default=0.5),
            },
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "keyserver_cache",
        }
    }

# Celery: a real broker when REDIS_URL (or CELERY_BROKER_URL) is set; without
# one, tasks run in-process right after the transaction commits.
# (memory://localhost/: with no host, kombu warns on every task sent.)
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL or "memory://localhost/")
CELERY_TASK_ALWAYS_EAGER = env.bool(
    "CELERY_TASK_ALWAYS_EAGER", default=CELERY_BROKER_URL.startswith("memory://")
)
CELERY_TASK_EAGER_PROPAGATES = False
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Three queues, so a refresh backlog never delays a confirmation mail: run
# workers with -Q mail, -Q refresh and -Q housekeeping (or one with all three).
CELERY_TASK_DEFAULT_QUEUE = "housekeeping"
CELERY_TASK_ROUTES = {
    "keys.tasks.deliver_mail": {"queue": "mail"},
    "keys.tasks.sweep_outbox": {"queue": "mail"},
    "keys.tasks.send_*": {"queue": "mail"},
    "keys.tasks.reconfirm_addresses": {"queue": "mail"},
    "federation.tasks.*": {"queue": "refresh"},
    "keys.tasks.housekeeping_task": {"queue": "housekeeping"},
}
CELERY_QUEUES = ("mail", "refresh", "housekeeping")
# A worker started without -Q consumes all three, and "celery", the queue
# of versions before these (messages they left are drained, not stranded).
CELERY_TASK_QUEUES = {name: {"routing_key": name} for name in (*CELERY_QUEUES, "celery")}
# Beat sends a heartbeat to each queue this often; /readyz reports a worker
# that answered within a minute and when beat last sent a task.
CELERY_HEARTBEAT_SECONDS = env.int("CELERY_HEARTBEAT_SECONDS", default=20)
CELERY_BEAT_SCHEDULER = "attester.celery:RecordingScheduler"

# Mail: SMTP with EMAIL_URL (smtp://user:pass@host:port, smtp+tls://, smtps://);
# without it, one file per message under var/mail/.
EMAIL_URL = env.str("EMAIL_URL", default="")
EMAIL_FILE_PATH = str(env.path("EMAIL_FILE_PATH", default=str(VAR_DIR / "mail")))
if EMAIL_URL:
    vars().update(env.email_url("EMAIL_URL"))
else:
    EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=20)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="keyserver@localhost")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
# The outbox (keys.services.outbox): a mail that cannot be delivered is tried
# again with back-off (30 s doubling, at most MAIL_RETRY_MAX_SECONDS apart)
# until MAIL_RETRY_HOURS after it was queued; a sweep every
# OUTBOX_SWEEP_SECONDS delivers whatever no wake-up reached.
MAIL_RETRY_HOURS = env.float("MAIL_RETRY_HOURS", default=48)
MAIL_RETRY_MAX_SECONDS = env.int("MAIL_RETRY_MAX_SECONDS", default=3600)
OUTBOX_SWEEP_SECONDS = env.int("OUTBOX_SWEEP_SECONDS", default=60)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("de", "Deutsch")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"]
WHITENOISE_USE_FINDERS = True  # static files straight from the apps (no collectstatic needed)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# Uploads: DESIGN.md caps dearmored key data at 1 MiB. Django's own request
# cap sits above that (armor adds a third, form encoding more) and its error
# is turned into a 413 in each protocol's format by keys.views.http.
MAX_KEY_BYTES = env.int("MAX_KEY_BYTES", default=1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=MAX_KEY_BYTES * 2 + 64 * 1024)
MAX_USER_IDS = env.int("MAX_USER_IDS", default=100)
MAX_SUBKEYS = env.int("MAX_SUBKEYS", default=100)
# Self-signatures and revocations per certificate, counted before verification.
MAX_SIGNATURES = env.int("MAX_SIGNATURES", default=1000)
# Newest verified self-signatures kept per component after verification.
KEEP_SIGNATURES_PER_COMPONENT = env.int("KEEP_SIGNATURES_PER_COMPONENT", default=8)
MAX_KEYS_PER_UPLOAD = env.int("MAX_KEYS_PER_UPLOAD", default=20)
MAX_MAILS_PER_UPLOAD = env.int("MAX_MAILS_PER_UPLOAD", default=10)

# The published answers as files, for the front server (deploy/nginx): empty
# turns them off. Other web nodes follow the change log every interval.
PUBLISH_DIR = env.str("PUBLISH_DIR", default=str(VAR_DIR / "public"))
PUBLISH_FOLLOW_INTERVAL = env.float("PUBLISH_FOLLOW_INTERVAL", default=0.25)
PUBLISH_LOG_RETENTION_HOURS = env.int("PUBLISH_LOG_RETENTION_HOURS", default=48)

# `make serve` (manage.py serve): gunicorn workers behind nginx, and nginx's
# lookup limit per client address ("100r/s"; a burst of 200 passes at once),
# with networks exempt from it (a load balancer's own checks, a benchmark).
SERVE_WORKERS = env.int("SERVE_WORKERS", default=2)
SERVE_LOOKUP_RATE = env.str("SERVE_LOOKUP_RATE", default="100r/s")
SERVE_LOOKUP_RATE_EXEMPT = env.list("SERVE_LOOKUP_RATE_EXEMPT", default=[])

# Tokens (DESIGN.md: Token).
VERIFY_TOKEN_TTL = timedelta(hours=env.float("VERIFY_TOKEN_TTL_HOURS", default=72))
UPLOAD_TOKEN_TTL = timedelta(minutes=env.float("UPLOAD_TOKEN_TTL_MINUTES", default=60))
MANAGE_TOKEN_TTL = timedelta(minutes=env.float("MANAGE_TOKEN_TTL_MINUTES", default=60))

# Rate limits (publication rule 8): "count/seconds".
RATE_MAIL_PER_ADDRESS = env.str("RATE_MAIL_PER_ADDRESS", default="1/3600")
RATE_MAIL_PER_CLIENT = env.str("RATE_MAIL_PER_CLIENT", default="20/3600")
RATE_UPLOAD_PER_CLIENT = env.str("RATE_UPLOAD_PER_CLIENT", default="60/3600")

HOUSEKEEPING_SECONDS = env.int("HOUSEKEEPING_SECONDS", default=3600)
EVENT_RETENTION_DAYS = env.int("EVENT_RETENTION_DAYS", default=365)
# What events keep of a client address: truncate (/24, /48), hash, keep or drop (keys/privacy.py).
EVENT_CLIENT_ADDRESSES = env.str("EVENT_CLIENT_ADDRESSES", default="truncate")
OUTBOX_RETENTION_DAYS = env.int("OUTBOX_RETENTION_DAYS", default=30)
UNCONFIRMED_RETENTION_DAYS = env.int("UNCONFIRMED_RETENTION_DAYS", default=14)

RATE_WELCOME_PER_CLIENT = env.str("RATE_WELCOME_PER_CLIENT", default="10/3600")
RATE_WELCOME_PER_ADDRESS = env.str("RATE_WELCOME_PER_ADDRESS", default="1/86400")
RATE_MANAGE_PER_CLIENT = env.str("RATE_MANAGE_PER_CLIENT", default="10/3600")
RATE_MANAGE_PER_ADDRESS = env.str("RATE_MANAGE_PER_ADDRESS", default="1/900")

# Upstream sources, refresh and OIDC issuers (attester/settings_upstreams.py);
# the server's key, signed mail, notices, reminders, re-confirmation
# (attester/settings_owners.py).
from .settings_owners import *  # noqa: E402,F403
from .settings_upstreams import *  # noqa: E402,F403

# The JSON APIs as DRF views, their schema and docs page (attester/settings_api.py).
REST_FRAMEWORK = rest_framework_settings()
SPECTACULAR_SETTINGS = spectacular_settings(SITE_URL)

# Production behind the front server (docs/operations.md: Production
# settings). Every one is off or mild by default, so `make run` over plain
# HTTP works; `manage.py check --deploy` says what production still lacks.
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
_https = SITE_URL.startswith("https://")
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=_https)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=_https)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
# Plain HTTP stays for the health checks and HKP (hkp:// is HTTP on port 11371).
SECURE_REDIRECT_EXEMPT = env.list("SECURE_REDIRECT_EXEMPT", default=[r"^healthz$", r"^readyz$", r"^pks/"])
# "HTTP_X_FORWARDED_PROTO,https": the header the front server sets, and its value for HTTPS.
_proxy_ssl = env.list("SECURE_PROXY_SSL_HEADER", default=[])
SECURE_PROXY_SSL_HEADER = (_proxy_ssl[0], _proxy_ssl[1]) if len(_proxy_ssl) == 2 else None
SECURE_REFERRER_POLICY = env.str("SECURE_REFERRER_POLICY", default="same-origin")
# Content-Security-Policy (django-csp): the pages and the admin use no
# inline script or style, so 'self' is enough.
_csp: dict[str, Any] = {d: ["'self'"] for d in ("default-src", "script-src", "style-src", "form-action")}
_csp.update({"img-src": ["'self'", "data:"], "object-src": ["'none'"], "base-uri": ["'none'"]})
_csp.update({"frame-ancestors": ["'none'"], "report-uri": env.str("CSP_REPORT_URI", default="") or None})
CONTENT_SECURITY_POLICY: dict[str, Any] | None = {"DIRECTIVES": _csp}
if env.bool("CSP_REPORT_ONLY", default=False):
    CONTENT_SECURITY_POLICY_REPORT_ONLY, CONTENT_SECURITY_POLICY = CONTENT_SECURITY_POLICY, None
# How many web processes share the database (gunicorn reads it too); with
# SQLite more than one is warned about.
WEB_CONCURRENCY = env.int("WEB_CONCURRENCY", default=1)

# Logs (keys/logs.py): one line per event with the request id, JSON with
# LOG_FORMAT=json; tokens, keys and secrets never reach a line.
LOGGING = logging_config(
    level=env.str("LOG_LEVEL", default="INFO"),
    json_lines=env.str("LOG_FORMAT", default="text") == "json",
    access=env.bool("ACCESS_LOG", default=True),
)
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# Metrics (keys/metrics.py, /metrics): every process of this machine writes
# its counters under PROMETHEUS_MULTIPROC_DIR (wiped by `manage.py serve`
# when the server starts); /metrics answers only METRICS_ALLOWED_NETWORKS.
PROMETHEUS_MULTIPROC_DIR = env.str("PROMETHEUS_MULTIPROC_DIR", default=str(VAR_DIR / "metrics"))
os.environ["PROMETHEUS_MULTIPROC_DIR"] = PROMETHEUS_MULTIPROC_DIR
Path(PROMETHEUS_MULTIPROC_DIR).mkdir(parents=True, exist_ok=True)
METRICS_ALLOWED_NETWORKS = env.list("METRICS_ALLOWED_NETWORKS", default=["127.0.0.0/8", "::1/128"])
# op=stats and the gauges of /metrics: counted at most this often.
STATS_SECONDS = env.int("STATS_SECONDS", default=300)

# Errors to Sentry when SENTRY_DSN is set (no personal data is sent).
SENTRY_DSN = env.str("SENTRY_DSN", default="")
if SENTRY_DSN:
    init_sentry(SENTRY_DSN, environment=env.str("SENTRY_ENVIRONMENT", default="production"))
