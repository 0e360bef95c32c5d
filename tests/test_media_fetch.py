"""Fetching providers' outputs: allowed hosts only, no private or loopback address at any
hop, size and content-type limits. Real HTTP servers on loopback stand in for the provider;
the policy exempts exactly the one host:port a test means to trust."""

from __future__ import annotations

import gzip
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from media_support import unanswering

from backend.config import ConfigError, Settings, validate
from backend.media import fetch as fetch_module
from backend.media.fetch import FetchPolicy, UnsafeMedia, fetch, refuse_private, system_resolve

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 100


DRIP_PAUSE_SECONDS = 0.3


class Handler(BaseHTTPRequestHandler):
    # each test's server gets a subclass with its own routes and hits (the fixture)
    routes: dict
    hits: list
    hosts: list  # the Host header of each request
    accepted_encodings: list

    def do_GET(self):
        self.hits.append(self.path)
        self.hosts.append(self.headers.get("Host"))
        self.accepted_encodings.append(self.headers.get("Accept-Encoding"))
        status, headers, body = self.routes[self.path]
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        chunks = body if isinstance(body, list) else [body]  # a list: one chunk per pause
        if "Connection" not in headers:  # "Connection: close" sends a body of no stated length
            self.send_header("Content-Length", str(sum(map(len, chunks))))
        self.end_headers()
        for number, chunk in enumerate(chunks):
            if number:
                time.sleep(DRIP_PAUSE_SECONDS)
            self.wfile.write(chunk)
            self.wfile.flush()

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    """A server on 127.0.0.1 whose routes the test sets: path -> (status, headers, body)."""
    attributes = {"routes": {}, "hits": [], "hosts": [], "accepted_encodings": []}
    handler = type("TestHandler", (Handler,), attributes)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd, handler
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def trusting(httpd, **overrides) -> FetchPolicy:
    """A policy that trusts only this server's own host:port (as tests trust their fakes)."""
    options = {
        "allowed_hosts": ("fal.media", "*.fal.media"),
        "max_bytes": 1000,
        "private_hosts": frozenset({f"127.0.0.1:{httpd.server_port}"}),
    }
    return FetchPolicy(**{**options, **overrides})


def test_an_allowed_host_is_fetched_with_its_type(server):
    httpd, handler = server
    handler.routes["/out.png"] = (200, {"Content-Type": "image/png"}, PNG)
    fetched = fetch(f"http://127.0.0.1:{httpd.server_port}/out.png", trusting(httpd))
    assert (fetched.content_type, fetched.body) == ("image/png", PNG)


def test_a_host_outside_the_allow_list_is_refused_before_any_request(server):
    httpd, handler = server
    handler.routes["/out.png"] = (200, {"Content-Type": "image/png"}, PNG)
    policy = trusting(httpd, private_hosts=frozenset())
    with pytest.raises(UnsafeMedia, match=r"127\.0\.0\.1 is not an allowed media host"):
        fetch(f"http://127.0.0.1:{httpd.server_port}/out.png", policy)
    with pytest.raises(UnsafeMedia, match=r"evil\.example is not an allowed media host"):
        fetch("https://evil.example/out.png", policy)
    assert handler.hits == []


def test_a_redirect_to_loopback_is_refused(server):
    """The trusted server redirects to 127.0.0.1 on another port: an allowed name there
    (localhost, on the list for this test) still resolves to loopback, so it is refused."""
    httpd, handler = server
    handler.routes["/out.png"] = (302, {"Location": "https://localhost:9/secret"}, b"")
    policy = trusting(httpd, allowed_hosts=("localhost",))
    with pytest.raises(UnsafeMedia, match=r"localhost resolves to .*private or loopback"):
        fetch(f"http://127.0.0.1:{httpd.server_port}/out.png", policy)
    assert handler.hits == ["/out.png"]


def test_a_redirect_outside_the_allow_list_is_refused(server):
    httpd, handler = server
    handler.routes["/out.png"] = (307, {"Location": "http://169.254.169.254/latest/meta-data"}, b"")
    with pytest.raises(UnsafeMedia, match=r"169\.254\.169\.254 is not an allowed media host"):
        fetch(f"http://127.0.0.1:{httpd.server_port}/out.png", trusting(httpd))


@pytest.mark.parametrize(
    "address",
    [
        "10.0.0.7",
        "192.168.1.1",
        "127.0.0.1",
        "169.254.169.254",
        "::1",
        "fc00::1",
        # IPv6 addresses that carry a private IPv4 one: mapped, NAT64, 6to4, compatible
        "::ffff:127.0.0.1",
        "64:ff9b::a9fe:a9fe",
        "64:ff9b::a00:1",
        "64:ff9b:1::a9fe:a9fe",
        "2002:a9fe:a9fe::1",
        "::127.0.0.1",
        "::ffff:0:7f00:1",  # translated (SIIT)
        "fec0::1",  # site-local, deprecated but still routed inside some networks
    ],
)
def test_an_allowed_name_that_resolves_to_a_private_address_is_refused(address):
    policy = FetchPolicy(
        allowed_hosts=("*.fal.media",), max_bytes=1000, resolve=lambda host, port: [address]
    )
    with pytest.raises(UnsafeMedia, match=r"private or loopback"):
        fetch("https://v3.fal.media/files/out.png", policy)


@pytest.mark.parametrize("address", ["64:ff9b::808:808", "2002:808:808::1", "2606:4700::1111"])
def test_an_ipv6_address_that_carries_a_public_ipv4_one_passes_the_check(address):
    refuse_private("v3.fal.media", [address])


def test_plain_http_is_refused_for_untrusted_hosts():
    policy = FetchPolicy(allowed_hosts=("fal.media",), max_bytes=1000)
    with pytest.raises(UnsafeMedia, match=r"https only"):
        fetch("http://fal.media/files/out.png", policy)


def test_a_content_type_we_do_not_store_is_refused(server):
    httpd, handler = server
    handler.routes["/page"] = (200, {"Content-Type": "text/html"}, b"<html>")
    with pytest.raises(UnsafeMedia, match=r"content type 'text/html' is not stored"):
        fetch(f"http://127.0.0.1:{httpd.server_port}/page", trusting(httpd))


def test_a_body_over_the_size_limit_is_refused(server):
    httpd, handler = server
    handler.routes["/big.png"] = (200, {"Content-Type": "image/png"}, b"x" * 1001)
    with pytest.raises(UnsafeMedia, match=r"more than the 1000 allowed"):
        fetch(f"http://127.0.0.1:{httpd.server_port}/big.png", trusting(httpd))


def test_a_body_of_no_stated_length_is_cut_off_at_the_limit(server):
    """No Content-Length to check: the reader counts what actually arrives."""
    httpd, handler = server
    headers = {"Content-Type": "image/png", "Connection": "close"}
    handler.routes["/big.png"] = (200, headers, b"x" * 200_000)
    policy = trusting(httpd, max_bytes=100_000)
    with pytest.raises(UnsafeMedia, match=r"the body is larger than the 100000 bytes allowed"):
        fetch(f"http://127.0.0.1:{httpd.server_port}/big.png", policy)


def test_a_compressed_body_is_refused_unread(server):
    """Inflated, these 10 kB would be 10 MB against a limit of 1000 bytes: the fetch asks for
    the body as it is and refuses one sent compressed anyway, before reading it."""
    httpd, handler = server
    bomb = gzip.compress(b"\0" * 10_000_000)
    headers = {"Content-Type": "image/png", "Content-Encoding": "gzip"}
    handler.routes["/bomb.png"] = (200, headers, bomb)
    with pytest.raises(UnsafeMedia, match=r"gzip-encoded; only unencoded bodies are fetched"):
        fetch(f"http://127.0.0.1:{httpd.server_port}/bomb.png", trusting(httpd))
    assert handler.accepted_encodings == ["identity"]


def test_a_body_dripped_past_the_time_limit_is_refused(server):
    """Every byte comes well within the per-read timeout, the whole body not within the
    fetch's limit."""
    httpd, handler = server
    handler.routes["/slow.png"] = (200, {"Content-Type": "image/png"}, [b"x"] * 8)
    policy = trusting(httpd, timeout=4 * DRIP_PAUSE_SECONDS)
    with pytest.raises(UnsafeMedia, match=r"the fetch took longer than the 1.2 s allowed"):
        fetch(f"http://127.0.0.1:{httpd.server_port}/slow.png", policy)


def test_a_name_that_resolves_slowly_counts_toward_the_time_limit():
    def slow_resolve(host, port):
        time.sleep(2)  # a resolver that hangs; the fetch abandons it
        return ["93.184.215.14"]

    policy = FetchPolicy(
        allowed_hosts=("*.fal.media",), max_bytes=1000, timeout=0.3, resolve=slow_resolve
    )
    with pytest.raises(UnsafeMedia, match=r"the fetch took longer than the 0.3 s allowed"):
        fetch("https://v3.fal.media/files/out.png", policy)


def test_redirect_chains_are_bounded(server):
    httpd, handler = server
    handler.routes["/loop"] = (302, {"Location": "/loop"}, b"")
    with pytest.raises(UnsafeMedia, match=r"more than 5 redirects"):
        fetch(f"http://127.0.0.1:{httpd.server_port}/loop", trusting(httpd))


def test_a_names_addresses_keep_the_resolvers_order(monkeypatch):
    """The system resolver already orders a name's addresses by preference (IPv6 or IPv4
    first, as this machine's routes suit): they are tried in that order, each once, not
    in the order of their text."""
    answers = ["2606:4700::1111", "93.184.215.14", "2606:4700::1111", "104.16.0.1"]

    def getaddrinfo(host, port, *args, **kwargs):
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in answers
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    assert system_resolve("v3.fal.media", 443) == ["2606:4700::1111", "93.184.215.14", "104.16.0.1"]


# a name with several addresses --------------------------------------------------------------

# .test names never resolve: a lookup made past the check (by httpx, say) would fail the fetch
MEDIA_HOST = "media.velro.test"


def trusting_the_name(httpd, addresses: list[str], lookups: list, **overrides) -> FetchPolicy:
    """A policy that trusts MEDIA_HOST on this server's port and resolves it to
    ``addresses``, noting each lookup in ``lookups``."""

    def resolve(host, port):
        lookups.append(host)
        return list(addresses)

    return trusting(
        httpd,
        private_hosts=frozenset({f"{MEDIA_HOST}:{httpd.server_port}"}),
        resolve=resolve,
        **overrides,
    )


def test_an_address_that_refuses_gives_way_to_the_hosts_next_one(server):
    """MEDIA_HOST resolves to 127.0.0.2, which refuses (nothing listens there), then to
    127.0.0.1, where the server is: the copy goes on to the second address, the name is
    resolved once, and the request still names the host."""
    httpd, handler = server
    handler.routes["/out.png"] = (200, {"Content-Type": "image/png"}, PNG)
    lookups = []
    policy = trusting_the_name(httpd, ["127.0.0.2", "127.0.0.1"], lookups)
    fetched = fetch(f"http://{MEDIA_HOST}:{httpd.server_port}/out.png", policy)
    assert (fetched.content_type, fetched.body) == ("image/png", PNG)
    assert lookups == [MEDIA_HOST]
    assert handler.hosts == [f"{MEDIA_HOST}:{httpd.server_port}"]


def test_an_address_that_does_not_answer_leaves_the_next_one_its_share_of_the_time(server):
    """127.0.0.2 drops the connection attempt unanswered: after its half of the fetch's
    time the next address, 127.0.0.1, serves the output, within the fetch's own limit."""
    httpd, handler = server
    handler.routes["/out.png"] = (200, {"Content-Type": "image/png"}, PNG)
    policy = trusting_the_name(httpd, ["127.0.0.2", "127.0.0.1"], [], timeout=4)
    with unanswering("127.0.0.2", httpd.server_port):
        started = time.monotonic()
        fetched = fetch(f"http://{MEDIA_HOST}:{httpd.server_port}/out.png", policy)
        took = time.monotonic() - started
    assert fetched.body == PNG
    assert 1.5 < took < policy.timeout


def test_one_private_address_among_a_hosts_answers_refuses_the_host(monkeypatch):
    """Production's policy (no exemptions): the name's first address passes the check
    (loopback, let through for this test only) and takes connections, the second is
    private. Every address is checked before any is called, so the host is refused and
    nothing connected to the first."""
    real_refuse = fetch_module.refuse_private

    def refuse_private_but_loopback(host, found):
        real_refuse(host, [address for address in found if not address.startswith("127.")])

    monkeypatch.setattr(fetch_module, "refuse_private", refuse_private_but_loopback)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        policy = FetchPolicy(
            allowed_hosts=("*.fal.media",),
            max_bytes=1000,
            timeout=2,
            resolve=lambda host, port: ["127.0.0.1", "10.1.2.3"],
        )
        port = listener.getsockname()[1]
        with pytest.raises(UnsafeMedia, match=r"10\.1\.2\.3, a private or loopback address"):
            fetch(f"https://v3.fal.media:{port}/out.png", policy)
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):  # no connection waits to be accepted
            listener.accept()


@pytest.mark.parametrize(
    "override", [{"MEDIA_PRIVATE_HOSTS": "127.0.0.1:9000"}, {"WEBHOOKS_ALLOW_PRIVATE": True}]
)
def test_production_refuses_private_exemptions(override):
    settings = Settings(APP_ENV="production", DATABASE_URL="postgresql://db/velro", **override)
    with pytest.raises(ConfigError, match="production never fetches from or calls private"):
        validate(settings)
    validate(Settings(APP_ENV="test", DATABASE_URL="postgresql://db/velro", **override))
