"""Palate settings: one module, read from the environment.

The database is always PostgreSQL (psycopg 3). With nothing set, everything runs on one machine with no
services: the embedded PostgreSQL that ``make run`` starts under ``var/`` (reached on its Unix socket, see
``palate/embedded_db.py``) and kombu's filesystem broker under ``var/``. ``DATABASE_URL`` switches to any
PostgreSQL and ``CELERY_BROKER_URL`` to Redis. Every variable is listed, with its default, in
docs/configuration.md and ``.env.example``.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from csp.constants import NONE, SELF, UNSAFE_INLINE
from django.core.exceptions import ImproperlyConfigured

from palate.embedded_db import database_url as embedded_database_url

BASE_DIR = Path(__file__).resolve().parent.parent


def envbool(name: str, default: str) -> bool:
    return os.environ.get(name, default).strip().lower() in {"1", "true", "yes", "on"}


def envint(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError as error:
        raise ValueError(f"environment variable {name} must be an integer, got {raw!r}") from error


def envlist(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


VAR_DIR = Path(os.environ.get("PALATE_VAR_DIR", BASE_DIR / "var"))

DEBUG = envbool("DEBUG", "True")
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise RuntimeError("SECRET_KEY must be set when DEBUG is off")
    SECRET_KEY = "palate-development-key-not-for-production-use-0123456789abcdefghij"

ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "knox",
    "axes",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "annotate",
    "rewardtrain",
    "generation",
    "accounts",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "palate.middleware.RefuseNulCharacters",
    "palate.middleware.ContentSecurityPolicy",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "palate.middleware.StyledNotFound",
    # Last: turns a login refused by axes into its lockout answer (accounts.login.lockout_response).
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "palate.urls"
WSGI_APPLICATION = "palate.wsgi.application"

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

# With DATABASE_URL unset: the embedded server's socket under VAR_DIR, so manage.py works after one `make run`.
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or embedded_database_url(VAR_DIR),
        conn_max_age=envint("DB_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
    raise ImproperlyConfigured(
        "DATABASE_URL must name a PostgreSQL database (postgres://user:pass@host:5432/db); SQLite is no "
        "longer supported: unset DATABASE_URL and `make run` starts an embedded PostgreSQL under var/"
    )
# Django's backend with a health check that needs no round trip while the connection is quiet.
DATABASES["default"]["ENGINE"] = "palate.postgresql"
# Parameters travel apart from the SQL, and a statement run twice on a connection is prepared: the
# server plans it once instead of on every request (half of PostgreSQL's CPU per judgment).
DATABASES["default"].setdefault("OPTIONS", {}).update(
    server_side_binding=envbool("DB_SERVER_SIDE_BINDING", "true"),
    prepare_threshold=envint("DB_PREPARE_THRESHOLD", 2),
)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

if os.environ.get("CACHE_URL"):
    # django-redis rather than Django's own Redis backend: it can ignore a Redis that is down, so every
    # cache read misses (the value is computed from the database) and writes are dropped, and no page fails.
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": os.environ["CACHE_URL"],
            "OPTIONS": {
                "IGNORE_EXCEPTIONS": True,
                "SOCKET_CONNECT_TIMEOUT": 1,
                "SOCKET_TIMEOUT": 1,
            },
        }
    }
    DJANGO_REDIS_LOG_IGNORED_EXCEPTIONS = True
else:
    # A file cache is shared by every process on the machine, so login throttling holds across
    # gunicorn workers without a server.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": VAR_DIR / "cache",
        }
    }

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-gb"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATICFILES_FINDERS = [
    "django.contrib.staticfiles.finders.FileSystemFinder",
    "django.contrib.staticfiles.finders.AppDirectoriesFinder",
    # vendor/plotly.min.js from the installed plotly package: charts without a CDN.
    "palate.staticfinders.PackageDataFinder",
]
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", VAR_DIR / "staticfiles"))
# WhiteNoise warns on every request when the folder is missing (before the first collectstatic).
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", VAR_DIR / "media"))
MEDIA_URL = "/media/"
ARTIFACT_ROOT = Path(os.environ.get("ARTIFACT_ROOT", VAR_DIR / "artifacts"))
# Every file goes through one of three named storages (palate/storage.py): "uploads" (imports waiting for a
# worker), "exports" and "artifacts" (checkpoints and reward models). Folders on this machine (MEDIA_ROOT,
# ARTIFACT_ROOT) unless STORAGE_S3_BUCKET names an S3-compatible bucket, which every web host and worker
# then shares instead of a disk. Credentials come from the environment as boto3 reads them
# (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or an instance role).
STORAGE_S3_BUCKET = os.environ.get("STORAGE_S3_BUCKET", "")
STORAGE_S3_ENDPOINT_URL = os.environ.get("STORAGE_S3_ENDPOINT_URL", "")
STORAGE_S3_REGION = os.environ.get("STORAGE_S3_REGION", "")
STORAGE_S3_PREFIX = os.environ.get("STORAGE_S3_PREFIX", "").strip("/")
# Download links signed for this address instead (the one browsers reach the store at), when it differs.
STORAGE_S3_PUBLIC_ENDPOINT_URL = os.environ.get("STORAGE_S3_PUBLIC_ENDPOINT_URL", "")
# How long a download link to an export file works.
STORAGE_S3_URL_SECONDS = envint("STORAGE_S3_URL_SECONDS", 300)


def s3_storage(*, bucket: str, endpoint_url: str, region: str, prefix: str) -> dict:
    """A storage in an S3-compatible bucket (django-storages), under ``prefix``."""
    from botocore.config import Config

    return {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": bucket,
            "endpoint_url": endpoint_url or None,
            "region_name": region or None,
            "location": prefix,
            "file_overwrite": True,
            "default_acl": None,
            # A file read whole (Parquet) spills to a temporary file past this, never all in memory.
            "max_memory_size": 16 * 1024 * 1024,
            "client_config": Config(
                # Path-style addresses: MinIO and most self-hosted stores serve no per-bucket host names.
                s3={"addressing_style": "path" if endpoint_url else None},
                signature_version="s3v4",
                # Checksums only where S3 requires them: stores other than AWS (MinIO, Ceph…) do not all take
                # the trailing checksums botocore adds by default, and they cost a pass over every part.
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        },
    }


def _file_store(local: dict) -> dict:
    if not STORAGE_S3_BUCKET:
        return local
    return s3_storage(
        bucket=STORAGE_S3_BUCKET,
        endpoint_url=STORAGE_S3_ENDPOINT_URL,
        region=STORAGE_S3_REGION,
        prefix=STORAGE_S3_PREFIX,
    )


STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
    "uploads": _file_store({"BACKEND": "django.core.files.storage.FileSystemStorage"}),
    "exports": _file_store({"BACKEND": "palate.storage.ArtifactFileSystemStorage"}),
    "artifacts": _file_store({"BACKEND": "palate.storage.ArtifactFileSystemStorage"}),
}

# Security: the HTTPS redirect and HSTS belong to the reverse proxy (docs/production.md).
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
X_FRAME_OPTIONS = "DENY"
SILENCED_SYSTEM_CHECKS = ["security.W004", "security.W008"]
# The Content-Security-Policy of every response (django-csp): scripts only from our own origin's files (no
# inline script, no eval), nothing loaded from or sent to another origin. Inline styles stay allowed: Plotly,
# htmx and Swagger UI write them, and the templates size progress bars with style="width: …".
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF, UNSAFE_INLINE],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "frame-src": [NONE],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

# Logins and user API tokens (accounts/). Failed logins, counted by django-axes for every way of logging
# in: after LOGIN_FAILURE_LIMIT failures for one username, or LOGIN_FAILURE_ADDRESS_LIMIT from one address,
# within the window, further attempts are refused until the window has passed since the last failure.
# The address is REMOTE_ADDR, or with TRUSTED_PROXY_COUNT proxies in front the one the outermost of them
# put in X-Forwarded-For.
LOGIN_FAILURE_LIMIT = envint("LOGIN_FAILURE_LIMIT", 5)
LOGIN_FAILURE_ADDRESS_LIMIT = envint("LOGIN_FAILURE_ADDRESS_LIMIT", 50)
LOGIN_FAILURE_WINDOW_SECONDS = envint("LOGIN_FAILURE_WINDOW_SECONDS", 900)
TRUSTED_PROXY_COUNT = envint("TRUSTED_PROXY_COUNT", 0)
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_HANDLER = "accounts.login.LoginFailureHandler"
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_USERNAME_CALLABLE = "accounts.login.axes_username"
AXES_CLIENT_IP_CALLABLE = "accounts.login.client_address"
AXES_FAILURE_LIMIT = "accounts.login.failure_limit"
AXES_COOLOFF_TIME = "accounts.login.failure_window"
AXES_LOCKOUT_CALLABLE = "accounts.login.lockout_response"
# Attempts while locked out are refused without being counted, and a success does not wipe the count.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_RESET_ON_SUCCESS = False
AXES_DISABLE_ACCESS_LOG = True
AXES_VERBOSE = False
# User API tokens (django-rest-knox, "Authorization: Token …"): hashed at rest, one per login, each
# expiring USER_TOKEN_TTL_HOURS after it was made.
USER_TOKEN_TTL_HOURS = envint("USER_TOKEN_TTL_HOURS", 168)
# How long a process keeps accepting a token it checked without asking the database again (a revoked
# token stops working everywhere within this many seconds); 0 checks every request.
USER_TOKEN_CACHE_SECONDS = envint("USER_TOKEN_CACHE_SECONDS", 5)

# Email: invitations and password reset links. The console backend (the default) prints each email in the
# web process's log; EMAIL_HOST switches to SMTP unless EMAIL_BACKEND says otherwise.
EMAIL_HOST = os.environ.get("EMAIL_HOST", "")
EMAIL_BACKEND = os.environ.get(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend"
    if EMAIL_HOST
    else "django.core.mail.backends.console.EmailBackend",
)
EMAIL_PORT = envint("EMAIL_PORT", 587)
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = envbool("EMAIL_USE_TLS", "True")
EMAIL_USE_SSL = envbool("EMAIL_USE_SSL", "False")
EMAIL_TIMEOUT = envint("EMAIL_TIMEOUT", 10)
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "Palate <palate@localhost>")
# How long an invitation's or a password reset's set-password link works (it also stops once used).
PASSWORD_RESET_TIMEOUT = envint("PASSWORD_RESET_TIMEOUT", 3 * 24 * 3600)

# Imports (docs/security.md#limits).
IMPORT_MAX_FILE_BYTES = envint("IMPORT_MAX_FILE_BYTES", 1024 * 1024 * 1024)
IMPORT_MAX_LINE_BYTES = envint("IMPORT_MAX_LINE_BYTES", 8 * 1024 * 1024)
IMPORT_MAX_TEXT_CHARS = envint("IMPORT_MAX_TEXT_CHARS", 200_000)
IMPORT_MAX_ROWS = envint("IMPORT_MAX_ROWS", 5_000_000)
IMPORT_MAX_PAIRS_PER_PROMPT = envint("IMPORT_MAX_PAIRS_PER_PROMPT", 1_000)
IMPORT_MAX_PAIRS = envint("IMPORT_MAX_PAIRS", 5_000_000)
# An upload runs in the request only when its content (after gunzip) and its pairs are within both.
IMPORT_ASYNC_THRESHOLD_BYTES = envint("IMPORT_ASYNC_THRESHOLD_BYTES", 2 * 1024 * 1024)
IMPORT_ASYNC_THRESHOLD_PAIRS = envint("IMPORT_ASYNC_THRESHOLD_PAIRS", 20_000)
# Every uploaded file streams to a temporary file (never into memory) and is stopped once it passes
# IMPORT_MAX_FILE_BYTES (imports are Palate's only uploads).
FILE_UPLOAD_HANDLERS = ["palate.uploads.LimitedUploadHandler"]
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
        # Project API tokens (Authorization: Bearer plt_…): accepted by the scoring endpoints only.
        "annotate.api.authentication.ProjectApiTokenAuthentication",
    ],
    # A logged-in user; refuses project API tokens (403 token_scope) except where a view allows them.
    "DEFAULT_PERMISSION_CLASSES": ["annotate.api.authentication.UserRequired"],
    # JSON bodies: a form cannot carry the lists and objects most inputs have (it dropped them unseen).
    # Imports take multipart uploads and logging in a form too (their views say so).
    "DEFAULT_PARSER_CLASSES": ["palate.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "palate.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "palate.errors.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Palate API",
    "DESCRIPTION": "Pairwise human judgments in, reward models out.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI is served from the drf-spectacular-sidecar package: no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "annotate.api.schema.document_body_errors",
    ],
    # Export policies use the same drop/keep choice for ties and "both bad".
    "ENUM_NAME_OVERRIDES": {
        "DropOrKeepEnum": "annotate.services.exports.DROP_OR_KEEP",
        # Every job of palate.jobs (imports, exports, training runs, scoring jobs) shares JobStatus.
        "JobStatusEnum": "palate.jobs.models.JobStatus",
        # A member's role; a project's ``role`` (which shape it has) takes names of its own.
        "MembershipRoleEnum": "annotate.models.Membership.Role",
        # A choice in A/B terms: a gold answer, a settled label.
        "PairChoiceEnum": "annotate.models.Choice",
    },
}

# Celery. With no broker configured, kombu's filesystem transport under var/ needs no server.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "filesystem://localhost//")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "broker"
    for _sub in ("queue", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
elif CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    # A Redis that is down, or hangs, fails a publish within seconds instead of blocking the request for
    # ever: the job stays queued and the reaper sends its task once Redis answers (palate/jobs/services.py).
    CELERY_BROKER_TRANSPORT_OPTIONS = {"socket_connect_timeout": 2, "socket_timeout": 5}
# A publish is tried once (redis-py itself reconnects a pooled connection that went stale when Redis
# restarted): a job whose task could not be sent waits in its table, not in the request.
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 0}
# A worker that lost its broker keeps trying to reconnect however long the outage lasts, and the tasks it
# runs meanwhile (a training run) go on: their job rows, not the broker, say how they end.
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    # Exact names win over the pattern: beat's light rewardtrain tasks stay off the gpu worker.
    "rewardtrain.tasks.training_retrain_due_task": {"queue": "default"},
    "rewardtrain.tasks.model_priorities_refresh_due_task": {"queue": "default"},
    # Online scoring (the score and best-of-N API) may have a worker of its own: see SCORING_QUEUE below.
    "rewardtrain.tasks.reward_model_score_task": {"queue": os.environ.get("SCORING_QUEUE", "gpu")},
    "rewardtrain.tasks.*": {"queue": "gpu"},
    # Generation jobs wait on model endpoints, not on a CPU or GPU: a queue and worker of their own.
    "generation.*": {"queue": "generate"},
}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = envint("CELERY_TASK_SOFT_TIME_LIMIT", 3600)
CELERY_TASK_TIME_LIMIT = envint("CELERY_TASK_TIME_LIMIT", 3900)
# Results are kept only for tasks that ask for them (the scoring API waits on its task's result): in Redis
# when the broker is Redis, else in files under var/ (no server, like the filesystem broker).
CELERY_RESULT_BACKEND = os.environ.get(
    "CELERY_RESULT_BACKEND",
    CELERY_BROKER_URL
    if CELERY_BROKER_URL.startswith(("redis://", "rediss://"))
    else f"file://{VAR_DIR / 'results'}",
)
if CELERY_RESULT_BACKEND.startswith("file://"):
    Path(CELERY_RESULT_BACKEND.removeprefix("file://")).mkdir(parents=True, exist_ok=True)
elif CELERY_RESULT_BACKEND.startswith(("redis://", "rediss://")):
    # A scoring request finds a Redis that is down within a second (Celery retries 20 times a second apart).
    CELERY_REDIS_SOCKET_CONNECT_TIMEOUT = 2
    CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {
        "retry_policy": {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}
    }
CELERY_RESULT_EXPIRES = 3600
CELERY_TASK_IGNORE_RESULT = True
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE: dict = {
    # The backstop of every job type's reaper (workers reap themselves, palate/jobs/worker.py): jobs whose
    # worker died are queued again or failed, queued jobs whose task was lost get it sent again.
    "jobs-reap": {"task": "palate.jobs_reap", "schedule": 120.0},
    # Frees the slots of expired leases (claims also do this; this keeps progress figures fresh).
    "leases-expire": {"task": "annotate.leases_expire_all", "schedule": 300.0},
    # Recomputes the quality dashboard's figures of projects whose judgments changed.
    "agreement-refresh-all": {"task": "annotate.agreement_refresh_all", "schedule": 300.0},
    # Builds the data browser's search documents that no import's own task built (it was never sent).
    "search-documents-fill": {"task": "annotate.search_documents_fill", "schedule": 300.0},
    # Re-ranks open pairs of "uncertain_systems" projects once enough new judgments arrived (or a few minutes passed).
    "pair-priorities-refresh-due": {"task": "annotate.pair_priorities_refresh_due", "schedule": 60.0},
    # Starts a retraining run for projects with enough new judgments and agreement on target.
    "training-retrain-due": {
        "task": "rewardtrain.tasks.training_retrain_due_task",
        "schedule": 900.0,
        "options": {"queue": "default"},
    },
    # Re-ranks open pairs of "uncertain_model" projects from the active model's stored scores and new votes.
    "model-priorities-refresh": {
        "task": "rewardtrain.tasks.model_priorities_refresh_due_task",
        "schedule": 300.0,
        "options": {"queue": "default"},
    },
}

# Jobs (palate/jobs: imports, exports, training runs, scoring jobs). A running job's heartbeat is written every
# JOB_HEARTBEAT_SECONDS; one silent for JOB_HEARTBEAT_TIMEOUT_SECONDS is taken for lost. Every worker reaps
# when it starts and every JOB_REAP_SECONDS (0: only when it starts), so a job whose worker died runs again
# (or fails, "worker lost") within about JOB_HEARTBEAT_TIMEOUT_SECONDS + JOB_REAP_SECONDS, with no beat.
JOB_HEARTBEAT_SECONDS = envint("JOB_HEARTBEAT_SECONDS", 10)
JOB_HEARTBEAT_TIMEOUT_SECONDS = envint("JOB_HEARTBEAT_TIMEOUT_SECONDS", 60)
JOB_REAP_SECONDS = envint("JOB_REAP_SECONDS", 30)
JOB_PROGRESS_SECONDS = 1.0
# A job still queued this long after its task was sent (the message may be lost) gets it sent again by the
# reaper; one queued for JOB_QUEUED_TIMEOUT_SECONDS fails.
JOB_QUEUED_RESEND_SECONDS = envint("JOB_QUEUED_RESEND_SECONDS", 900)
JOB_QUEUED_TIMEOUT_SECONDS = envint("JOB_QUEUED_TIMEOUT_SECONDS", 24 * 3600)

# Training runs (rewardtrain/services/runs.py): progress is written at most every TRAINING_PROGRESS_SECONDS.
TRAINING_PROGRESS_SECONDS = 1.0
# A run's default time limit (one attempt); a run may set its own.
TRAINING_TIME_LIMIT_SECONDS = envint("TRAINING_TIME_LIMIT_SECONDS", 6 * 3600)
# Where a training attempt writes its checkpoints before they go to the artifacts store: a folder of its
# own under this one (empty: the system's temporary folder), removed when the attempt ends.
TRAINING_SCRATCH_DIR = os.environ.get("TRAINING_SCRATCH_DIR", "")
# Processes a run trains in, data-parallel (torchrun, one GPU each): 1 trains in the worker's own process.
TRAINING_PROCESSES = envint("TRAINING_PROCESSES", 1)
# The base models runs may start from, by name (rewardtrain/base_models.py reads the format): never a path.
# "minilm" is the MiniLM encoder installed by requirements.txt, which trains offline.
TRAINING_BASE_MODELS = os.environ.get("TRAINING_BASE_MODELS", "minilm")
# Whether runs may also name any Hugging Face id, which the worker downloads: only for workers with a hub.
TRAINING_HUB_MODELS = envbool("TRAINING_HUB_MODELS", "false")

# Where training and scoring run: "cuda", "cpu" or "auto" (the worker picks cuda when present).
PALATE_DEVICE = os.environ.get("PALATE_DEVICE", "auto")

# Scoring API (rewardtrain/services/scoring.py): limits of one request, how long the web process waits for the
# worker, the loaded models kept per worker process, and the micro-batching window.
SCORING_MAX_RESPONSES = envint("SCORING_MAX_RESPONSES", 64)
SCORING_MAX_CHARS = envint("SCORING_MAX_CHARS", 20_000)
SCORING_TIMEOUT_SECONDS = envint("SCORING_TIMEOUT_SECONDS", 30)
SCORING_MODEL_CACHE_SIZE = envint("SCORING_MODEL_CACHE_SIZE", 2)
# Reward models a worker fetched from the artifacts store, on its disk, by content hash: the least recently
# used are removed once they take more than MODEL_CACHE_MAX_BYTES (a model in use is never removed).
MODEL_CACHE_DIR = Path(os.environ.get("MODEL_CACHE_DIR", VAR_DIR / "model-cache"))
MODEL_CACHE_MAX_BYTES = envint("MODEL_CACHE_MAX_BYTES", 20 * 1024**3)
SCORING_BATCH_WINDOW_MS = envint("SCORING_BATCH_WINDOW_MS", 5)
SCORING_BATCH_MAX_SEQUENCES = envint("SCORING_BATCH_MAX_SEQUENCES", 256)

# Generation (docs/generation.md): samples per prompt and system, responses per job, a job's time limit on
# the generate queue, and N for best-of-N sampling.
GENERATION_MAX_SAMPLES = envint("GENERATION_MAX_SAMPLES", 32)
GENERATION_MAX_REQUESTS = envint("GENERATION_MAX_REQUESTS", 200_000)
GENERATION_JOB_TIME_LIMIT_SECONDS = envint("GENERATION_JOB_TIME_LIMIT_SECONDS", 24 * 3600)
GENERATION_BEST_OF_N_MAX = envint("GENERATION_BEST_OF_N_MAX", 16)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
