"""Tooling for the fault-injection suite (tests/test_faults.py): traffic that counts every
answer, a Redis of the test's own to stop and start, a TCP proxy that blackholes, and the
artifact the README's fault table is printed from.

- ``Traffic``: threads sending real HTTP requests back to back until stopped. Each answer
  is counted as a 2xx, a clean refusal (a 4xx in the one error shape), a clean 503 (the
  error shape), a server error (any other 5xx, or a 503 without the shape), a malformed
  refusal (a 4xx without the shape) or lost (no answer: connection error or timeout), per
  phase (before, during and after the fault), with each request's latency.
- ``OwnRedis``: ``redis-server`` on a free port in a temporary folder; ``stop()`` kills it
  (the shared Redis at 6379 is never touched), ``start()`` brings it back on the same port.
- ``BlackholeProxy``: forwards loopback TCP until told to hold everything.
- ``record_fault(name, ...)`` merges one fault's figures into test-artifacts/faults.json
  (a file lock keeps parallel test processes from losing each other's entries);
  ``python tests/fault_support.py`` prints that file as the README's table.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import redis
import requests

REPO_ROOT = Path(__file__).resolve().parent.parent
ARTIFACT = REPO_ROOT / "test-artifacts" / "faults.json"
REQUEST_TIMEOUT = 15.0  # no answer within this is a lost request
ERROR_SHAPE = {"error", "message", "request_id"}


# traffic ----------------------------------------------------------------------------------


@dataclass
class Tally:
    """What one phase of traffic got back."""

    requests: int = 0
    ok: int = 0
    refused: int = 0
    unavailable: int = 0
    server_errors: int = 0
    malformed: int = 0
    lost: int = 0
    seconds: list[float] = field(default_factory=list)
    samples: list[str] = field(default_factory=list)  # the first few bad answers, to show

    def add(self, response: requests.Response | None, seconds: float, problem: str = "") -> None:
        self.requests += 1
        self.seconds.append(seconds)
        kind = classify(response)
        setattr(self, kind, getattr(self, kind) + 1)
        if kind in ("server_errors", "malformed", "lost") and len(self.samples) < 10:
            detail = problem if response is None else f"{response.status_code} {response.text}"
            self.samples.append(detail[:300])

    def merged(self, other: Tally) -> Tally:
        total = Tally()
        for name in ("requests", "ok", "refused", "unavailable", "server_errors", "malformed"):
            setattr(total, name, getattr(self, name) + getattr(other, name))
        total.lost = self.lost + other.lost
        total.seconds = self.seconds + other.seconds
        total.samples = self.samples + other.samples
        return total

    def latency_ms(self) -> dict[str, float | None]:
        ordered = sorted(self.seconds)
        if not ordered:
            return {"p50": None, "p99": None, "max": None}
        return {
            "p50": round(percentile(ordered, 0.50) * 1000, 2),
            "p99": round(percentile(ordered, 0.99) * 1000, 2),
            "max": round(ordered[-1] * 1000, 2),
        }


def classify(response: requests.Response | None) -> str:
    if response is None:
        return "lost"
    status = response.status_code
    if 200 <= status < 300:
        return "ok"
    shaped = in_error_shape(response)
    if status == 503:
        return "unavailable" if shaped else "server_errors"
    if status >= 500:
        return "server_errors"
    return "refused" if shaped else "malformed"


def in_error_shape(response: requests.Response) -> bool:
    try:
        body = response.json()
    except ValueError:
        return False
    return (
        isinstance(body, dict)
        and set(body) >= ERROR_SHAPE
        and body["request_id"] == response.headers.get("X-Request-ID")
    )


def percentile(ordered: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an ordered list."""
    return ordered[max(0, round(fraction * len(ordered) + 0.5) - 1)]


Call = Callable[[requests.Session], requests.Response]


class Traffic:
    """``threads`` clients, each sending ``calls`` in turn, back to back, until ``stop()``.

    ``phase(name)`` starts counting into a new phase; ``tally(name)`` is what it got.
    """

    def __init__(self, calls: list[Call], threads: int = 4) -> None:
        self._calls = calls
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._phase = "before"
        self._tallies: dict[str, Tally] = {"before": Tally()}
        self._threads = [
            threading.Thread(target=self._client, args=(n,), daemon=True) for n in range(threads)
        ]

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def phase(self, name: str) -> None:
        with self._lock:
            self._phase = name
            self._tallies.setdefault(name, Tally())

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=REQUEST_TIMEOUT + 5)

    def tally(self, *names: str) -> Tally:
        with self._lock:
            chosen = [self._tallies[n] for n in names or self._tallies]
        total = Tally()
        for each in chosen:
            total = total.merged(each)
        return total

    def wait_for_requests(self, count: int, timeout: float = 60.0) -> None:
        """Until the current phase has seen ``count`` answers (or fail)."""
        deadline = time.monotonic() + timeout
        while self.tally(self._phase).requests < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"traffic made fewer than {count} requests in {timeout}s")
            time.sleep(0.02)

    def _client(self, offset: int) -> None:
        with requests.Session() as session:
            calls = itertools.islice(itertools.cycle(self._calls), offset, None)
            for call in calls:
                if self._stop.is_set():
                    return
                started = time.perf_counter()
                response, problem = None, ""
                try:
                    response = call(session)
                except requests.RequestException as error:
                    problem = f"{type(error).__name__}: {error}"
                seconds = time.perf_counter() - started
                with self._lock:
                    self._tallies[self._phase].add(response, seconds, problem)


def assert_nothing_lost(tally: Tally) -> None:
    """Every request answered: a 2xx or a clean 4xx/503, never another 5xx or silence."""
    assert tally.requests > 0, "no traffic ran"
    bad = tally.server_errors + tally.malformed + tally.lost
    assert bad == 0, (
        f"{tally.lost} lost, {tally.server_errors} server errors, {tally.malformed} malformed"
        " refusals:\n" + "\n".join(tally.samples)
    )


# the artifact --------------------------------------------------------------------------


def record_fault(name: str, *, fault: str, injected: str, invariants: str, **figures) -> None:
    """Merge one fault's figures into the artifact, keyed by ``name``."""
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    entry = {
        "fault": fault,
        "injected": injected,
        "invariants": invariants,
        **figures,
        "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    with open(ARTIFACT.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = json.loads(ARTIFACT.read_text()) if ARTIFACT.exists() else {}
        found[name] = entry
        ARTIFACT.write_text(json.dumps(found, indent=2, sort_keys=True) + "\n")


def traffic_figures(traffic: Traffic, fault_phase: str = "during") -> dict:
    """The figures every fault records: totals over all phases, and the fault's own phase."""
    total, during = traffic.tally(), traffic.tally(fault_phase)
    return {
        "requests": total.requests,
        "requests_during_fault": during.requests,
        "ok": total.ok,
        "clean_4xx": total.refused,
        "clean_503": total.unavailable,
        "server_errors": total.server_errors + total.malformed,
        "lost": total.lost,
        "latency_ms_during_fault": during.latency_ms(),
    }


def markdown_table(path: Path = ARTIFACT) -> str:
    """The README's table of faults, from the artifact."""
    entries = json.loads(path.read_text())
    lines = [
        "| fault | injected | requests (during) | p50 / p99 during | lost | 5xx | clean 503"
        " | audit rows | checked |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for entry in sorted(entries.values(), key=lambda e: e.get("order", 99)):
        latency = entry["latency_ms_during_fault"]
        lines.append(
            f"| {entry['fault']} | {entry['injected']} | "
            f"{entry['requests']:,} ({entry['requests_during_fault']:,}) | "
            f"{latency['p50']:.0f} / {latency['p99']:.0f} ms | {entry['lost']} | "
            f"{entry['server_errors']} | {entry['clean_503']} | {entry['audit_rows']} | "
            f"{entry['invariants']} |"
        )
    return "\n".join(lines)


# a Redis of the test's own ----------------------------------------------------------------


class OwnRedis:
    """A ``redis-server`` of this test's own, on a free port, with no persistence."""

    def __init__(self, *options: str) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self._options = options
        self._folder = tempfile.mkdtemp(prefix="velro-fault-redis-")
        self._process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=2, socket_connect_timeout=2)

    def start(self) -> OwnRedis:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed (apt-get install redis-server)"
        command = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        command += ["--appendonly", "no", "--dir", self._folder, *self._options]
        self._process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + 10
        with self.client() as probe:
            while True:
                try:
                    probe.ping()
                    return self
                except redis.RedisError:
                    if self._process.poll() is not None or time.monotonic() > deadline:
                        raise AssertionError(f"redis-server did not start on {self.port}") from None
                    time.sleep(0.05)

    def stop(self) -> None:
        """Kill it, as a crash would: no shutdown, nothing saved."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(timeout=10)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._folder, ignore_errors=True)

    def __enter__(self) -> OwnRedis:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


# a TCP proxy that can go silent -------------------------------------------------------------


class BlackholeProxy:
    """Forwards loopback TCP connections to a target until ``blackhole()``; then it keeps
    both sockets open and forwards nothing, as a NAT or a load balancer that lost the
    connection's state does: no error reaches either side."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._forwarding = threading.Event()
        self._forwarding.set()
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def blackhole(self) -> None:
        self._forwarding.clear()

    def restore(self) -> None:
        self._forwarding.set()

    def close(self) -> None:
        self._closed.set()
        self._server.close()
        for sock in self._sockets:
            sock.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self._target)
            self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                # while blackholed, hold the data: nothing passes, nothing is refused
                while not self._forwarding.wait(0.05):
                    if self._closed.is_set():
                        return
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


def wait_for(condition: Callable[[], object], what: str, timeout: float = 30.0):
    """Poll ``condition`` until it is truthy and return it, or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        found = condition()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what} after {timeout}s")
        time.sleep(0.05)


if __name__ == "__main__":
    if not ARTIFACT.exists():
        sys.exit(f"{ARTIFACT} does not exist: run `pytest tests/test_faults.py` first")
    print(markdown_table())
