"""Configuration: every setting in one place, read once at start and validated.

Precedence is argument > environment > default: ``create_app({"DATABASE_URL": ...})``
overrides the environment, which overrides the defaults in ``Settings``. Values are
parsed to their field's type; a bad value stops the app with a message that says which
variable is wrong and how to fix it.

Defaults fail closed: ``APP_ENV`` is production unless the app is started for local work
(``make run`` says development, the tests say test). In production the app refuses the
well-known local JWT secret, debug mode, the simulated FAL provider and a non-https
``PUBLIC_URL``, so a bare ``gunicorn 'backend:create_app()'`` with no secrets does not
start. Secrets never show in ``repr(settings)`` (and so in logs or error pages): fields
named ``*_SECRET``, ``*_KEY``, ``*_TOKEN`` or ``*_PASSWORD`` print as ``'***'`` and URLs
print without their password.

To add a setting: add a field to ``Settings`` (its name is the environment variable),
with a default and a one-line comment, and a row in the README's configuration table.
The validated settings are at ``app.config["SETTINGS"]``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, get_args, get_type_hints
from urllib.parse import parse_qsl, unquote, urlsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict

# The Supabase CLI's well-known local secret: fine on a laptop, refused outside development/test.
DEFAULT_JWT_SECRET = "super-secret-jwt-token-with-at-least-32-characters-long"  # noqa: S105

APP_ENVS = ("development", "test", "production")
AUTH_MODES = ("local", "supabase")
POOLERS = ("none", "session", "transaction")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
MEDIA_STORAGES = ("local", "supabase")
REDIS_CLUSTER_SCHEME = "redis+cluster"  # limits' name for it; the cache reads it too
# the query parameters by which each submission's FAL_WEBHOOK_URL names its generation
FAL_WEBHOOK_NAMING = ("generation_id", "tag")
NAMESPACE_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")  # no braces: it is a Cluster hash tag
REDIS_SCHEMES = ("redis", "rediss", "unix", REDIS_CLUSTER_SCHEME)


class ConfigError(RuntimeError):
    """The environment does not describe a runnable app; the message says what to change."""


@dataclass(frozen=True)
class Settings:
    APP_ENV: str = "production"  # development, test or production; make run says development
    DEBUG: bool = False  # Flask debug mode; refused in production
    LOG_LEVEL: str = "INFO"
    PORT: int = 8000  # where make run and the Procfile listen
    PUBLIC_URL: str | None = None  # how clients reach this app, the token issuer; default
    # http://localhost:<PORT>
    MAX_CONTENT_LENGTH: int = 1_048_576  # largest request body accepted, in bytes

    DATABASE_URL: str | None = None  # postgresql:// URL; the app connects as its user
    # a direct (session) connection for LISTEN and advisory-lock leadership, which a
    # transaction-mode pooler breaks; none: DATABASE_URL
    DATABASE_DIRECT_URL: str | None = None
    DATABASE_POOLER: str = "none"  # what DATABASE_URL points at: none, session or transaction
    DB_POOL_MIN_SIZE: int = 2
    DB_POOL_MAX_SIZE: int = 0  # 0: GUNICORN_THREADS + 2 (one per request thread, and spare)
    GUNICORN_THREADS: int = 4  # request threads per worker (the Procfile reads it too)
    DB_POOL_TIMEOUT: float = 5.0  # seconds to wait for a free connection before a 503
    DB_STATEMENT_TIMEOUT_MS: int = 5000  # a longer query is cancelled and answers 503

    # shared cache and rate limits; none means in-process only; redis+cluster://host:port,...
    # is a Redis Cluster, named by some of its nodes
    REDIS_URL: str | None = None
    # the prefix of the cache's and the rate limits' keys in Redis; empty: one derived from
    # where DATABASE_URL leads (host, port, database, user, service)
    REDIS_NAMESPACE: str = ""
    FAL_KEY: str | None = None  # FAL.ai API key; none means the simulated provider

    AUTH_MODE: str = "local"  # local (embedded auth in auth.users) or supabase (Supabase Auth)
    JWT_SECRET: str = DEFAULT_JWT_SECRET  # HS256 secret (Supabase's legacy JWT secret)
    JWT_PRIVATE_KEY: str | None = None  # PEM (EC P-256 or RSA): the local provider signs with it
    JWT_KEY_ID: str | None = None  # kid for JWT_PRIVATE_KEY; default derived from the key
    JWT_EXPIRY: int = 3600  # access token lifetime, seconds
    JWT_LEEWAY: int = 30  # clock skew tolerated on exp/iat, seconds
    JWT_AUDIENCE: str = "authenticated"
    JWT_ISSUER: str | None = None  # default <PUBLIC_URL>/auth/v1, or <SUPABASE_URL>/auth/v1
    JWKS_URL: str | None = None  # trusted JWKS for ES256/RS256 tokens; supabase mode defaults it
    JWKS_CACHE_SECONDS: int = 600  # how long fetched keys are trusted before a refetch
    JWKS_MIN_REFETCH_SECONDS: float = 10.0  # an unknown kid refetches at most this often
    # keys no successful fetch has confirmed this long verify nothing (fetches keep failing)
    JWKS_MAX_AGE_SECONDS: int = 86_400
    PASSWORD_MIN_LENGTH: int = 8
    BCRYPT_COST: int = 10  # GoTrue's; each step doubles the work (the tests use 4, the minimum)
    # sign-ups are confirmed at once (no email round trip); default: on in development only
    AUTH_AUTOCONFIRM: bool | None = None

    SMTP_HOST: str | None = None  # outgoing mail server; none: mail is written to MAIL_DIR
    SMTP_PORT: int = 587  # 465: implicit TLS; otherwise STARTTLS when the server offers it
    SMTP_USER: str | None = None
    SMTP_PASSWORD: str | None = dataclasses.field(default=None, repr=False)
    SMTP_SENDER: str | None = None  # From: address; required with SMTP_HOST
    MAIL_DIR: str = ".mail"  # development catch-all: every email as an .eml file here

    RATE_LIMIT_ENABLED: bool = True  # flask-limiter on/off (benchmarks turn it off)
    RATE_LIMIT_PER_IP: str = "1000/hour"  # every request, per client IP
    RATE_LIMIT_PER_USER: str = "3000/hour"  # every request with a valid token, per user
    RATE_LIMIT_AUTH_PER_IP: str = "20/minute"  # login and signup, per client IP
    RATE_LIMIT_AUTH_PER_EMAIL: str = "10/minute"  # login and signup, per email
    RATE_LIMIT_GENERATIONS_PER_USER: str = "30/minute"  # generation submissions, per user
    CORS_ORIGINS: str = ""  # comma-separated browser origins allowed to call; empty: none
    TRUSTED_PROXIES: int = 0  # proxies in front of the app whose X-Forwarded-For is trusted

    CACHE_ENABLED: bool = True  # L1/L2 cache of hot reads; off means every read asks Postgres
    CACHE_L1_SIZE: int = 10_000  # entries in each process's L1
    CACHE_L1_TTL: float = 300.0  # seconds; invalidation is push-based, this is a safety net
    CACHE_L2_TTL: int = 300  # seconds an entry lives in Redis
    # Redis refuses CONFIG GET (managed services): trust that its maxmemory-policy is noeviction
    CACHE_L2_ASSUME_NOEVICTION: bool = False
    CACHE_LISTENER_TIMEOUT: float = 5.0  # seconds without a listener round trip: distrust
    # seconds a session's liveness is cached where auth.sessions announces no deletions
    CACHE_SESSION_TTL: float = 5.0

    # the FAL pipeline (the worker, the cancel route, the webhook verifier)
    FAL_WEBHOOK_URL: str | None = None  # where FAL posts; default <PUBLIC_URL>/api/v1/webhooks/fal
    FAL_JWKS_URL: str = "https://rest.alpha.fal.ai/.well-known/jwks.json"  # FAL's signing keys
    # a submission that has not reached FAL this long after creation fails and is refunded
    FAL_SUBMIT_DEADLINE_SECONDS: int = 600
    # first wait between submit attempts; it doubles up to FAL_SUBMIT_RETRY_MAX_SECONDS
    FAL_SUBMIT_RETRY_SECONDS: int = 2
    FAL_SUBMIT_RETRY_MAX_SECONDS: int = 60
    FAL_POLL_AFTER_SECONDS: int = 120  # the poller asks FAL about a webhook this late
    # a request unfinished this long after creation is cancelled at FAL, failed and refunded
    FAL_DEADLINE_SECONDS: int = 3600
    # consecutive FAL failures that open the breaker, and how long it stays open
    FAL_BREAKER_THRESHOLD: int = 5
    FAL_BREAKER_OPEN_SECONDS: int = 30
    WORKER_CONCURRENCY: int = 4  # jobs one worker process runs at once
    WORKER_HEARTBEAT_SECONDS: float = 10.0
    # a worker that has not beaten its heartbeat this long is gone: its jobs are retried
    WORKER_STALLED_SECONDS: float = 30.0
    # how often the worker refreshes the analytics views; 0: never (pg_cron does, where installed)
    ANALYTICS_REFRESH_SECONDS: float = 300.0

    SUPABASE_URL: str | None = None  # https://<project>.supabase.co (AUTH_MODE=supabase)
    SUPABASE_ANON_KEY: str | None = None  # the project's anon (publishable) key

    METRICS_TOKEN: str | None = None  # bearer token for health details and metrics (operators)

    MEDIA_STORAGE: str = "local"  # where outputs are kept: local (MEDIA_DIR) or supabase (Storage)
    MEDIA_DIR: str = ".media"  # the local storage's directory
    MEDIA_ALLOWED_HOSTS: str = "fal.media,*.fal.media"  # hosts outputs are copied from (globs)
    # host:port pairs exempt from the public-address rule (the simulated provider, test fakes);
    # refused in production
    MEDIA_PRIVATE_HOSTS: str = ""
    MEDIA_MAX_BYTES: int = 200_000_000  # largest output copied, in bytes
    MEDIA_MAX_OUTPUTS: int = 16  # most outputs copied of one generation
    MEDIA_URL_SECONDS: int = 3600  # lifetime of a signed media URL
    # HMAC key of local media URLs; default derived from JWT_SECRET
    MEDIA_SIGNING_KEY: str | None = None
    # Storage uploads and signed URLs (MEDIA_STORAGE=supabase)
    SUPABASE_SERVICE_ROLE_KEY: str | None = None
    # deliver user webhooks to private and loopback addresses (tests); refused in production
    WEBHOOKS_ALLOW_PRIVATE: bool = False
    WEBHOOK_MAX_ATTEMPTS: int = 8  # attempts per event before the delivery is marked failed
    WEBHOOK_TIMEOUT: float = 10.0  # seconds a user's endpoint has to answer
    SSE_MAX_SECONDS: float = 300.0  # an event stream closes after this; clients reconnect
    # concurrent event streams and Prefer: wait requests per process; 0: half the threads
    LIVE_MAX_WAITERS: int = 0
    LIVE_MAX_PER_USER: int = 1  # of those, how many one user may hold (per process)

    def __post_init__(self):
        if self.PUBLIC_URL is None:
            object.__setattr__(self, "PUBLIC_URL", f"http://localhost:{self.PORT}")

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{f.name}={_masked(f.name, getattr(self, f.name))!r}" for f in fields(self)
        )
        return f"Settings({shown})"

    __str__ = __repr__

    @property
    def is_local(self) -> bool:
        """Started for local work (make run, the tests): the relaxed defaults are allowed."""
        return self.APP_ENV in ("development", "test")

    @property
    def is_production(self) -> bool:
        return self.APP_ENV == "production"

    @property
    def direct_database_url(self) -> str | None:
        """Where LISTEN and session-level advisory locks go: never a transaction pooler."""
        return self.DATABASE_DIRECT_URL or self.DATABASE_URL

    @property
    def fal_webhook_url(self) -> str:
        return self.FAL_WEBHOOK_URL or f"{self.PUBLIC_URL.rstrip('/')}/api/v1/webhooks/fal"

    @property
    def pool_max_size(self) -> int:
        return self.DB_POOL_MAX_SIZE or self.GUNICORN_THREADS + 2

    @property
    def redis_namespace(self) -> str:
        """The prefix of what the app keeps in Redis (L2 and its Cluster hash tag, the rate
        limits). Instances of one deployment share it; another database's never does, so
        where environments share a Redis, answers cached for one (a staging copy restored
        from production holds the same ids) are never read for the other, nor its limits
        counted against the other's users. The database is told by what locates it: host,
        port, database, user (a Supabase pooler's user names the project) and service,
        from DATABASE_URL or, where it leaves them out, libpq's environment."""
        if self.REDIS_NAMESPACE:
            return self.REDIS_NAMESPACE
        located = "/".join(database_location(self.DATABASE_URL or "").values())
        return "velro-" + hashlib.sha256(located.encode()).hexdigest()[:12]

    @property
    def live_max_waiters(self) -> int:
        """Held requests each hold a thread: at most half of them, so others still answer."""
        return self.LIVE_MAX_WAITERS or max(1, self.GUNICORN_THREADS // 2)

    @property
    def redis_is_cluster(self) -> bool:
        return bool(self.REDIS_URL) and urlsplit(self.REDIS_URL).scheme == REDIS_CLUSTER_SCHEME

    @property
    def autoconfirm(self) -> bool:
        if self.AUTH_AUTOCONFIRM is None:
            return self.APP_ENV == "development"
        return self.AUTH_AUTOCONFIRM

    @property
    def issuer(self) -> str:
        if self.JWT_ISSUER:
            return self.JWT_ISSUER
        base = self.SUPABASE_URL if self.AUTH_MODE == "supabase" else self.PUBLIC_URL
        return f"{base.rstrip('/')}/auth/v1"

    @property
    def jwks_url(self) -> str | None:
        if self.JWKS_URL or self.AUTH_MODE != "supabase":
            return self.JWKS_URL
        return f"{self.SUPABASE_URL.rstrip('/')}/auth/v1/.well-known/jwks.json"


SECRET_SUFFIXES = ("_SECRET", "_KEY", "_TOKEN", "_PASSWORD")


def redis_cluster_nodes(url: str) -> list[tuple[str, int]]:
    """The (host, port) of every node a ``redis+cluster://`` URL names; ValueError if one
    lacks its port or the URL names a database (a cluster has only database 0)."""
    parts = urlsplit(url)
    if parts.path not in ("", "/", "/0") or parts.query:
        raise ValueError("a cluster URL names no database and takes no options")
    nodes = []
    for location in parts.netloc.rpartition("@")[2].split(","):
        host, _, port = location.strip().rpartition(":")
        if not host or not (port.isascii() and port.isdigit()):
            raise ValueError(f"{location!r} is not host:port")
        nodes.append((unquote(host.strip("[]")), int(port)))
    return nodes


def _masked(name: str, value: Any) -> Any:
    """A value as it may be shown: secrets as '***', URLs without their password."""
    if value is None or value == "":
        return value
    if name.endswith(SECRET_SUFFIXES):
        return "***"
    if name.endswith("_URL") and isinstance(value, str):
        parts = urlsplit(value)
        if parts.password:
            netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
            return parts._replace(netloc=netloc).geturl()
    return value


def read_setting(name: str, environ=None) -> Any:
    """One setting from the environment (or its default), parsed but not validated with the
    rest: for tools that need one value and none of the app's secrets."""
    environ = os.environ if environ is None else environ
    field = next(f for f in fields(Settings) if f.name == name)
    if environ.get(name, "") == "":
        return field.default
    return _parse(name, environ[name], get_type_hints(Settings)[name])


def load_settings(overrides: Mapping[str, Any] | None = None, environ=None) -> Settings:
    """Build Settings from overrides > environment > defaults, then validate them."""
    environ = os.environ if environ is None else environ
    overrides = dict(overrides or {})
    known = {f.name for f in fields(Settings)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(
            f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    types = {name: _unoptional(kind) for name, kind in get_type_hints(Settings).items()}
    values = {}
    for name in known:
        if name in overrides:
            values[name] = overrides[name]
        elif environ.get(name, "") != "":
            values[name] = _parse(name, environ[name], types[name])
    settings = Settings(**values)
    validate(settings)
    return settings


def _unoptional(kind):
    """bool for ``bool | None``: an optional setting parses as its type when it is given."""
    arguments = [argument for argument in get_args(kind) if argument is not type(None)]
    return arguments[0] if len(arguments) == 1 else kind


def _parse(name: str, raw: str, kind) -> Any:
    if kind is bool:
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name}={raw!r} is not a boolean; use true or false")
    if kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            raise ConfigError(f"{name}={raw!r} is not a valid {kind.__name__}") from None
    return raw


def validate(settings: Settings) -> None:
    """Refuse settings the app cannot run with, naming the variable to fix."""
    problems = _general_problems(settings)
    if not settings.is_local:
        problems += _production_problems(settings)
    if problems:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(problems))


def _general_problems(s: Settings) -> list[str]:
    problems = []
    if s.APP_ENV not in APP_ENVS:
        problems.append(f"APP_ENV={s.APP_ENV!r}: use one of {', '.join(APP_ENVS)}")
    if s.LOG_LEVEL.upper() not in LOG_LEVELS:
        problems.append(f"LOG_LEVEL={s.LOG_LEVEL!r}: use one of {', '.join(LOG_LEVELS)}")
    if not 4 <= s.BCRYPT_COST <= 31:
        problems.append(f"BCRYPT_COST={s.BCRYPT_COST}: bcrypt takes 4 to 31")
    if s.AUTH_MODE not in AUTH_MODES:
        problems.append(f"AUTH_MODE={s.AUTH_MODE!r}: use one of {', '.join(AUTH_MODES)}")
    if not s.DATABASE_URL:
        problems.append("DATABASE_URL is not set: give a postgresql:// URL (make run starts one)")
    else:
        problems += _database_url_problems(s.DATABASE_URL)
    if s.DB_POOL_MAX_SIZE < 0 or s.GUNICORN_THREADS < 1:
        problems.append("DB_POOL_MAX_SIZE cannot be negative; GUNICORN_THREADS must be >= 1")
    elif not 1 <= s.DB_POOL_MIN_SIZE <= s.pool_max_size:
        problems.append(
            "DB_POOL_MIN_SIZE must be at least 1 and at most the pool's maximum"
            " (DB_POOL_MAX_SIZE, or GUNICORN_THREADS + 2 when that is 0)"
        )
    if s.DATABASE_POOLER not in POOLERS:
        problems.append(f"DATABASE_POOLER={s.DATABASE_POOLER!r}: use one of {', '.join(POOLERS)}")
    elif s.DATABASE_POOLER == "transaction" and not s.DATABASE_DIRECT_URL:
        problems.append(
            "DATABASE_POOLER=transaction needs DATABASE_DIRECT_URL (a direct or session-mode"
            " connection): the cache's LISTEN and the analytics leader's lock need a session"
        )
    if s.REDIS_URL:
        problems += _redis_url_problems(s.REDIS_URL)
    if s.CACHE_LISTENER_TIMEOUT < 1 or s.CACHE_SESSION_TTL < 0:
        problems.append("CACHE_LISTENER_TIMEOUT >= 1 and CACHE_SESSION_TTL >= 0 are required")
    if len(s.JWT_SECRET) < 32:
        problems.append("JWT_SECRET must be at least 32 characters (e.g. `openssl rand -hex 32`)")
    if s.SMTP_HOST and not s.SMTP_SENDER:
        problems.append("SMTP_SENDER is not set: give the From address, e.g. no-reply@example.com")
    if s.AUTH_MODE == "supabase" and not (s.SUPABASE_URL and s.SUPABASE_ANON_KEY):
        problems.append("AUTH_MODE=supabase needs SUPABASE_URL and SUPABASE_ANON_KEY")
    if s.REDIS_NAMESPACE and not NAMESPACE_PATTERN.fullmatch(s.REDIS_NAMESPACE):
        problems.append(
            f"REDIS_NAMESPACE={s.REDIS_NAMESPACE!r}: use 1 to 64 letters, digits, '.', '_' or '-'"
        )
    if s.CACHE_L1_SIZE < 1 or s.CACHE_L1_TTL <= 0 or s.CACHE_L2_TTL < 1:
        problems.append("CACHE_L1_SIZE >= 1, CACHE_L1_TTL > 0 and CACHE_L2_TTL >= 1 are required")
    if s.TRUSTED_PROXIES < 0 or s.ANALYTICS_REFRESH_SECONDS < 0:
        problems.append("TRUSTED_PROXIES and ANALYTICS_REFRESH_SECONDS cannot be negative")
    problems += _pipeline_problems(s)
    if s.METRICS_TOKEN is not None and len(s.METRICS_TOKEN) < 32:
        problems.append("METRICS_TOKEN must be at least 32 characters (`openssl rand -hex 32`)")
    if s.MEDIA_STORAGE not in MEDIA_STORAGES:
        problems.append(
            f"MEDIA_STORAGE={s.MEDIA_STORAGE!r}: use one of {', '.join(MEDIA_STORAGES)}"
        )
    elif s.MEDIA_STORAGE == "supabase" and not (s.SUPABASE_URL and s.SUPABASE_SERVICE_ROLE_KEY):
        problems.append("MEDIA_STORAGE=supabase needs SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY")
    if (
        min(s.MEDIA_MAX_BYTES, s.MEDIA_MAX_OUTPUTS, s.MEDIA_URL_SECONDS) < 1
        or s.SSE_MAX_SECONDS <= 0
    ):
        problems.append(
            "MEDIA_MAX_BYTES, MEDIA_MAX_OUTPUTS, MEDIA_URL_SECONDS and SSE_MAX_SECONDS must be"
            " positive"
        )
    if (
        s.WEBHOOK_MAX_ATTEMPTS < 1
        or s.WEBHOOK_TIMEOUT <= 0
        or s.LIVE_MAX_WAITERS < 0
        or s.LIVE_MAX_PER_USER < 1
    ):
        problems.append(
            "WEBHOOK_MAX_ATTEMPTS >= 1, WEBHOOK_TIMEOUT > 0, LIVE_MAX_WAITERS >= 0 and"
            " LIVE_MAX_PER_USER >= 1 are required"
        )
    if s.JWT_EXPIRY < 60 or s.JWT_LEEWAY < 0 or s.MAX_CONTENT_LENGTH < 1024:
        problems.append(
            "JWT_EXPIRY >= 60, JWT_LEEWAY >= 0 and MAX_CONTENT_LENGTH >= 1024 are required"
        )
    if s.JWKS_MAX_AGE_SECONDS < s.JWKS_CACHE_SECONDS:
        # keys are confirmed once per JWKS_CACHE_SECONDS: a shorter age refuses them between
        problems.append("JWKS_MAX_AGE_SECONDS must be at least JWKS_CACHE_SECONDS")
    return problems


def database_location(url: str) -> dict[str, str]:
    """What locates the database DATABASE_URL reaches (nothing of its credentials)."""
    given = conninfo_to_dict(url)

    def setting(name: str, variable: str, default: str = "") -> str:
        return str(given.get(name) or os.environ.get(variable) or default)

    user = setting("user", "PGUSER")
    return {
        "host": setting("host", "PGHOST", given.get("hostaddr") or ""),
        "port": setting("port", "PGPORT", "5432"),
        "dbname": setting("dbname", "PGDATABASE", user),  # libpq's default is the user's name
        "user": user,
        "service": setting("service", "PGSERVICE"),
    }


def _reached_locally(url: str) -> bool:
    try:
        hosts = database_location(url)["host"].split(",")
    except psycopg.ProgrammingError:
        return False  # reported as a bad DATABASE_URL
    return any(_is_local_host(host.strip()) for host in hosts)


def _is_local_host(host: str) -> bool:
    if not host or host.startswith("/") or host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _database_url_problems(url: str) -> list[str]:
    try:
        conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        # libpq's message may quote the string, password and all: not repeated here
        return [
            "DATABASE_URL is not a connection string libpq reads: give"
            " postgresql://user:password@host:port/database"
        ]
    return []


def _redis_url_problems(url: str) -> list[str]:
    scheme = urlsplit(url).scheme
    if scheme not in REDIS_SCHEMES:
        return [
            f"REDIS_URL={_masked('REDIS_URL', url)!r}: use redis://, rediss:// or unix:// for"
            f" one server, {REDIS_CLUSTER_SCHEME}://host:port[,host:port...] for a Redis Cluster"
        ]
    if scheme != REDIS_CLUSTER_SCHEME:
        return []
    try:
        redis_cluster_nodes(url)
    except ValueError as error:
        return [
            f"REDIS_URL={_masked('REDIS_URL', url)!r}: {error}; write"
            f" {REDIS_CLUSTER_SCHEME}://[user:password@]host:port[,host:port...]"
        ]
    return []


def _pipeline_problems(s: Settings) -> list[str]:
    problems = []
    waits = (
        "FAL_SUBMIT_DEADLINE_SECONDS",
        "FAL_SUBMIT_RETRY_SECONDS",
        "FAL_SUBMIT_RETRY_MAX_SECONDS",
        "FAL_POLL_AFTER_SECONDS",
        "FAL_DEADLINE_SECONDS",
        "FAL_BREAKER_OPEN_SECONDS",
    )
    negative = [name for name in waits if getattr(s, name) < 0]
    if negative:
        problems.append(f"{', '.join(negative)} cannot be negative")
    if s.FAL_BREAKER_THRESHOLD < 1 or s.WORKER_CONCURRENCY < 1:
        problems.append("FAL_BREAKER_THRESHOLD >= 1 and WORKER_CONCURRENCY >= 1 are required")
    if s.WORKER_HEARTBEAT_SECONDS <= 0 or s.WORKER_STALLED_SECONDS <= 0:
        problems.append("WORKER_HEARTBEAT_SECONDS and WORKER_STALLED_SECONDS must be positive")
    taken = [
        name
        for name, _ in parse_qsl(urlsplit(s.fal_webhook_url).query, keep_blank_values=True)
        if name in FAL_WEBHOOK_NAMING
    ]
    if taken:
        problems.append(
            f"FAL_WEBHOOK_URL's query has {', '.join(sorted(set(taken)))}: the app adds those"
            " to name each generation; remove them"
        )
    return problems


def _production_problems(s: Settings) -> list[str]:
    problems = []
    if s.JWT_SECRET == DEFAULT_JWT_SECRET:
        problems.append(
            "JWT_SECRET is the public default: set your project's secret"
            " (or APP_ENV=development for local work)"
        )
    if s.DEBUG:
        problems.append("DEBUG is on: debug mode must be off in production")
    if s.MEDIA_PRIVATE_HOSTS or s.WEBHOOKS_ALLOW_PRIVATE:
        problems.append(
            "MEDIA_PRIVATE_HOSTS and WEBHOOKS_ALLOW_PRIVATE are for local work: production never"
            " fetches from or calls private or loopback addresses"
        )
    if not s.FAL_KEY:
        problems.append("FAL_KEY is not set: production refuses the simulated FAL provider")
    if s.REDIS_URL and not s.REDIS_NAMESPACE and _reached_locally(s.DATABASE_URL or ""):
        problems.append(
            "REDIS_NAMESPACE is not set, and DATABASE_URL reaches its database through this"
            " machine (a socket, a loopback proxy), which does not tell it from another"
            " deployment's that shares the Redis: give each deployment its own REDIS_NAMESPACE"
        )
    if not s.PUBLIC_URL.startswith("https://"):
        problems.append("PUBLIC_URL must be an https:// URL in production")
    # keys that verify tokens and webhooks, and the service key, never cross a network in clear
    cleartext = [
        name
        for name, url in (
            ("SUPABASE_URL", s.SUPABASE_URL),
            ("JWKS_URL", s.JWKS_URL),  # unset: derived from SUPABASE_URL
            ("FAL_JWKS_URL", s.FAL_JWKS_URL),
        )
        if url and not url.startswith("https://")
    ]
    if cleartext:
        problems.append(f"{', '.join(cleartext)} must be https:// URLs in production")
    if s.JWKS_MIN_REFETCH_SECONDS < 1:
        problems.append(
            "JWKS_MIN_REFETCH_SECONDS must be at least 1 in production: every token with an"
            " unknown key id would fetch the keys again"
        )
    if not (s.SMTP_HOST and s.SMTP_SENDER):
        problems.append(
            "SMTP_HOST and SMTP_SENDER are not set: production sends confirmation and"
            " invitation emails by SMTP"
        )
    return problems
