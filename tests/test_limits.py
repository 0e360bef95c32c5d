"""Rate limits (backend/http/limits.py) on real Redis, and in memory when Redis is unreachable.

Each test counts under a Redis key prefix of its own (deleted afterwards), from client
addresses, users and emails of its own.
"""

from __future__ import annotations

import json
import random
import socket
import subprocess
import time
import uuid

import jwt
import pytest
import redis
from api_support import MODEL, assert_error
from fixtures_app import PASSWORD, query, unique_email, within_one_clock_minute

from backend.config import ConfigError
from backend.http.limits import EXTENSION

MINUTE = 60


@pytest.fixture
def key_prefix(redis_url):
    """A Redis namespace of this test's own for the apps it builds; its keys go afterwards."""
    prefix = f"velro-test-{uuid.uuid4().hex[:12]}"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match=f"*/{prefix}/*"):
        client.delete(key)
    client.close()


@pytest.fixture
def limited(make_app, redis_url, key_prefix):
    """An app with limits on, counting in the test Redis; settings override the limits."""

    def build(**overrides):
        settings = {
            "RATE_LIMIT_ENABLED": True,
            "REDIS_URL": redis_url,
            "REDIS_NAMESPACE": key_prefix,
        }
        return make_app(**{**settings, **overrides})

    return build


def new_ip() -> str:
    return f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(1, 255)}"


def client_at(app, ip: str):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = ip
    return client


def bearer(user) -> dict:
    return {"Authorization": f"Bearer {user.access_token}"}


def login(client, email: str, path: str = "/api/v1/auth/login", **kwargs):
    return client.post(path, json={"email": email, "password": PASSWORD}, **kwargs)


def assert_limited(response, limit: int) -> dict:
    """A 429 in the common error shape with Retry-After and the RateLimit fields."""
    body = assert_error(response, 429, "too_many_requests")
    assert f"the limit is {limit} per 1 minute. Try again in " in body["message"]
    assert_rate_headers(response, limit, remaining=0)
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= MINUTE
    return body


def assert_rate_headers(response, limit: int, remaining: int) -> None:
    headers = response.headers
    assert headers["RateLimit-Limit"] == str(limit)
    assert headers["RateLimit-Remaining"] == str(remaining)
    # seconds until the window frees a request, not a timestamp
    assert 0 <= int(headers["RateLimit-Reset"]) <= MINUTE


def forged_token(victim) -> str:
    """The victim's own claims, signed with a key the server does not have."""
    claims = jwt.decode(victim.access_token, options={"verify_signature": False})
    return jwt.encode(claims, "not-the-server-secret-but-long-enough-32", algorithm="HS256")


# per IP ---------------------------------------------------------------------------------


def test_per_ip_limit_answers_429_in_the_error_shape(limited):
    client = client_at(limited(RATE_LIMIT_PER_IP="3/minute"), new_ip())
    for remaining in (2, 1, 0):
        response = client.get("/api/v1/models")
        assert response.status_code == 200
        assert_rate_headers(response, 3, remaining)
        assert "Retry-After" not in response.headers
    assert_limited(client.get("/api/v1/models"), 3)
    other = client_at(client.application, new_ip())
    assert other.get("/api/v1/models").status_code == 200


def test_per_ip_limit_is_one_bucket_across_routes_sign_in_included(limited):
    client = client_at(limited(RATE_LIMIT_PER_IP="4/minute"), new_ip())
    assert client.get("/api/v1/models").status_code == 200
    assert login(client, unique_email()).status_code == 401
    assert client.get("/api/v1/auth/me").status_code == 401
    assert client.get("/api/v1/nothing-here").status_code == 404  # no route: not counted
    assert login(client, unique_email(), "/auth/v1/token?grant_type=password").status_code == 400
    assert_limited(client.get("/api/v1/models"), 4)


def test_probes_and_preflights_are_not_limited(limited):
    client = client_at(limited(RATE_LIMIT_PER_IP="1/minute"), new_ip())
    for _ in range(3):
        assert client.get("/api/v1/health/live").status_code == 200
        assert client.options("/api/v1/models").status_code == 200
    assert client.get("/api/v1/models").status_code == 200
    assert client.get("/api/v1/models").status_code == 429


METRICS_TOKEN = "m" * 40


def test_scrapes_with_the_metrics_token_are_not_limited_and_guesses_are(limited):
    """One Prometheus scrapes every host from one address; its scrapes shared one per-IP
    bucket across instances and drew 429s. A wrong or missing token still counts, so the
    limit still slows guessing."""
    settings = {"RATE_LIMIT_PER_IP": "3/minute", "METRICS_TOKEN": METRICS_TOKEN}
    ip = new_ip()
    hosts = [client_at(limited(**settings), ip), client_at(limited(**settings), ip)]
    scrape = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    scrapes = [host.get("/metrics", headers=scrape) for host in hosts * 3]
    assert [answer.status_code for answer in scrapes] == [200] * 6
    assert "RateLimit-Limit" not in scrapes[-1].headers
    guesses = [{"Authorization": f"Bearer {'g' * 40}"}, {}, {"Authorization": "Bearer x"}]
    for host, guess in zip((*hosts, hosts[0]), guesses, strict=True):
        assert_error(host.get("/metrics", headers=guess), 401, "invalid_token")
    assert_limited(hosts[1].get("/metrics", headers={"Authorization": "Bearer y"}), 3)
    assert hosts[0].get("/metrics", headers=scrape).status_code == 200


# per user -------------------------------------------------------------------------------


def test_per_user_limit_follows_the_verified_token_across_addresses(limited, users):
    app = limited(RATE_LIMIT_PER_USER="3/minute")
    victim = users.create()
    for remaining in (2, 1, 0):
        response = client_at(app, new_ip()).get("/api/v1/auth/me", headers=bearer(victim))
        assert response.status_code == 200
        assert_rate_headers(response, 3, remaining)
    assert_limited(client_at(app, new_ip()).get("/api/v1/auth/me", headers=bearer(victim)), 3)
    # another user is untouched
    other = users.create()
    assert client_at(app, new_ip()).get("/api/v1/auth/me", headers=bearer(other)).status_code == 200


def test_forged_token_neither_gets_a_bucket_nor_drains_the_victims(limited, users):
    app = limited(RATE_LIMIT_PER_USER="3/minute")
    victim = users.create()
    forged = {"Authorization": f"Bearer {forged_token(victim)}"}
    for _ in range(5):
        response = client_at(app, new_ip()).get("/api/v1/auth/me", headers=forged)
        assert_error(response, 401, "invalid_token")  # never 429: no per-user bucket
    for remaining in (2, 1, 0):
        response = client_at(app, new_ip()).get("/api/v1/auth/me", headers=bearer(victim))
        assert response.status_code == 200
        assert_rate_headers(response, 3, remaining)


# sign-in and sign-up --------------------------------------------------------------------


def test_sign_in_per_ip_counts_every_email_and_route(limited):
    app = limited(RATE_LIMIT_AUTH_PER_IP="3/minute")
    client = client_at(app, new_ip())
    assert login(client, unique_email()).status_code == 401
    assert client.post("/api/v1/auth/signup", json={"email": "bad"}).status_code == 422
    assert login(client, unique_email(), "/auth/v1/token?grant_type=password").status_code == 400
    assert_limited(login(client, unique_email()), 3)
    # GoTrue's routes answer in GoTrue's shape, which the Supabase clients parse
    gotrue = login(client, unique_email(), "/auth/v1/signup")
    assert gotrue.status_code == 429
    assert gotrue.get_json()["error_code"] == "over_request_rate_limit"
    assert int(gotrue.headers["Retry-After"]) >= 1
    # other routes from the same address still answer
    assert client.get("/api/v1/models").status_code == 200
    # refreshing is not signing in
    refresh = client.post("/auth/v1/token?grant_type=refresh_token", json={"refresh_token": "x"})
    assert refresh.status_code != 429


def test_sign_in_per_email_counts_across_addresses(limited):
    app = limited(RATE_LIMIT_AUTH_PER_EMAIL="2/minute", TRUSTED_PROXIES=1)
    client = app.test_client()
    email = unique_email("target")

    def login_from(ip, address=email, path="/api/v1/auth/login"):
        return login(client, address, path, headers={"X-Forwarded-For": ip})

    assert login_from(new_ip()).status_code == 401
    assert (
        login_from(new_ip(), email.upper(), "/auth/v1/token?grant_type=password").status_code == 400
    )
    assert_limited(login_from(new_ip()), 2)
    assert login_from(new_ip(), unique_email()).status_code == 401


def test_signup_is_limited_per_email(limited, db_url):
    app = limited(RATE_LIMIT_AUTH_PER_EMAIL="1/minute")
    email = unique_email("new")
    body = {"email": email, "password": PASSWORD}
    assert client_at(app, new_ip()).post("/api/v1/auth/signup", json=body).status_code == 201
    assert_limited(client_at(app, new_ip()).post("/api/v1/auth/signup", json=body), 1)
    assert query(db_url, "select count(*) as n from auth.users where email = %s", (email,)) == [
        {"n": 1}
    ]


# generation submission ------------------------------------------------------------------


def test_generation_submission_is_limited_per_user_and_listing_is_not(limited, users, db_url):
    app = limited(RATE_LIMIT_GENERATIONS_PER_USER="2/minute")
    owner = users.create()
    query(db_url, "select public.grant_credits(%s, 1000)", (owner.id,))
    client = client_at(app, new_ip())

    def submit(key):
        return client.post(
            "/api/v1/generations",
            headers={**bearer(owner), "Idempotency-Key": key},
            json={"model_id": MODEL, "prompt": "a lighthouse at dusk"},
        )

    for _ in range(3):
        assert client.get("/api/v1/generations", headers=bearer(owner)).status_code == 200
    assert submit(unique_email("k")).status_code == 201
    second = submit(unique_email("k"))
    assert second.status_code == 201
    assert_rate_headers(second, 2, remaining=0)
    assert_limited(submit(unique_email("k")), 2)
    assert client.get("/api/v1/generations", headers=bearer(owner)).status_code == 200
    # another user submits freely
    other = users.create()
    query(db_url, "select public.grant_credits(%s, 1000)", (other.id,))
    response = client.post(
        "/api/v1/generations",
        headers={**bearer(other), "Idempotency-Key": "x1"},
        json={"model_id": MODEL, "prompt": "a lighthouse at dusk"},
    )
    assert response.status_code == 201


# storage --------------------------------------------------------------------------------


def test_two_instances_share_the_counters_in_redis(limited, redis_url, key_prefix):
    ip = new_ip()
    first = client_at(limited(RATE_LIMIT_PER_IP="4/minute"), ip)
    second = client_at(limited(RATE_LIMIT_PER_IP="4/minute"), ip)
    for client in (first, second, first, second):
        assert client.get("/api/v1/models").status_code == 200
    assert_limited(first.get("/api/v1/models"), 4)
    assert_limited(second.get("/api/v1/models"), 4)
    stored = list(redis.Redis.from_url(redis_url).scan_iter(match=f"*/{key_prefix}/{ip}/ip/*"))
    assert stored, "the counter is in Redis"


@pytest.mark.parametrize(
    "header",
    [json.dumps({"alg": ["HS256"]}), "[" * 5000],
    ids=["alg-a-list", "nested-past-the-recursion-limit"],
)
def test_a_token_with_a_malformed_header_does_not_split_the_shared_counters(limited, header):
    # A header whose alg is a list once made verification raise TypeError, one nested deep
    # enough RecursionError; the limiter took either for a storage failure and counted this
    # instance in memory from then on.
    ip = new_ip()
    first = client_at(limited(RATE_LIMIT_PER_IP="4/minute"), ip)
    second = client_at(limited(RATE_LIMIT_PER_IP="4/minute"), ip)
    attacker = client_at(first.application, new_ip())
    malformed = {"Authorization": f"Bearer {token_with_header(header)}"}
    for client in (first, second, first, second):
        assert_error(attacker.get("/api/v1/auth/me", headers=malformed), 401, "invalid_token")
        assert client.get("/api/v1/models").status_code == 200
    assert_limited(first.get("/api/v1/models"), 4)


def token_with_header(header: str) -> str:
    def part(value: str) -> str:
        return jwt.utils.base64url_encode(value.encode()).decode()

    return f"{part(header)}.{part(json.dumps({'sub': 'anyone'}))}.c2lnbmF0dXJl"


@pytest.mark.parametrize("body", ["[" * 5000, '{"email": ' + "1" * 5000 + "}"])
def test_a_body_json_cannot_read_does_not_split_the_shared_sign_in_counters(limited, body):
    """Nested past the recursion limit, or an integer past Python's digit limit: the same 400
    as malformed JSON, and the sign-in limit's email key never sees it."""
    ip = new_ip()
    first = client_at(limited(RATE_LIMIT_AUTH_PER_IP="4/minute"), ip)
    second = client_at(limited(RATE_LIMIT_AUTH_PER_IP="4/minute"), ip)
    attacker = client_at(first.application, new_ip())
    for client in (first, second, first, second):
        unreadable = attacker.post("/api/v1/auth/login", data=body, content_type="application/json")
        assert_error(unreadable, 400, "invalid_json")
        assert login(client, unique_email()).status_code == 401
    assert_limited(login(first, unique_email()), 4)


# an unpaired surrogate, as JSON carries it: it decodes to a str that cannot be encoded
UNENCODABLE_EMAIL = b'{"email": "\\ud800@x.io", "password": "whatever-123"}'


@pytest.mark.parametrize("path", ["/api/v1/auth/login", "/auth/v1/token?grant_type=password"])
def test_an_unencodable_email_does_not_split_the_shared_per_email_budget(limited, path):
    """Hashing such an email for its key once raised UnicodeEncodeError; the limiter took it
    for a dead Redis and counted every limit of that process in memory for a while, the
    per-email guard against password guessing included."""
    first = limited(RATE_LIMIT_AUTH_PER_EMAIL="3/minute")
    second = limited(RATE_LIMIT_AUTH_PER_EMAIL="3/minute")
    target = unique_email("target")
    for app in (first, second, first):
        crafted = client_at(app, new_ip()).post(
            path, data=UNENCODABLE_EMAIL, content_type="application/json"
        )
        assert crafted.status_code == 422, crafted.get_json()  # the field is named, as ever
        assert "email" in crafted.get_data(as_text=True)
        assert login(client_at(app, new_ip()), target).status_code == 401
    assert_limited(login(client_at(second, new_ip()), target), 3)


def test_ipv6_clients_are_counted_per_64(limited):
    """One subscriber holds a whole /64: counting its addresses one by one would give it
    2^64 buckets."""
    app = limited(RATE_LIMIT_PER_IP="3/minute")
    network = f"2001:db8:{random.randrange(65536):x}:{random.randrange(65536):x}"
    for address in (f"{network}::1", f"{network}::2", f"{network}:ffff:ffff:ffff:ffff"):
        assert client_at(app, address).get("/api/v1/models").status_code == 200
    assert_limited(client_at(app, f"{network}::4").get("/api/v1/models"), 3)
    neighbour = f"2001:db8:{random.randrange(65536):x}:{random.randrange(65536):x}::1"
    assert client_at(app, neighbour).get("/api/v1/models").status_code == 200


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_unreachable_redis_falls_back_to_memory_and_still_limits(limited, caplog):
    app = limited(REDIS_URL=f"redis://127.0.0.1:{closed_port()}/0", RATE_LIMIT_PER_IP="3/minute")
    client = client_at(app, new_ip())
    within_one_clock_minute()
    for remaining in (2, 1, 0):
        response = client.get("/api/v1/models")
        assert response.status_code == 200
        assert_rate_headers(response, 3, remaining)
    assert_limited(client.get("/api/v1/models"), 3)
    assert "falling back to in-memory storage" in caplog.text


@pytest.fixture
def own_redis(tmp_path):
    """A Redis server of this test's own, which the test can stop and start again."""
    port = closed_port()
    url = f"redis://127.0.0.1:{port}/0"
    command = [
        "redis-server",
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(tmp_path),
    ]
    running: list[subprocess.Popen] = []

    def start() -> None:
        running.append(subprocess.Popen(command, stdout=subprocess.DEVNULL))
        client = redis.Redis.from_url(url)
        deadline = time.monotonic() + 5
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.02)

    def stop() -> None:
        server = running.pop()
        server.terminate()
        server.wait(timeout=5)

    start()
    yield url, start, stop
    while running:
        stop()


def test_counting_goes_back_to_redis_when_it_returns(limited, own_redis):
    url, start, stop = own_redis
    store = redis.Redis.from_url(url)
    client = client_at(limited(REDIS_URL=url, RATE_LIMIT_PER_IP="200/minute"), new_ip())
    assert client.get("/api/v1/models").status_code == 200
    assert store.dbsize() > 0
    stop()
    for _ in range(3):
        assert client.get("/api/v1/models").status_code == 200  # counted in memory
    start()
    assert store.dbsize() == 0
    # the limiter asks Redis again after 1, 2, 4 ... seconds
    deadline = time.monotonic() + 10
    while store.dbsize() == 0:
        assert time.monotonic() < deadline, "the limiter never went back to Redis"
        assert client.get("/api/v1/models").status_code == 200
        time.sleep(0.1)
    store.close()


def test_limits_can_be_turned_off(make_app):
    app = make_app(RATE_LIMIT_ENABLED=False, RATE_LIMIT_PER_IP="1/minute")
    client = client_at(app, new_ip())
    assert [client.get("/api/v1/models").status_code for _ in range(3)] == [200] * 3
    assert EXTENSION not in app.extensions


# configuration --------------------------------------------------------------------------


def test_every_limit_comes_from_the_environment(limited, monkeypatch):
    values = {
        "RATE_LIMIT_PER_IP": "11/hour",
        "RATE_LIMIT_PER_USER": "12/hour",
        "RATE_LIMIT_AUTH_PER_IP": "13/minute",
        "RATE_LIMIT_AUTH_PER_EMAIL": "14/minute",
        "RATE_LIMIT_GENERATIONS_PER_USER": "15/minute",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    limiter = limited().extensions[EXTENSION]
    applied = {str(lim.scope): str(lim.limit) for lim in limiter.limit_manager.application_limits}
    assert applied == {
        "ip": "11 per 1 hour",
        "user": "12 per 1 hour",
        "auth-ip": "13 per 1 minute",
        "auth-email": "14 per 1 minute",
        "generations": "15 per 1 minute",
    }


def test_a_malformed_limit_stops_the_app_naming_the_setting(limited):
    with pytest.raises(ConfigError, match="RATE_LIMIT_AUTH_PER_EMAIL"):
        limited(RATE_LIMIT_AUTH_PER_EMAIL="lots")
