"""Mailweb settings: every value comes from the environment (see .env.example and the README).

Defaults serve a developer on one machine: SQLite under ./data and a Celery broker on the local
filesystem, so nothing but Python is needed. Production (``DEBUG`` off) refuses to start without
the secrets it cannot safely invent.
"""

import os
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

from mailweb.env import env_bool, env_int, env_list, env_secret, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env_str("MAILWEB_DATA_DIR", str(BASE_DIR / "data")))

DEBUG = env_bool("DEBUG", default=False)
TESTING = "pytest" in sys.modules or env_bool("MAILWEB_TESTING", default=False)

SECRET_KEY = env_secret("SECRET_KEY")
# Fernet keys for the token vault, comma-separated, newest first (see accounts.crypto).
MAILWEB_TOKEN_KEYS = [
    key.strip() for key in env_secret("MAILWEB_TOKEN_KEYS").split(",") if key.strip()
]
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS")

if not DEBUG and not TESTING:
    missing = [
        name
        for name, value in (
            ("SECRET_KEY", SECRET_KEY),
            ("MAILWEB_TOKEN_KEYS", MAILWEB_TOKEN_KEYS),
            ("ALLOWED_HOSTS", ALLOWED_HOSTS),
        )
        if not value
    ]
    if missing:
        raise ImproperlyConfigured(
            "Mailweb is running in production mode (DEBUG is off) and these settings are missing: "
            + ", ".join(missing)
            + ". Set them in the environment (see .env.example), or set DEBUG=true for development."
        )
else:
    # A development key is only acceptable on a developer's machine; script/server writes
    # persistent ones to ./data so sessions and stored tokens survive restarts.
    SECRET_KEY = SECRET_KEY or "dev-only-insecure-secret-key-change-me"
    # Without keys, development derives one vault key from SECRET_KEY (accounts.crypto).
    ALLOWED_HOSTS = ALLOWED_HOSTS or ["localhost", "127.0.0.1", "[::1]", "testserver"]

MAILWEB_BASE_URL = env_str("MAILWEB_BASE_URL", "http://localhost:8000").rstrip("/")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS") or [MAILWEB_BASE_URL]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "accounts",
    "mailweb",
    "sync",
]

MIDDLEWARE = [
    "mailweb.healthz_middleware.HealthzMiddleware",  # first: container checks send Host 127.0.0.1
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "mailweb.middleware.ContentSecurityPolicyMiddleware",
]

ROOT_URLCONF = "mailweb.urls"
WSGI_APPLICATION = "mailweb.wsgi.application"

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
                "accounts.context_processors.admin_alerts",
            ],
        },
    },
]


def _database_from_url(url: str) -> dict[str, object]:
    """``postgres://user:pass@host:port/name`` or ``sqlite:///path`` as a Django DATABASES entry."""
    parts = urlsplit(url)
    if parts.scheme in {"postgres", "postgresql", "pgsql"}:
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(parts.path.lstrip("/")) or "mailweb",
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": str(parts.port or ""),
            "CONN_MAX_AGE": env_int("DATABASE_CONN_MAX_AGE", 60),
            "CONN_HEALTH_CHECKS": True,
        }
    if parts.scheme == "sqlite":
        return _sqlite(
            Path(unquote(parts.path))
            if parts.path not in {"", "/"}
            else DATA_DIR / "mailweb.sqlite3"
        )
    raise ImproperlyConfigured(
        f"DATABASE_URL has an unsupported scheme {parts.scheme!r} (use postgres:// or sqlite://)"
    )


def _sqlite(path: Path) -> dict[str, object]:
    """SQLite in WAL mode with a busy timeout, so web, worker and beat can share it."""
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": path,
        "OPTIONS": {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": (
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=20000;"
            ),
        },
    }


DATABASE_URL = env_secret("DATABASE_URL")
DATABASES = {
    "default": _database_from_url(DATABASE_URL)
    if DATABASE_URL
    else _sqlite(DATA_DIR / "mailweb.sqlite3")
}
USING_POSTGRES = DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"
# Password sign-in with failed attempts limited per account and per IP (accounts.auth_backends).
AUTHENTICATION_BACKENDS = ["accounts.auth_backends.ThrottledModelBackend"]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "inbox"
LOGOUT_REDIRECT_URL = "login"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 10},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
if TESTING:
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
WHITENOISE_USE_FINDERS = DEBUG or TESTING
STORAGES = {
    "default": {
        "BACKEND": "mailweb.storage.AtomicFileSystemStorage",
        "OPTIONS": {"location": Path(env_str("MAILWEB_BLOB_DIR", str(DATA_DIR / "blobs")))},
    },
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG or TESTING
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

# --- Security -------------------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if not DEBUG:
    SESSION_COOKIE_SECURE = env_bool(
        "SESSION_COOKIE_SECURE", default=MAILWEB_BASE_URL.startswith("https://")
    )
    CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000 if SESSION_COOKIE_SECURE else 0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_SECONDS > 0
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", default=False)

#: A reverse proxy passes requests on (production): trust what it says of the visitor
#: (X-Forwarded-Proto / -Host, and X-Forwarded-For in ``accounts.auth_backends.client_ip``).
MAILWEB_BEHIND_PROXY = not DEBUG and env_bool("MAILWEB_BEHIND_PROXY", default=True)
if MAILWEB_BEHIND_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    USE_X_FORWARDED_HOST = True

# --- Mail out (notifications, password reset) ----------------------------------------------
EMAIL_URL = env_secret("EMAIL_URL")
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Mailweb <mailweb@localhost>")
if EMAIL_URL:
    _email = urlsplit(EMAIL_URL)
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_HOST = _email.hostname or "localhost"
    EMAIL_PORT = _email.port or 587
    EMAIL_HOST_USER = unquote(_email.username or "")
    EMAIL_HOST_PASSWORD = unquote(_email.password or "")
    EMAIL_USE_TLS = _email.scheme == "smtp+tls"
    EMAIL_USE_SSL = _email.scheme == "smtps"
else:
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"

# --- Celery ---------------------------------------------------------------------------------
REDIS_URL = env_secret("REDIS_URL")
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {"visibility_timeout": 3600}
else:
    # kombu's filesystem transport needs no server: messages are files under ./data/broker.
    _broker_dir = DATA_DIR / "broker"
    for _sub in ("queue", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
# Presence, rate limits and other short-lived shared state: Redis when configured, else files
# under ./data so several processes on one machine still see the same values.
if REDIS_URL:
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(DATA_DIR / "cache"),
        }
    }
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env_int("MAILWEB_TASK_SOFT_TIME_LIMIT", 600)
CELERY_TASK_TIME_LIMIT = env_int("MAILWEB_TASK_TIME_LIMIT", 660)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_ALWAYS_EAGER = env_bool("MAILWEB_TASKS_EAGER", default=False)
CELERY_IMPORTS = ["sync.outbox_tasks"]
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")
MAILWEB_SYNC_SWEEP_SECONDS = env_int("MAILWEB_SYNC_SWEEP_SECONDS", 300)
# Messages per FETCH batch (each batch is committed with its folder cursor).
MAILWEB_SYNC_BATCH_SIZE = env_int("MAILWEB_SYNC_BATCH_SIZE", 200)
# Processes that parse MIME for a sync (0: parse in the worker process itself).
MAILWEB_SYNC_PARSE_PROCESSES = env_int("MAILWEB_SYNC_PARSE_PROCESSES", min(4, os.cpu_count() or 1))
# Without CONDSTORE (Exchange), how often the flags of every message are re-read.
MAILWEB_SYNC_FLAGS_SWEEP_SECONDS = env_int("MAILWEB_SYNC_FLAGS_SWEEP_SECONDS", 600)
MAILWEB_HEARTBEAT_SECONDS = 30
MAILWEB_HEARTBEAT_STALE_SECONDS = env_int("MAILWEB_HEARTBEAT_STALE_SECONDS", 120)

# --- Microsoft endpoints (sovereign clouds and tests change these) -------------------------
MICROSOFT_CLIENT_ID = env_str("MICROSOFT_CLIENT_ID")
MICROSOFT_CLIENT_SECRET = env_secret("MICROSOFT_CLIENT_SECRET")
MICROSOFT_TENANT = env_str("MICROSOFT_TENANT", "organizations")
MICROSOFT_AUTHORITY_HOST = env_str(
    "MICROSOFT_AUTHORITY_HOST", "https://login.microsoftonline.com"
).rstrip("/")
MICROSOFT_GRAPH_URL = env_str("MICROSOFT_GRAPH_URL", "https://graph.microsoft.com/v1.0").rstrip("/")
MICROSOFT_IMAP_HOST = env_str("MICROSOFT_IMAP_HOST", "outlook.office365.com:993")
MICROSOFT_SMTP_HOST = env_str("MICROSOFT_SMTP_HOST", "smtp.office365.com:587")

# --- Logging: secrets never reach logs (see mailweb.logging_filters) ------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact": {"()": "mailweb.logging_filters.RedactSecretsFilter"}},
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["redact"]},
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        # msal logs whole token responses at DEBUG; never let that through.
        "msal": {"level": "WARNING"},
        "imapclient": {"level": "WARNING"},
        "urllib3": {"level": "WARNING"},
    },
}
