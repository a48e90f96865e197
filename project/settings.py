"""simlabel settings, read from the environment.

With nothing set the app runs on the embedded default: SQLite in ./var and a
Celery broker on the local filesystem, so one command can start web + worker
with no servers. DATABASE_URL selects PostgreSQL, CELERY_BROKER_URL selects
Redis, AWS_STORAGE_BUCKET_NAME selects S3-compatible media storage.
SIMLABEL_PRODUCTION=1 turns on the hardened deploy settings.
"""

import os
import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("SIMLABEL_VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


PRODUCTION = env_bool("SIMLABEL_PRODUCTION")
DEBUG = env_bool("DJANGO_DEBUG", default=not PRODUCTION)


def _development_secret_key(var_dir: Path) -> str:
    """A random key per checkout, kept in var/secret_key (created on first use).

    A public constant would let anyone who reads the code forge the sessions of
    a development server that is reachable from the network.
    """
    path = var_dir / "secret_key"
    try:
        key = path.read_text().strip()
    except FileNotFoundError:
        key = ""
    if len(key) >= 50:
        return key
    var_dir.mkdir(parents=True, exist_ok=True)
    tmp = var_dir / f".secret_key.{os.getpid()}"
    tmp.write_text(secrets.token_urlsafe(64))
    tmp.chmod(0o600)
    try:
        # link() fails if another process got there first: everyone ends up with one key.
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return path.read_text().strip()


SECRET_KEY = os.environ.get("SECRET_KEY", "")
if PRODUCTION:
    # A production process must never run with a guessable or example key.
    if len(SECRET_KEY) < 50 or SECRET_KEY.startswith("django-insecure") or len(set(SECRET_KEY)) < 5:
        raise ImproperlyConfigured(
            "SIMLABEL_PRODUCTION is set but SECRET_KEY is missing or weak: "
            "set SECRET_KEY to a random string of at least 50 characters."
        )
elif not SECRET_KEY:
    SECRET_KEY = _development_secret_key(VAR_DIR)

# Development answers only on this machine's own names (and the test client's);
# production answers only on the names it is given.
_DEV_HOSTS = "localhost,127.0.0.1,[::1],testserver"
ALLOWED_HOSTS = [
    h.strip() for h in os.environ.get("ALLOWED_HOSTS", "" if PRODUCTION else _DEV_HOSTS).split(",") if h.strip()
]
CSRF_TRUSTED_ORIGINS = [o.strip() for o in os.environ.get("CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI assets served locally (CSP: no CDN)
    "labeling",
    "embeddings",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.gzip.GZipMiddleware",
    "django.middleware.common.CommonMiddleware",
    "core.api.middleware.ApiRequestBodyLimitMiddleware",  # before CSRF, which may read the body
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "project.middleware.ContentSecurityPolicyMiddleware",
]

ROOT_URLCONF = "project.urls"
WSGI_APPLICATION = "project.wsgi.application"

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

# --- database -----------------------------------------------------------------
if os.environ.get("DATABASE_URL"):
    DATABASES = {"default": dj_database_url.parse(os.environ["DATABASE_URL"], conn_max_age=60)}
else:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("SQLITE_PATH", str(VAR_DIR / "simlabel.sqlite3")),
            # Web and worker write the same file: WAL lets readers run beside a
            # writer, IMMEDIATE transactions avoid "database is locked" upgrades.
            "OPTIONS": {
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 30,
            },
            # Tests use a file, not :memory:, so a real worker process can share it.
            "TEST": {"NAME": str(VAR_DIR / "test_simlabel.sqlite3")},
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

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

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/datasets/"
LOGOUT_REDIRECT_URL = "/accounts/login/"
# The sign-in throttle (project/throttling.py): failures per window, per (username, address),
# per address, and per username from all addresses (past it only addresses that signed in as
# the user within KNOWN_ADDRESS_DAYS may try).
SIMLABEL_LOGIN_FAILURE_LIMIT = env_int("SIMLABEL_LOGIN_FAILURE_LIMIT", 10)
SIMLABEL_LOGIN_ADDRESS_FAILURE_LIMIT = env_int("SIMLABEL_LOGIN_ADDRESS_FAILURE_LIMIT", 50)
SIMLABEL_LOGIN_USER_FAILURE_LIMIT = env_int("SIMLABEL_LOGIN_USER_FAILURE_LIMIT", 100)
SIMLABEL_LOGIN_KNOWN_ADDRESS_DAYS = env_int("SIMLABEL_LOGIN_KNOWN_ADDRESS_DAYS", 30)
SIMLABEL_LOGIN_FAILURE_WINDOW = env_int("SIMLABEL_LOGIN_FAILURE_WINDOW", 900)  # seconds
# How many reverse proxies of ours append to X-Forwarded-For; 0: clients connect directly
# and the header is ignored (a client could write anything in it).
SIMLABEL_NUM_PROXIES = env_int("SIMLABEL_NUM_PROXIES", 0)
# API tokens expire this many days after they were issued (0: never).
SIMLABEL_TOKEN_TTL_DAYS = env_int("SIMLABEL_TOKEN_TTL_DAYS", 30)

# --- static and media -----------------------------------------------------------
STATIC_URL = "/static/"
STATICFILES_DIRS = [
    BASE_DIR / "static",
    # Front-end vendor libraries come from npm (`npm ci`), never from a CDN.
    ("vendor/plotly", BASE_DIR / "node_modules" / "plotly.js-strict-dist-min"),
]
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", VAR_DIR / "staticfiles"))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise warns about a missing root
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", VAR_DIR / "media"))
MEDIA_URL = "/media/"  # never routed: media is served by permission-checking views

USE_S3 = bool(os.environ.get("AWS_STORAGE_BUCKET_NAME"))
if USE_S3:
    _default_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": os.environ["AWS_STORAGE_BUCKET_NAME"],
            "endpoint_url": os.environ.get("AWS_S3_ENDPOINT_URL") or None,
            "region_name": os.environ.get("AWS_S3_REGION_NAME") or None,
            # Left unset, boto3 falls back to its own chain (instance roles, ~/.aws).
            "access_key": os.environ.get("AWS_ACCESS_KEY_ID") or None,
            "secret_key": os.environ.get("AWS_SECRET_ACCESS_KEY") or None,
            "default_acl": None,
            "file_overwrite": False,
            "querystring_auth": True,
            "querystring_expire": 600,
        },
    }
else:
    _default_storage = {"BACKEND": "django.core.files.storage.FileSystemStorage"}
STORAGES = {
    "default": _default_storage,
    "staticfiles": {
        "BACKEND": (
            "project.storage.StaticFilesStorage"  # whitenoise's, with JS imports hashed too
            if PRODUCTION
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}

# --- upload limits ----------------------------------------------------------------
SIMLABEL_MAX_FILE_BYTES = env_int("SIMLABEL_MAX_FILE_BYTES", 20 * 1024 * 1024)
SIMLABEL_MAX_IMAGE_PIXELS = env_int("SIMLABEL_MAX_IMAGE_PIXELS", 40_000_000)
SIMLABEL_MAX_FILES_PER_REQUEST = env_int("SIMLABEL_MAX_FILES_PER_REQUEST", 500)
SIMLABEL_MAX_ARCHIVE_MEMBERS = env_int("SIMLABEL_MAX_ARCHIVE_MEMBERS", 100_000)
SIMLABEL_MAX_ARCHIVE_BYTES = env_int("SIMLABEL_MAX_ARCHIVE_BYTES", 4 * 1024 * 1024 * 1024)
SIMLABEL_MAX_COMPRESSION_RATIO = env_int("SIMLABEL_MAX_COMPRESSION_RATIO", 200)
SIMLABEL_MAX_UPLOAD_BYTES = env_int("SIMLABEL_MAX_UPLOAD_BYTES", 1024 * 1024 * 1024)
# Any other API request body (JSON, form): refused from its Content-Length (413) before it is read.
# A bulk label of 100,000 ids with their expected versions is about 2.5 MB.
SIMLABEL_MAX_JSON_BYTES = env_int("SIMLABEL_MAX_JSON_BYTES", 5 * 1024 * 1024)
# One upload of a dataset's own embeddings (POST /api/datasets/{id}/embeddings/): 100,000 images x 512
# float32 values is 205 MB as .npy; JSON and CSV spell the same numbers in about 2.5 times the bytes.
SIMLABEL_MAX_EMBEDDING_BYTES = env_int("SIMLABEL_MAX_EMBEDDING_BYTES", 256 * 1024 * 1024)
# One backbone file (POST /api/datasets/{id}/backbones/): it is loaded in memory to be checked; DINOv2 ViT-S/14
# exported is about 90 MB, OpenCLIP ViT-B/32's image tower about 350 MB, ViT-L models 1.2 GB.
SIMLABEL_MAX_BACKBONE_BYTES = env_int("SIMLABEL_MAX_BACKBONE_BYTES", 1024 * 1024 * 1024)
# One label file (POST /api/datasets/{id}/annotations/import/): it is parsed in memory, and a Label Studio
# export of 100,000 tasks is about 50 MB.
SIMLABEL_MAX_LABEL_IMPORT_BYTES = env_int("SIMLABEL_MAX_LABEL_IMPORT_BYTES", 64 * 1024 * 1024)
# One upload of a model's predictions (POST /api/datasets/{id}/predictions/): at most this many items
# (images), and a JSON body of at most this many bytes (100,000 items of about 70 bytes each is 7 MB).
SIMLABEL_MAX_PREDICTION_ITEMS = env_int("SIMLABEL_MAX_PREDICTION_ITEMS", 100_000)
SIMLABEL_MAX_PREDICTION_BYTES = env_int("SIMLABEL_MAX_PREDICTION_BYTES", 16 * 1024 * 1024)
SIMLABEL_THUMBNAIL_SIZE = env_int("SIMLABEL_THUMBNAIL_SIZE", 128)
DATA_UPLOAD_MAX_NUMBER_FILES = SIMLABEL_MAX_FILES_PER_REQUEST + 1
DATA_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
FILE_UPLOAD_TEMP_DIR = None

# --- REST framework ----------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "core.api.authentication.ExpiringTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "NUM_PROXIES": SIMLABEL_NUM_PROXIES,  # DRF reads client addresses as the sign-in throttle does
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "core.api.pagination.StandardPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "core.api.errors.json_exception_handler",
    "DEFAULT_PARSER_CLASSES": [
        "core.api.parsers.BoundedJSONParser",  # bounded size and nesting: no RecursionError 500
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "simlabel API",
    "DESCRIPTION": "Label image datasets in bulk from an autoencoder + t-SNE map.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Several request fields are named `format` with different choices; each set gets its own name.
    "ENUM_NAME_OVERRIDES": {
        "LabelImportFormatEnum": "labeling.services.label_import.IMPORT_FORMATS",
        "BackboneFormatEnum": "embeddings.ml.backbone.FORMATS",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",  # the default, kept
        "core.api.contract.document_rules",  # query parameters, body limits, error shape
    ],
}

CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    if not os.environ.get("CACHE_URL")
    else {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": os.environ["CACHE_URL"],
        # An unreachable Redis must cost a request a second, not the OS's minutes-long connect timeout.
        "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
    }
}

# --- Celery ----------------------------------------------------------------------------
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "celery-broker"
    for sub in ("in", "processed", "control"):
        (_broker_dir / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # kombu's exchange tables default to ./control in the working directory.
        "control_folder": str(_broker_dir / "control"),
        "data_folder_in": str(_broker_dir / "in"),
        "data_folder_out": str(_broker_dir / "in"),
        "processed_folder": str(_broker_dir / "processed"),
        "store_processed": False,
    }
    CELERY_RESULT_BACKEND = os.environ.get(
        "CELERY_RESULT_BACKEND", f"db+sqlite:///{VAR_DIR / 'celery-results.sqlite3'}"
    )
else:
    # Redis redelivers an unacked task after the visibility timeout; runs can be
    # long, so it is far above any run, and run claiming is idempotent anyway.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 6 * 3600)}
    CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND", CELERY_BROKER_URL)
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_EXPIRES = 3600
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    "embeddings.tasks.run_pipeline": {"queue": "ml"},
    "embeddings.tasks.embed_chunk": {"queue": "ml"},
    "embeddings.tasks.neighbor_chunk": {"queue": "ml"},
}
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER")
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A publish while the broker is down fails fast instead of hanging the request.
CELERY_BROKER_CONNECTION_TIMEOUT = 3
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 1}

# A run whose worker has not written a heartbeat for this long is marked failed.
SIMLABEL_RUN_HEARTBEAT_TIMEOUT = env_int("SIMLABEL_RUN_HEARTBEAT_TIMEOUT", 120)
SIMLABEL_ARTIFACTS_PREFIX = "runs"
SIMLABEL_MIN_RUN_IMAGES = env_int("SIMLABEL_MIN_RUN_IMAGES", 10)
# Large datasets are embedded in chunks that idle `ml` workers pick up in parallel.
SIMLABEL_EMBED_PARALLEL_MIN_IMAGES = env_int("SIMLABEL_EMBED_PARALLEL_MIN_IMAGES", 20_000)
SIMLABEL_EMBED_CHUNK_SIZE = env_int("SIMLABEL_EMBED_CHUNK_SIZE", 4096)
# The layout's and clustering's neighbor queries (points beyond their samples) are answered in chunks
# idle `ml` workers pick up, when there are at least this many queries (0: never).
SIMLABEL_NEIGHBOR_PARALLEL_MIN_QUERIES = env_int("SIMLABEL_NEIGHBOR_PARALLEL_MIN_QUERIES", 20_000)
SIMLABEL_NEIGHBOR_CHUNK_SIZE = env_int("SIMLABEL_NEIGHBOR_CHUNK_SIZE", 8192)
# Accepting suggestions without a min_confidence takes only those at least this confident (the API's
# default and the pages' starting floor).  Confidence is calibrated, so 0.9 is the lowest floor whose
# accepted labels stayed >= 95 % right on every draw of bench/accept_floor.py: digits with 1 % / 5 % / 20 %
# labeled, worst seed 0.952 / 0.964 / 0.989 right, keeping 61 % / 92 % / 97 % of the correct suggestions
# (0.85 let the 1 % draw fall to 0.929); photos (weak codes, 24-34 % right) accept almost nothing, as they should.
SIMLABEL_ACCEPT_MIN_CONFIDENCE = 0.9
# Auto-retrain (a dataset setting) starts at most one run per dataset in this many minutes
# (embeddings.services.retrain); the retrain offer needs max(50, 5 % of the images) labels new to the map.
SIMLABEL_AUTO_RETRAIN_MIN_MINUTES = float(os.environ.get("SIMLABEL_AUTO_RETRAIN_MIN_MINUTES", "30"))
SIMLABEL_RETRAIN_MIN_NEW_LABELS = env_int("SIMLABEL_RETRAIN_MIN_NEW_LABELS", 50)
SIMLABEL_RETRAIN_MIN_NEW_SHARE = float(os.environ.get("SIMLABEL_RETRAIN_MIN_NEW_SHARE", "0.05"))
NUMBA_CACHE_DIR = os.environ.setdefault("NUMBA_CACHE_DIR", str(VAR_DIR / "numba-cache"))

# --- webhooks (labeling.services.webhooks) ---------------------------------------------------
# Webhooks may only reach public addresses: loopback, private, link-local, multicast and reserved
# ranges are refused unless listed here (comma-separated CIDRs, e.g. "127.0.0.1/32,10.1.0.0/16"
# for tests or an on-premises receiver).
SIMLABEL_WEBHOOK_ALLOWED_NETWORKS = [
    n.strip() for n in os.environ.get("SIMLABEL_WEBHOOK_ALLOWED_NETWORKS", "").split(",") if n.strip()
]
SIMLABEL_WEBHOOK_TIMEOUT = float(os.environ.get("SIMLABEL_WEBHOOK_TIMEOUT", "10"))  # seconds per attempt
SIMLABEL_WEBHOOK_MAX_ATTEMPTS = env_int("SIMLABEL_WEBHOOK_MAX_ATTEMPTS", 6)
# Attempt n+1 waits BACKOFF * 2**(n-1) seconds after attempt n fails (10 s, 20 s, 40 s, ...), at most BACKOFF_MAX.
SIMLABEL_WEBHOOK_BACKOFF = float(os.environ.get("SIMLABEL_WEBHOOK_BACKOFF", "10"))
SIMLABEL_WEBHOOK_BACKOFF_MAX = float(os.environ.get("SIMLABEL_WEBHOOK_BACKOFF_MAX", "3600"))

# --- images in buckets (labeling.services.storages, core.object_storage) ----------------------
# Encrypts the buckets' credentials at rest (any long random string); derived from SECRET_KEY when unset,
# so changing SECRET_KEY then makes stored credentials unreadable: set this in production.
SIMLABEL_STORAGE_KEY = os.environ.get("SIMLABEL_STORAGE_KEY", "")
SIMLABEL_STORAGE_URL_SECONDS = env_int("SIMLABEL_STORAGE_URL_SECONDS", 300)  # presigned original links
SIMLABEL_STORAGE_FETCH_THREADS = env_int("SIMLABEL_STORAGE_FETCH_THREADS", 8)  # objects fetched at once
# A bucket's endpoint may only resolve to public addresses: loopback, private, link-local, multicast and
# reserved ranges are refused unless listed here (comma-separated CIDRs, e.g. "10.1.0.0/16" for a MinIO on
# your own network, "127.0.0.1/32" for tests), when a storage is connected and before every request to it.
SIMLABEL_STORAGE_ALLOWED_NETWORKS = [
    n.strip() for n in os.environ.get("SIMLABEL_STORAGE_ALLOWED_NETWORKS", "").split(",") if n.strip()
]

# --- security -------------------------------------------------------------------------------
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # the page scripts read it to send X-CSRFToken
SECURE_REFERRER_POLICY = "same-origin"
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data: blob: https:; script-src 'self'; "
    "style-src 'self' 'unsafe-inline'; worker-src 'self' blob:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'self'; form-action 'self'; object-src 'none'"
)
if PRODUCTION:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    # The container health check asks gunicorn directly, over plain HTTP.
    SECURE_REDIRECT_EXEMPT = [r"^healthz/$"]
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
}
