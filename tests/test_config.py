"""Configuration: environment parsing, precedence, and what production refuses."""

from __future__ import annotations

import pytest

from backend import create_app
from backend.config import (
    DEFAULT_JWT_SECRET,
    ConfigError,
    load_settings,
    read_setting,
    redis_cluster_nodes,
)

BASE = {"DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/x"}
PRODUCTION = {
    **BASE,
    "APP_ENV": "production",
    "JWT_SECRET": "p" * 40,
    "FAL_KEY": "fal-key",
    "PUBLIC_URL": "https://api.velro.example",
    "SMTP_HOST": "smtp.velro.example",
    "SMTP_SENDER": "Velro <no-reply@velro.example>",
}


LOCAL = {**BASE, "APP_ENV": "development"}


def test_defaults_fail_closed_in_production():
    with pytest.raises(ConfigError) as refused:
        load_settings(environ=BASE)
    message = str(refused.value)
    assert "JWT_SECRET is the public default" in message
    assert "FAL_KEY is not set" in message
    assert "PUBLIC_URL must be an https:// URL" in message


def test_production_fetches_keys_and_talks_to_supabase_over_https_only():
    cleartext = {
        **PRODUCTION,
        "AUTH_MODE": "supabase",
        "SUPABASE_URL": "http://abc.supabase.co",
        "SUPABASE_ANON_KEY": "anon",
        "FAL_JWKS_URL": "http://fal.example/jwks.json",
        "JWKS_MIN_REFETCH_SECONDS": "0",
    }
    with pytest.raises(ConfigError) as refused:
        load_settings(environ=cleartext)
    message = str(refused.value)
    assert "SUPABASE_URL, FAL_JWKS_URL must be https:// URLs" in message
    assert "JWKS_MIN_REFETCH_SECONDS must be at least 1" in message
    secure = {**cleartext, "SUPABASE_URL": "https://abc.supabase.co"}
    secure |= {"FAL_JWKS_URL": "https://fal.example/jwks.json", "JWKS_MIN_REFETCH_SECONDS": "1"}
    assert load_settings(environ=secure).jwks_url.startswith("https://abc.supabase.co/")


def test_development_says_so_and_gets_the_local_defaults():
    settings = load_settings(environ=LOCAL)
    assert settings.APP_ENV == "development" and settings.AUTH_MODE == "local"
    assert settings.JWT_SECRET == DEFAULT_JWT_SECRET
    assert settings.issuer == "http://localhost:8000/auth/v1"
    assert settings.jwks_url is None
    assert load_settings(environ={**BASE, "APP_ENV": "test"}).JWT_SECRET == DEFAULT_JWT_SECRET


def test_public_url_follows_port_when_unset():
    assert load_settings(environ={**LOCAL, "PORT": "9123"}).PUBLIC_URL == "http://localhost:9123"
    given = load_settings(environ={**LOCAL, "PORT": "9123", "PUBLIC_URL": "http://a.example"})
    assert given.PUBLIC_URL == "http://a.example"
    assert given.issuer == "http://a.example/auth/v1"


def test_secrets_never_show_in_repr_or_str():
    settings = load_settings(
        environ={
            **PRODUCTION,
            "DATABASE_URL": "postgresql://app:db-password-1@db.example/velro",
            "REDIS_URL": "redis://:redis-password-2@cache.example:6379/0",
            "JWT_SECRET": "jwt-secret-3" * 4,
            "FAL_KEY": "fal-key-4",
            "METRICS_TOKEN": "metrics-token-5" * 3,
            "SUPABASE_ANON_KEY": "anon-key-6",
        }
    )
    for shown in (repr(settings), str(settings), f"{settings}", repr([settings])):
        for secret in (
            "db-password-1",
            "redis-password-2",
            "jwt-secret-3",
            "fal-key-4",
            "metrics-token-5",
            "anon-key-6",
        ):
            assert secret not in shown
        assert "postgresql://app:***@db.example/velro" in shown
        assert "JWT_SECRET='***'" in shown
        assert "JWT_KEY_ID=None" in shown, "a key id is not a secret"


def test_a_refused_setting_does_not_echo_a_secret():
    with pytest.raises(ConfigError) as refused:
        load_settings(environ={**PRODUCTION, "JWT_SECRET": "too-short-secret"})
    assert "too-short-secret" not in str(refused.value)


def test_one_setting_can_be_read_without_the_secrets():
    assert read_setting("PASSWORD_MIN_LENGTH", environ={}) == 8
    assert read_setting("PASSWORD_MIN_LENGTH", environ={"PASSWORD_MIN_LENGTH": "12"}) == 12


def test_environment_values_are_parsed_to_their_types():
    settings = load_settings(
        environ={**LOCAL, "DB_POOL_MAX_SIZE": "20", "DEBUG": "true", "DB_POOL_TIMEOUT": "2.5"}
    )
    assert settings.DB_POOL_MAX_SIZE == 20 and settings.DEBUG is True
    assert settings.DB_POOL_TIMEOUT == 2.5


def test_arguments_override_the_environment():
    settings = load_settings({"JWT_EXPIRY": 120}, environ={**LOCAL, "JWT_EXPIRY": "600"})
    assert settings.JWT_EXPIRY == 120


@pytest.mark.parametrize(
    ("environ", "words"),
    [
        ({**BASE, "DB_POOL_MAX_SIZE": "many"}, "DB_POOL_MAX_SIZE='many' is not a valid int"),
        ({**BASE, "DEBUG": "perhaps"}, "use true or false"),
        ({**BASE, "APP_ENV": "staging"}, "APP_ENV='staging': use one of"),
        ({**BASE, "AUTH_MODE": "ldap"}, "AUTH_MODE='ldap'"),
        ({**BASE, "LOG_LEVEL": "loud"}, "LOG_LEVEL='loud'"),
        ({}, "DATABASE_URL is not set"),
        ({**BASE, "JWT_SECRET": "short"}, "at least 32 characters"),
        ({**BASE, "AUTH_MODE": "supabase"}, "needs SUPABASE_URL and SUPABASE_ANON_KEY"),
        ({**BASE, "DB_POOL_MIN_SIZE": "5", "DB_POOL_MAX_SIZE": "2"}, "DB_POOL_MIN_SIZE"),
        ({**BASE, "REDIS_URL": "memcached://cache:11211"}, "REDIS_URL=.*for a Redis Cluster"),
        ({**BASE, "REDIS_URL": "redis+cluster://a:7000,b"}, "'b' is not host:port"),
        ({**BASE, "REDIS_URL": "redis+cluster://a:7000/2"}, "a cluster URL names no database"),
        ({**BASE, "JWKS_MAX_AGE_SECONDS": "60"}, "at least JWKS_CACHE_SECONDS"),
        ({**BASE, "REDIS_NAMESPACE": "{velro}"}, "REDIS_NAMESPACE='{velro}': use 1 to 64"),
        ({**BASE, "REDIS_NAMESPACE": "x" * 65}, "REDIS_NAMESPACE='x+': use 1 to 64"),
        ({"DATABASE_URL": "host=db dbname"}, "DATABASE_URL is not a connection string"),
        (
            {**BASE, "FAL_WEBHOOK_URL": "https://api.example/fal?tag=&generation_id=x"},
            "FAL_WEBHOOK_URL's query has generation_id, tag: the app adds those",
        ),
    ],
)
def test_bad_settings_say_what_to_fix(environ, words):
    with pytest.raises(ConfigError, match=words):
        load_settings(environ=environ)


def test_a_redis_cluster_is_named_by_some_of_its_nodes():
    url = "redis+cluster://user:pass%40word@10.0.0.1:7000,10.0.0.2:7001,[::1]:7002"
    settings = load_settings(environ={**LOCAL, "REDIS_URL": url})
    assert settings.redis_is_cluster
    assert redis_cluster_nodes(url) == [("10.0.0.1", 7000), ("10.0.0.2", 7001), ("::1", 7002)]
    assert "pass%40word" not in repr(settings)
    assert not load_settings(environ={**LOCAL, "REDIS_URL": "redis://r:6379/0"}).redis_is_cluster


def test_a_refused_redis_url_does_not_echo_its_password():
    with pytest.raises(ConfigError) as refused:
        load_settings(environ={**LOCAL, "REDIS_URL": "redis+cluster://:hunter2-secret@a:1,b"})
    assert "hunter2-secret" not in str(refused.value)
    assert "REDIS_URL='redis+cluster://:***@a:1,b'" in str(refused.value)


def test_a_refused_database_url_does_not_echo_its_password():
    with pytest.raises(ConfigError) as refused:
        load_settings(environ={**LOCAL, "DATABASE_URL": "postgresql://u:hunter2 secret@h/db"})
    assert "hunter2" not in str(refused.value)
    assert "DATABASE_URL is not a connection string libpq reads" in str(refused.value)


def redis_namespace(database_url: str, **environ) -> str:
    return load_settings(environ={**LOCAL, "DATABASE_URL": database_url, **environ}).redis_namespace


def test_one_database_gives_one_redis_namespace_however_it_is_written():
    one = redis_namespace("postgresql://app:secret@db.example:6543/velro?sslmode=require")
    assert one.startswith("velro-") and len(one) == len("velro-") + 12
    # another password, other options, another spelling: the same database
    assert redis_namespace("postgresql://app:rotated@db.example:6543/velro") == one
    assert redis_namespace("host=db.example port=6543 dbname=velro user=app") == one


POOLER = "aws-0-us-east-1.pooler.supabase.com:6543/postgres"


@pytest.mark.parametrize(
    "another",
    [
        "postgresql://app@staging.example:6543/velro",  # another server
        "postgresql://app@db.example:5432/velro",  # another port
        "postgresql://app@db.example:6543/velro_staging",  # another database
        "postgresql://staging@db.example:6543/velro",  # another user
        "postgresql://app@db.example:6543/velro?service=staging",  # another service
    ],
)
def test_another_database_gives_another_redis_namespace(another):
    assert redis_namespace(another) != redis_namespace("postgresql://app@db.example:6543/velro")


def test_supabase_projects_behind_one_pooler_get_their_own_namespaces():
    # every project of a region shares the pooler's host, port and database: the user
    # (postgres.<project ref>) is what names the project
    production = redis_namespace(f"postgresql://postgres.prodref:pw@{POOLER}")
    assert production != redis_namespace(f"postgresql://postgres.stagingref:pw@{POOLER}")


def test_what_the_url_leaves_out_comes_from_libpqs_environment(monkeypatch):
    monkeypatch.setenv("PGHOST", "production.internal")
    production = redis_namespace("postgresql:///app")
    monkeypatch.setenv("PGHOST", "staging.internal")
    assert redis_namespace("postgresql:///app") != production


def test_a_redis_namespace_set_is_used_as_it_is():
    assert redis_namespace("postgresql://db/velro", REDIS_NAMESPACE="prod-eu") == "prod-eu"


@pytest.mark.parametrize(
    "database_url",
    [
        "postgresql://app@127.0.0.1:6432/velro",  # a pooler on this machine
        "postgresql://app@localhost/velro",
        "postgresql://app@[::1]/velro",
        "postgresql:///velro?host=/var/run/postgresql",  # a socket
    ],
)
def test_production_names_its_redis_namespace_when_the_database_is_reached_locally(
    database_url,
):
    shared = {**PRODUCTION, "DATABASE_URL": database_url, "REDIS_URL": "redis://cache:6379/0"}
    with pytest.raises(ConfigError, match="REDIS_NAMESPACE is not set, and DATABASE_URL"):
        load_settings(environ=shared)
    assert load_settings(environ={**shared, "REDIS_NAMESPACE": "prod-eu"}).is_production
    remote = {**shared, "DATABASE_URL": f"postgresql://postgres.prodref:pw@{POOLER}"}
    assert load_settings(environ=remote).is_production


def test_unknown_overrides_are_refused():
    with pytest.raises(ConfigError, match="unknown setting"):
        load_settings({"JWT_SECRETS": "x"}, environ=LOCAL)


def test_production_with_everything_set_starts():
    assert load_settings(environ=PRODUCTION).is_production


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"JWT_SECRET": ""}, "JWT_SECRET is the public default"),
        ({"JWT_SECRET": DEFAULT_JWT_SECRET}, "JWT_SECRET is the public default"),
        ({"DEBUG": "1"}, "DEBUG is on"),
        ({"FAL_KEY": ""}, "FAL_KEY is not set"),
        ({"PUBLIC_URL": "http://api.velro.example"}, "https://"),
        ({"SMTP_HOST": ""}, "production sends confirmation and invitation emails by SMTP"),
        ({"SMTP_SENDER": ""}, "SMTP_SENDER"),
    ],
)
def test_production_refuses_unsafe_settings(change, words):
    with pytest.raises(ConfigError, match=words):
        load_settings(environ={**PRODUCTION, **change})


def test_create_app_refuses_production_with_the_default_secret():
    with pytest.raises(ConfigError, match="JWT_SECRET"):
        create_app({**PRODUCTION, "JWT_SECRET": DEFAULT_JWT_SECRET})


@pytest.mark.parametrize(
    ("environ", "autoconfirm"),
    [
        ({**BASE, "APP_ENV": "development"}, True),
        ({**BASE, "APP_ENV": "test"}, False),
        (PRODUCTION, False),
        ({**PRODUCTION, "AUTH_AUTOCONFIRM": "true"}, True),
        ({**BASE, "APP_ENV": "development", "AUTH_AUTOCONFIRM": "false"}, False),
    ],
)
def test_sign_ups_are_confirmed_at_once_only_in_development_unless_set(environ, autoconfirm):
    settings = load_settings(environ=environ)
    assert settings.autoconfirm is autoconfirm


def test_bad_autoconfirm_says_what_to_fix():
    with pytest.raises(ConfigError, match="AUTH_AUTOCONFIRM='maybe' is not a boolean"):
        load_settings(environ={**BASE, "AUTH_AUTOCONFIRM": "maybe"})


def test_smtp_password_stays_out_of_repr():
    settings = load_settings(environ={**PRODUCTION, "SMTP_PASSWORD": "hunter2-smtp"})
    assert "hunter2-smtp" not in repr(settings)


def test_supabase_mode_derives_issuer_and_jwks():
    settings = load_settings(
        environ={
            **LOCAL,
            "AUTH_MODE": "supabase",
            "SUPABASE_URL": "https://p.supabase.co/",
            "SUPABASE_ANON_KEY": "anon",
        }
    )
    assert settings.issuer == "https://p.supabase.co/auth/v1"
    assert settings.jwks_url == "https://p.supabase.co/auth/v1/.well-known/jwks.json"


def test_a_bad_private_key_stops_the_app(db_url):
    with pytest.raises(ConfigError, match="JWT_PRIVATE_KEY"):
        create_app({"APP_ENV": "test", "DATABASE_URL": db_url, "JWT_PRIVATE_KEY": "not a pem"})


def test_bcrypt_cost_defaults_to_gotrues_and_stays_in_bcrypts_range():
    assert load_settings(environ={**BASE, "APP_ENV": "development"}).BCRYPT_COST == 10
    for cost in ("3", "32"):
        with pytest.raises(ConfigError, match=f"BCRYPT_COST={cost}: bcrypt takes 4 to 31"):
            load_settings(environ={**BASE, "APP_ENV": "development", "BCRYPT_COST": cost})
