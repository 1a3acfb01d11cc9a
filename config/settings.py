"""Settings, read from the environment with typed defaults (django-environ); with nothing
set, SQLite under var/ and the embedded Redis (core/runtime/embedded.py)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import django_stubs_ext
import environ

from core.jobs.queues import broker_is_amqp
from core.runtime.embedded import socket_path

# Lets classes such as ModelSerializer[Record] and ModelAdmin[Org] be subscripted at runtime.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(environ.Env().str("VAR_DIR", default=str(BASE_DIR / "var")))

env = environ.Env()

DEBUG = env.bool("DJANGO_DEBUG", default=False)
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="dev-only-insecure-key-change-me-in-production")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])
# Behind a proxy that sets X-Forwarded-Proto/-Host and strips them from clients (never
# otherwise): request.build_absolute_uri() is then the public URL, which is what vendors
# sign (Twilio) and what connections show as their inbound webhook URL.
if env.bool("TRUST_PROXY_HEADERS", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    USE_X_FORWARDED_HOST = True

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI and ReDoc, pinned and served by us (no CDN)
    "django_celery_beat",
    "channels",
    "core",
    "sync",
    "crm",
    "storefront",
    "chat",
    "chat.community",
    "chat.voice",
    "chat.agent",
    "events",
    "banking",
    "automation",
]

MIDDLEWARE = [
    "core.middleware.correlation_id_middleware",
    "core.middleware.refuse_nul_bytes_middleware",
    "core.middleware.require_content_length_middleware",
    "django.middleware.security.SecurityMiddleware",
    "config.staticfiles.StaticFilesMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

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

# --- Database ---------------------------------------------------------------------------

DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
}
# The web process (config/wsgi.py, config/asgi.py set DB_POOL): on Postgres, Django's psycopg
# pool, shared by the request threads. Everything else keeps a connection per thread.
DB_POOL = env.bool("DB_POOL", default=False)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # web, worker and beat share one file: WAL lets readers run beside the writer, and
    # IMMEDIATE transactions take the write lock up front instead of failing on upgrade.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A file, not :memory:, so worker subprocesses in tests see the same database; one per
    # test process, so two test runs in one checkout don't recreate each other's file.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-{os.getpid()}.sqlite3")}
else:
    DATABASES["default"]["TEST"] = {"NAME": f"test_{DATABASES['default']['NAME']}_{os.getpid()}"}
    if DB_POOL:
        # Under ASGI every request runs its sync code in a thread of its own, so a persistent
        # connection (CONN_MAX_AGE) would never be reused; the pool serves gunicorn's threads too.
        DATABASES["default"]["CONN_MAX_AGE"] = 0
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": env.int("DB_POOL_MIN_SIZE", default=2),
            "max_size": env.int("DB_POOL_MAX_SIZE", default=20),
            "timeout": env.float("DB_POOL_TIMEOUT", default=10.0),
        }
if "pool" not in DATABASES["default"].get("OPTIONS", {}):
    # Workers, beat, commands, gunicorn's threads: a long-lived thread keeps its connection
    # rather than connect (and, on SQLite, set its PRAGMAs) again for every task or request.
    # config/asgi.py sets 0: its per-request threads would never reuse one.
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DB_CONN_MAX_AGE", default=60))
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

# The web process (DB_POOL, set by config/wsgi.py and config/asgi.py) cancels any statement
# running longer than this, so a slow query costs its own request a 503 (core/api/exceptions.py),
# never the process. Workers, beat, migrations and commands have no limit. On Postgres it is a
# connection option, set once per connection (no round trip per request); on SQLite a progress
# handler does the same (core/db/timeout.py). 0: no limit.
API_STATEMENT_TIMEOUT_MS = env.int("API_STATEMENT_TIMEOUT_MS", default=5000)
STATEMENT_TIMEOUT_MS = API_STATEMENT_TIMEOUT_MS if DB_POOL else 0
if STATEMENT_TIMEOUT_MS and DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    _options = DATABASES["default"].setdefault("OPTIONS", {})
    _options["options"] = (
        f"{_options.get('options', '')} -c statement_timeout={STATEMENT_TIMEOUT_MS}".lstrip()
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "core.User"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# Served by the web process itself (WhiteNoise, config/staticfiles.py) from STATIC_ROOT, which
# `collectstatic` fills: `make run` and the Procfile's release step run it.
STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(VAR_DIR / "static")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Writes a gzipped copy beside each file, which WhiteNoise serves to clients that accept it.
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# The browsable API's sign-in (/api-auth/login/) lands on the API root.
LOGIN_REDIRECT_URL = "/"

DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=2 * 1024 * 1024)

# --- Redis: broker, channel layer ------------------------------------------------------

REDIS_EMBEDDED = not env.str("REDIS_URL", default="")
REDIS_URL = env.str("REDIS_URL", default="") or f"unix://{socket_path(VAR_DIR)}"


def _kombu_url(url: str) -> str:
    # redis-py spells a socket unix:///path; kombu spells it redis+socket:///path.
    return "redis+socket://" + url.removeprefix("unix://") if url.startswith("unix://") else url


CHANNEL_LAYERS = {
    "default": {
        # Pub/sub: a group send is one PUBLISH, which each process receives once and hands to its
        # own sockets; the list-based RedisChannelLayer pushes a copy to every socket's list and
        # each socket pops its own (a Redis round trip per frame per socket), which a room of 100
        # could not keep up with. Its queues are in the process and unbounded, so what bounds a
        # slow socket is RealtimeConsumer's send timeout: a socket that takes no frame for
        # REALTIME_SEND_TIMEOUT_SECONDS is closed and its queue dropped. Delivery is at most once
        # (nothing is kept for a process that is away): sockets catch up from the database by seq.
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {"hosts": [{"address": REDIS_URL}]},
    },
}


def redis_cache(url: str) -> dict[str, Any]:
    """The shared cache on Redis: what every process must see at once (automation's trigger
    index generation, vendor OAuth tokens). Short socket timeouts: callers treat a cache
    error as a miss, so a Redis outage slows nothing down."""
    return {
        "default": {
            # django-redis: one connection pool per process for every thread's cache instance
            # (Django's own backend opens a pool per instance, that is per request under ASGI).
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": url,
            "KEY_PREFIX": "cache",
            "OPTIONS": {
                "CONNECTION_FACTORY": "core.runtime.rediscache.SharedClientFactory",
                "SOCKET_TIMEOUT": 0.5,
                "SOCKET_CONNECT_TIMEOUT": 0.5,
            },
        }
    }


CACHES = redis_cache(REDIS_URL)

# --- Celery -------------------------------------------------------------------------------

# BROKER_URL picks the broker: Redis (REDIS_URL's, the default) or RabbitMQ (amqp://...);
# docs/deploy.md#choosing-a-broker says when to choose each.
CELERY_BROKER_URL = _kombu_url(env.str("BROKER_URL", default="") or REDIS_URL)
BROKER_IS_AMQP = broker_is_amqp(CELERY_BROKER_URL)
# No result backend: outcomes that matter are rows in Postgres (receipts, dead letters),
# and a result backend on Redis would only be memory we must remember to expire.
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = 300
CELERY_TASK_SOFT_TIME_LIMIT = 240
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A publisher finding every pooled broker connection in use waits this long, then fails (the
# outbox sweeper publishes later) rather than waiting forever.
CELERY_BROKER_POOL_ACQUIRE_TIMEOUT = env.float("BROKER_POOL_ACQUIRE_TIMEOUT", default=5.0)
# The longest deadline (hard time limit) a job may have; core.jobs.consumers.max_time_limit()
# cuts it further to half the broker's ack timeout below.
JOB_MAX_TIME_LIMIT_SECONDS = env.int("JOB_MAX_TIME_LIMIT_SECONDS", default=900)
# How long a delivered message may stay unacknowledged before the broker hands it out again:
# Redis' visibility timeout (twice the longest deadline by default); RabbitMQ's consumer_timeout
# (its default is 30 min), past which it closes the channel. Every job's deadline and countdown
# must end well within it.
BROKER_ACK_TIMEOUT_SECONDS = (
    env.int("RABBITMQ_CONSUMER_TIMEOUT", default=1800)
    if BROKER_IS_AMQP
    else env.int("BROKER_VISIBILITY_TIMEOUT", default=2 * JOB_MAX_TIME_LIMIT_SECONDS)
)
# Redis: how often a worker puts back the messages left unacknowledged past the visibility
# timeout (a SIGKILLed worker's): kombu's unacked_restore_interval, scanning on every call.
BROKER_UNACKED_SWEEP_SECONDS = env.int("BROKER_UNACKED_SWEEP_SECONDS", default=10)
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, Any] = {
    # A producer whose broker is down gives up after one quick retry instead of kombu's
    # default ~6 s of attempts: a request publishing after commit answers promptly and the
    # outbox sweeper publishes later. (The worker's consumer reconnects on its own loop.)
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.5,
    "interval_max": 0.5,
}
if BROKER_IS_AMQP:
    # Quorum queues on topic exchanges (config/celery_app.py): replicated, and Celery's native
    # delayed delivery (countdowns wait in the broker, never in a worker's memory).
    CELERY_BROKER_TRANSPORT_OPTIONS["confirm_publish"] = True  # a publish returns once stored
    CELERY_BROKER_CONNECTION_TIMEOUT = 2
    CELERY_TASK_DEFAULT_QUEUE_TYPE = "quorum"
    CELERY_WORKER_DETECT_QUORUM_QUEUES = True
    # The connection lost, RabbitMQ hands the unacknowledged messages out again at once: stop
    # the jobs they carried rather than run them twice.
    CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
else:
    CELERY_BROKER_TRANSPORT_OPTIONS.update(
        # Longer than any task's hard time limit, so acks_late never re-delivers a running job.
        visibility_timeout=BROKER_ACK_TIMEOUT_SECONDS,
        # kombu sweeps every interval x throttle seconds (10 x 10 by default): every interval.
        unacked_restore_interval=BROKER_UNACKED_SWEEP_SECONDS,
        unacked_restore_throttle=1,
        socket_connect_timeout=2,
        socket_timeout=5,
        # A worker of several queues takes from them in core.jobs.queues.CONSUME_ORDER.
        queue_order_strategy="priority",
    )
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = "UTC"

# --- Events / outbox ----------------------------------------------------------------------

# An EventRecord not handed to the broker this long after it was written is re-published
# by the sweeper (the crash window between commit and publish).
OUTBOX_SWEEP_AFTER_SECONDS = env.float("OUTBOX_SWEEP_AFTER_SECONDS", default=5.0)
OUTBOX_SWEEP_INTERVAL_SECONDS = env.float("OUTBOX_SWEEP_INTERVAL_SECONDS", default=5.0)
OUTBOX_SWEEP_BATCH = env.int("OUTBOX_SWEEP_BATCH", default=500)
# A process's relay publishes at most once per interval: an event committed while it is idle
# goes at once, and a busy process's events wait up to this long to share one publish. On
# Redis a batch is one pipeline, so waiting spreads its fixed cost and leaves CPU to the
# requests; on RabbitMQ every message waits for its own confirm, so waiting only adds latency.
OUTBOX_PUBLISH_INTERVAL_SECONDS = env.float(
    "OUTBOX_PUBLISH_INTERVAL_SECONDS", default=0.0 if BROKER_IS_AMQP else 0.02
)

# --- Tenancy -----------------------------------------------------------------------------

# How long an invitation to join an org can be accepted.
INVITATION_TTL_DAYS = env.int("INVITATION_TTL_DAYS", default=7)

# --- Jobs (core/jobs/consumers.py) -------------------------------------------------------------

# Multiplies every consumer's retry backoff: operators (and tests) shorten the schedule here.
JOB_RETRY_SCALE = env.float("JOB_RETRY_SCALE", default=1.0)
# Waits up to this long ride Celery's countdown; longer ones become ScheduledJob rows.
JOB_MAX_COUNTDOWN_SECONDS = env.float("JOB_MAX_COUNTDOWN_SECONDS", default=5.0)
SCHEDULED_JOBS_INTERVAL_SECONDS = env.float("SCHEDULED_JOBS_INTERVAL_SECONDS", default=1.0)
SCHEDULED_JOBS_BATCH = env.int("SCHEDULED_JOBS_BATCH", default=500)
# A job queued inside a transaction is a row published after commit; if that publish never
# happens (the process died), the releaser publishes the row this long after the commit.
JOB_PUBLISH_GRACE_SECONDS = env.float("JOB_PUBLISH_GRACE_SECONDS", default=30.0)
# A kept job published and not done after its hard time limit plus this margin is checked by
# the reconciler (core/jobs/reconcile.py), and published again if the broker lost it.
JOB_RECONCILE_MARGIN_SECONDS = env.float("JOB_RECONCILE_MARGIN_SECONDS", default=60.0)
JOB_RECONCILE_INTERVAL_SECONDS = env.float("JOB_RECONCILE_INTERVAL_SECONDS", default=30.0)
JOB_RECONCILE_BATCH = env.int("JOB_RECONCILE_BATCH", default=200)
# Extra modules holding @on_event listeners, besides every app's handlers.py.
EVENT_HANDLER_MODULES = env.list("EVENT_HANDLER_MODULES", default=[])

# Periodic tasks are declared in sync/periodic.py and written into django-celery-beat's
# tables by `manage.py sync_periodic_tasks`; that registry is the only source. Without a
# result backend there is nothing to expire, and with this unset beat's DatabaseScheduler
# would add a `celery.backend_cleanup` task of its own on every start.
CELERY_RESULT_EXPIRES = None
# The PurgeScheduler (sync.purge): a cron spec, and how old rows get before they go.
PURGE_CRON = env.str("PURGE_CRON", default="17 * * * *")  # hourly, off the top of the hour
EVENT_RETENTION_DAYS = env.int("EVENT_RETENTION_DAYS", default=90)
# How long a write's Idempotency-Key is remembered: a retry within it gets the first response.
IDEMPOTENCY_KEY_TTL_HOURS = env.int("IDEMPOTENCY_KEY_TTL_HOURS", default=24)
RECEIPT_RETENTION_DAYS = env.int("RECEIPT_RETENTION_DAYS", default=30)  # released ScheduledJobs too
JOBLOG_RETENTION_DAYS = env.int("JOBLOG_RETENTION_DAYS", default=30)
DEADLETTER_RETENTION_DAYS = env.int("DEADLETTER_RETENTION_DAYS", default=30)  # replayed/discarded only
HTTP_ATTEMPT_RETENTION_DAYS = env.int("HTTP_ATTEMPT_RETENTION_DAYS", default=30)
INBOX_RETENTION_DAYS = env.int("INBOX_RETENTION_DAYS", default=90)  # processed/ignored/rejected only
PURGE_BATCH_SIZE = env.int("PURGE_BATCH_SIZE", default=1000)  # rows per DELETE statement
# A run stops starting batches after this long; the next tick carries on.
PURGE_TIME_BUDGET_SECONDS = env.float("PURGE_TIME_BUDGET_SECONDS", default=120.0)

# --- Upstream/Connect: vendor connections, outbound HTTP, the inbound-webhook inbox --------

# Fernet keys (urlsafe base64, 32 bytes) for credentials and signing secrets at rest, newest
# first: MultiFernet encrypts with the first and decrypts with any, so a key rotates by
# prepending the new one and running `manage.py rotate_connection_keys`. Unset, a key is
# derived from SECRET_KEY (fine for development; set your own in production).
FIELD_ENCRYPTION_KEYS = env.list("FIELD_ENCRYPTION_KEYS", default=[])
# CIDRs outbound requests may reach although they are not public (loopback, private, ...):
# empty in production; local development and tests open 127.0.0.0/8 here.
OUTBOUND_ALLOWED_NETWORKS = env.list("OUTBOUND_ALLOWED_NETWORKS", default=[])
OUTBOUND_CONNECT_TIMEOUT = env.float("OUTBOUND_CONNECT_TIMEOUT", default=5.0)
OUTBOUND_READ_TIMEOUT = env.float("OUTBOUND_READ_TIMEOUT", default=15.0)
OUTBOUND_MAX_REDIRECTS = env.int("OUTBOUND_MAX_REDIRECTS", default=5)
# A connection's circuit opens after this many consecutive failures and lets one trial
# request through after the cool-down.
CIRCUIT_BREAKER_THRESHOLD = env.int("CIRCUIT_BREAKER_THRESHOLD", default=5)
CIRCUIT_BREAKER_COOLDOWN_SECONDS = env.float("CIRCUIT_BREAKER_COOLDOWN_SECONDS", default=30.0)
# A process that read a circuit closed calls without reading it again for this long (so a
# circuit another process opened is honoured that much later; its own failures at once).
CIRCUIT_BREAKER_RECHECK_SECONDS = env.float("CIRCUIT_BREAKER_RECHECK_SECONDS", default=1.0)
# Inbound vendor webhooks: the largest body accepted (413 past it) and the signature clock skew.
INBOUND_WEBHOOK_MAX_BYTES = env.int("INBOUND_WEBHOOK_MAX_BYTES", default=1024 * 1024)
WEBHOOK_TOLERANCE_SECONDS = env.int("WEBHOOK_TOLERANCE_SECONDS", default=300)

# --- Automation -----------------------------------------------------------------------------

# send-webhook's attempts, in seconds after the first failure... as Svix does: at once, 5 s,
# 5 min, 30 min, 2 h, 5 h, 10 h, 10 h. The first value is the first attempt's delay (0).
WEBHOOK_RETRY_SCHEDULE = [
    float(value)
    for value in env.list(
        "WEBHOOK_RETRY_SCHEDULE", default=["0", "5", "300", "1800", "7200", "18000", "36000", "36000"]
    )
]
WEBHOOK_TIMEOUT_SECONDS = env.float("WEBHOOK_TIMEOUT_SECONDS", default=15.0)
# How many flow runs deep a chain of events may go (a flow's step causing an event that
# starts a run that causes an event ...) before the loop guard stops it.
AUTOMATION_MAX_CHAIN_DEPTH = env.int("AUTOMATION_MAX_CHAIN_DEPTH", default=5)
# Steps in one flow (branches included), and the longest a wait step may pause a run.
AUTOMATION_MAX_STEPS = env.int("AUTOMATION_MAX_STEPS", default=50)
AUTOMATION_MAX_WAIT_DAYS = env.int("AUTOMATION_MAX_WAIT_DAYS", default=365)

# --- API ----------------------------------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "core.auth.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": [
        "core.api.parsers.LimitedJSONParser",
        "rest_framework.parsers.FormParser",
    ],
    "DEFAULT_PAGINATION_CLASS": "core.api.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "core.api.schema.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": [
        "core.api.renderers.SafeJSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "EXCEPTION_HANDLER": "core.api.exceptions.exception_handler",
    # Throttles key on the client's address: X-Forwarded-For's last hop only behind our proxy,
    # never a header a client could set itself.
    "NUM_PROXIES": 1 if env.bool("TRUST_PROXY_HEADERS", default=False) else 0,
}

# --- Chat ---------------------------------------------------------------------------------------

# Public chat writes (starting a conversation, a visitor's ticket) per client address per minute.
CHAT_VISITOR_WRITES_PER_MINUTE = env.int("CHAT_VISITOR_WRITES_PER_MINUTE", default=20)
# An agent is online while a console heartbeats: its presence entry lives this long unrefreshed.
CHAT_PRESENCE_TTL_SECONDS = env.int("CHAT_PRESENCE_TTL_SECONDS", default=75)
# A queued conversation nobody took within this many seconds: the org's agents are emailed.
CHAT_NOTIFY_AGENTS_AFTER_SECONDS = env.int("CHAT_NOTIFY_AGENTS_AFTER_SECONDS", default=120)
CHAT_SLA_SWEEP_SECONDS = env.float("CHAT_SLA_SWEEP_SECONDS", default=60.0)
# The AI bot (an org with an openai connection): the earlier messages it is shown, at most this
# many and this many characters in all (the oldest dropped first).
# Messages one sender (a conversation's visitor, or one agent) may send per window, across sockets.
CHAT_MESSAGES_PER_WINDOW = env.int("CHAT_MESSAGES_PER_WINDOW", default=10)
CHAT_RATE_WINDOW_SECONDS = env.int("CHAT_RATE_WINDOW_SECONDS", default=10)
# A conversation's AI bot answers at most this many visitor messages an hour; the rule bot the rest.
CHAT_AI_REPLIES_PER_HOUR = env.int("CHAT_AI_REPLIES_PER_HOUR", default=60)
CHAT_AI_CONTEXT_MESSAGES = env.int("CHAT_AI_CONTEXT_MESSAGES", default=20)
CHAT_AI_CONTEXT_CHARS = env.int("CHAT_AI_CONTEXT_CHARS", default=12_000)
# While it generates, the bot's typing frame goes out this often (the widget hides it after 4 s).
CHAT_AI_TYPING_EVERY_SECONDS = env.float("CHAT_AI_TYPING_EVERY_SECONDS", default=3.0)
# Community rooms: each member's or contact's messages per window, across processes (docs/community.md).
COMMUNITY_MESSAGES_PER_WINDOW = env.int("COMMUNITY_MESSAGES_PER_WINDOW", default=5)
COMMUNITY_RATE_WINDOW_SECONDS = env.int("COMMUNITY_RATE_WINDOW_SECONDS", default=5)

# --- CRM ---------------------------------------------------------------------------------------

# Submissions of one public form from one client address per minute; more are a 429 with Retry-After.
CRM_FORM_SUBMISSIONS_PER_MINUTE = env.int("CRM_FORM_SUBMISSIONS_PER_MINUTE", default=10)
# Where recipients reach us: tracked links, the open pixel and unsubscribe links start with it.
PUBLIC_BASE_URL = env.str("PUBLIC_BASE_URL", default="http://localhost:8000").rstrip("/")
# The From of an email whose SMTP connection names none.
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="no-reply@localhost")
# Hours before a confirmed appointment that its contact is emailed a reminder.
CRM_APPOINTMENT_REMINDER_HOURS = env.float("CRM_APPOINTMENT_REMINDER_HOURS", default=24)
# A notification's pool is kicked after its commit; the sweep, every CRM_POOL_SWEEP_SECONDS,
# kicks pools whose deliveries waited longer than CRM_POOL_SWEEP_AFTER_SECONDS (a process died
# between the commit and the kick).
CRM_POOL_SWEEP_SECONDS = env.float("CRM_POOL_SWEEP_SECONDS", default=30.0)
CRM_POOL_SWEEP_AFTER_SECONDS = env.float("CRM_POOL_SWEEP_AFTER_SECONDS", default=30.0)
# At most this many runs send one org's pool for a channel at once (a busy run starts another).
CRM_POOL_RUNS = env.int("CRM_POOL_RUNS", default=4)
# Seconds an SMTP conversation may stall before the attempt fails (and is retried).
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=10)
# Whom push services contact about our Web Push traffic (mailto: or an https URL); empty is
# mailto: DEFAULT_FROM_EMAIL.
VAPID_SUBJECT = env.str("VAPID_SUBJECT", default="")

# --- Realtime (core/realtime/, docs/realtime.md) ----------------------------------------------

# How long a WebSocket ticket (POST /realtime/tickets/) stays valid; each is single-use.
REALTIME_TICKET_SECONDS = env.int("REALTIME_TICKET_SECONDS", default=60)
# Clients send a frame ({"type": "ping"}) at least every REALTIME_HEARTBEAT_SECONDS; a socket
# silent for REALTIME_HEARTBEAT_TIMEOUT_SECONDS is closed (4408). A send the client does not
# take within REALTIME_SEND_TIMEOUT_SECONDS closes it (4008): nothing piles up for a slow reader.
REALTIME_HEARTBEAT_SECONDS = env.int("REALTIME_HEARTBEAT_SECONDS", default=25)
REALTIME_HEARTBEAT_TIMEOUT_SECONDS = env.float("REALTIME_HEARTBEAT_TIMEOUT_SECONDS", default=60.0)
REALTIME_SEND_TIMEOUT_SECONDS = env.float("REALTIME_SEND_TIMEOUT_SECONDS", default=10.0)
# Voice calls: signalling frames (offer, answer, ice-candidate) a socket may send per second, in
# bursts of as many; more closes it (4429). Counted in memory per socket (docs/voice.md).
VOICE_SIGNAL_FRAMES_PER_SECOND = env.float("VOICE_SIGNAL_FRAMES_PER_SECOND", default=50.0)
# A call none of whose sockets pinged (REALTIME_HEARTBEAT_SECONDS) for this long is ended by the
# sweep, every VOICE_SWEEP_SECONDS: the processes holding them died without a disconnect.
VOICE_PARTICIPANT_TIMEOUT_SECONDS = env.int("VOICE_PARTICIPANT_TIMEOUT_SECONDS", default=120)
VOICE_SWEEP_SECONDS = env.float("VOICE_SWEEP_SECONDS", default=60.0)


def _default_realtime_origins() -> list[str]:
    # Our own pages: PUBLIC_BASE_URL's, https on every host ALLOWED_HOSTS names, and on loopback
    # hosts make run's http page (PORT, 8000 by default).
    parts = urlsplit(PUBLIC_BASE_URL)
    origins = [f"{parts.scheme}://{parts.netloc}"]
    for host in ALLOWED_HOSTS:
        if host.startswith(".") or "*" in host:
            continue
        origins.append(f"https://{host}")
        if host in ("127.0.0.1", "localhost", "[::1]"):
            origins.append(f"http://{host}:{env.int('PORT', default=8000)}")
    return list(dict.fromkeys(origins))


# Browser origins (scheme://host[:port]) allowed to open sockets besides each org's sites (their
# domains, http or https): the admin's and our own pages. A client sending no Origin (an app, a
# server, websocat) needs only a ticket.
REALTIME_ALLOWED_ORIGINS = env.list("REALTIME_ALLOWED_ORIGINS", default=_default_realtime_origins())

SPECTACULAR_SETTINGS = {
    "TITLE": "Platform API",
    "DESCRIPTION": "Multi-tenant platform: collections, tenancy, and the event log.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # /api/docs/ and /api/redoc/ load their assets from drf-spectacular-sidecar, and nothing
    # from elsewhere (Swagger UI would ask validator.swagger.io about the schema).
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
    # Several models have a `status`: name each choice set after its own enum.
    "ENUM_NAME_OVERRIDES": {
        "RecordStatusEnum": "core.models.records.RecordStatus",
        "DeadLetterStatusEnum": "core.models.DeadLetterStatus",
        "InboundStatusEnum": "sync.models.InboundStatus",
        "RunStatusEnum": "automation.models.RunStatus",
        "StepStatusEnum": "automation.models.StepStatus",
        "InvitationStatusEnum": "core.models.invitations.InvitationStatus",
        "ConversationStatusEnum": "chat.models.ConversationStatus",
        "AIVoiceSessionStatusEnum": "chat.voice.models.AIVoiceSessionStatus",
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"correlation": {"()": "core.logging.CorrelationIdFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(correlation_id)s] %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["correlation"]},
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# The AI agent (docs/ai.md): the model when a request names none, the bounds of one reply, and
# how long a finished stream's events stay readable.
AI_DEFAULT_MODEL = env.str("AI_DEFAULT_MODEL", default="gpt-4o-mini")
AI_MAX_TOOL_ROUNDS = env.int("AI_MAX_TOOL_ROUNDS", default=5)
AI_MAX_SECONDS = env.float("AI_MAX_SECONDS", default=120.0)
AI_CONTEXT_TURNS = env.int("AI_CONTEXT_TURNS", default=20)
AI_STREAM_MAXLEN = env.int("AI_STREAM_MAXLEN", default=10_000)
AI_STREAM_TTL = env.int("AI_STREAM_TTL", default=3600)
# A comment line on an idle stream keeps proxies from closing it.
AI_STREAM_PING_SECONDS = env.float("AI_STREAM_PING_SECONDS", default=15.0)

# Spoken sessions with the agent (ws/ai-voice/<id>/, docs/voice.md): the connection's speech
# models, and the bounds of what a socket sends. An utterance ends after AI_VOICE_SILENCE_SECONDS
# of 16-bit PCM quieter than AI_VOICE_SILENCE_RMS (root mean square over 20 ms windows; full
# scale is 32767, a quiet room ~100-300, speech at a normal distance ~1000-5000).
AI_VOICE_TRANSCRIBE_MODEL = env.str("AI_VOICE_TRANSCRIBE_MODEL", default="whisper-1")
AI_VOICE_SPEECH_MODEL = env.str("AI_VOICE_SPEECH_MODEL", default="tts-1")
AI_VOICE_SPEECH_VOICE = env.str("AI_VOICE_SPEECH_VOICE", default="alloy")
AI_VOICE_SILENCE_SECONDS = env.float("AI_VOICE_SILENCE_SECONDS", default=0.7)
AI_VOICE_SILENCE_RMS = env.float("AI_VOICE_SILENCE_RMS", default=500.0)
AI_VOICE_MAX_UTTERANCE_SECONDS = env.float("AI_VOICE_MAX_UTTERANCE_SECONDS", default=30.0)
AI_VOICE_MAX_UTTERANCE_BYTES = env.int("AI_VOICE_MAX_UTTERANCE_BYTES", default=2_000_000)
AI_VOICE_MAX_FRAME_BYTES = env.int("AI_VOICE_MAX_FRAME_BYTES", default=64_000)
# Frames (audio or JSON) a socket may send per second, in bursts of as many; more closes it 4429.
AI_VOICE_FRAMES_PER_SECOND = env.float("AI_VOICE_FRAMES_PER_SECOND", default=100.0)
