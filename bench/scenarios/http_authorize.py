"""HTTP figures: POST /api/v1/generations/{id}/authorize vs GET /api/v1/health/live.

One gunicorn server (gthread, as the Procfile runs it) on the bench database, no Redis,
rate limits off. wrk drives the load; the authorize requests cycle over granted (user,
generation) pairs from every access path, each user with a signed token of a live session.

Every figure pairs authorize with the floor measured in alternating slices on the same
server (bench.http.alternate): each round gives one ratio, the row shows their median and
spread. Two servers, one after the other:

- uncached: the app's cache off, so every request checks the token and the session and
  asks Postgres for the decision in one RLS-scoped transaction (one round trip). Targets:
  throughput at least 50% of the floor's at 32 connections, p50 at most 2x the floor's at
  one connection.
- l1_hit (when the app has a cache): the same requests over a small set of pairs that a
  warm-up has put in every worker's L1. Targets at 32 connections: throughput at least 80%
  of the floor's and p99 at most 1.5x the floor's; at 1 connection, p50 <= 1 ms.
"""

from __future__ import annotations

import secrets
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from functools import partial
from pathlib import Path

import psycopg

from bench.cpu import CpuMeter
from bench.http import POST_BEARER, alternate, rounds_and_slice, wrk
from bench.progress import say, step
from bench.scenarios.authorize import samples
from harness.servers import LIVENESS, Server

UNCACHED_TARGET = 0.5  # authorize throughput at least 50% of the floor's, 32 connections
UNCACHED_SINGLE_P50_TARGET = 2.0  # and p50 at most 2x the floor's, one connection
L1_TARGET = 0.8  # L1-hit throughput at least 80% of the floor's
L1_P99_TARGET = 1.5  # L1-hit p99 at most 1.5x the floor's
L1_SINGLE_P50_MS = 1.0  # L1-hit p50 at one connection
CONNECTIONS = 32
L1_PAIRS = 200  # few enough that the warm-up puts every one in every worker's L1


def run(url: str, scale, verbose: bool) -> dict:
    pairs = [pair for pair in samples(url, scale.authorize_samples_per_path) if pair[2] != "denied"]
    figures = {"uncached": _variant(url, scale, pairs, cached=False)}
    if "skipped" not in figures["uncached"]:
        figures["l1_hit"] = _variant(url, scale, pairs[:L1_PAIRS], cached=True)
    if verbose:
        print(figures)
    return figures


def _variant(url: str, scale, pairs: list[tuple[str, str, str]], cached: bool) -> dict:
    name = "authorize with L1 hits" if cached else "authorize, uncached"
    env = _app_env(cached)
    rounds, seconds = rounds_and_slice(scale.http_seconds)
    with Server(url, env=env) as server, tempfile.TemporaryDirectory() as scratch:
        requests_file = Path(scratch) / "requests.txt"
        requests_file.write_text(_requests(url, env, pairs), encoding="utf-8")
        not_served = _probe(server, requests_file)
        if not_served:
            say(f"HTTP scenario not run: {not_served}")
            return {"skipped": not_served}
        _warm(server, requests_file, cached, scale.warmup_seconds)
        figures = {"pairs": len(pairs), "slice_seconds": seconds}
        for label, connections in (("busy", CONNECTIONS), ("single", 1)):
            with step(
                f"HTTP {name} vs floor, {connections} connection(s), "
                f"{rounds} rounds of {seconds}s slices"
            ):
                load = partial(load_slice, server, requests_file, connections, seconds)
                meter = CpuMeter(server, url)
                paired = alternate(
                    meter.around("subject", load),
                    meter.around("floor", partial(load, floor=True)),
                    rounds,
                )
            figures[label] = {
                "connections": connections,
                **paired.as_dict(),
                "cpu_per_request": meter.medians(),
                "throughput_share": paired.ratio("requests_per_second"),
                "p50_ratio": paired.ratio("p50_ms"),
                "p99_ratio": paired.ratio("p99_ms"),
                "p50_ms": paired.subject_spread("p50_ms"),
            }
    figures["targets"] = _targets(figures, cached)
    busy = figures["busy"]["throughput_share"]
    say(
        f"HTTP {name}: {figures['busy']['subject']['requests_per_second']:,.0f} req/s, "
        f"{busy['median']:.0%} of the floor (rounds {busy['min']:.0%}-{busy['max']:.0%}); "
        f"p50 at 1 connection {figures['single']['p50_ratio']['median']:.2f}x the floor's"
    )
    return figures


def _targets(figures: dict, cached: bool) -> dict:
    busy, single = figures["busy"], figures["single"]
    share = busy["throughput_share"]["median"]
    if not cached:
        return {
            "throughput_share": {"target": UNCACHED_TARGET, "met": share >= UNCACHED_TARGET},
            "single_p50_ratio": {
                "target": UNCACHED_SINGLE_P50_TARGET,
                "met": single["p50_ratio"]["median"] <= UNCACHED_SINGLE_P50_TARGET,
            },
        }
    return {
        "throughput_share": {"target": L1_TARGET, "met": share >= L1_TARGET},
        "p99_ratio": {
            "target": L1_P99_TARGET,
            "met": busy["p99_ratio"]["median"] <= L1_P99_TARGET,
        },
        "single_p50_ms": {
            "target": L1_SINGLE_P50_MS,
            "met": single["subject"]["p50_ms"] <= L1_SINGLE_P50_MS,
        },
    }


def _warm(server: Server, requests_file: Path, cached: bool, seconds: int) -> None:
    # a cached run warms longer: every worker must have seen every pair once
    with step("HTTP warm-up"):
        load_slice(server, requests_file, CONNECTIONS, seconds, floor=True)
        load_slice(server, requests_file, CONNECTIONS, seconds * (2 if cached else 1))


def load_slice(
    server: Server, requests_file: Path, connections: int, seconds: int, floor: bool = False
):
    """One wrk slice: the authorize requests of requests_file, or the floor's route."""
    if floor:
        return wrk(server.url(LIVENESS), connections=connections, seconds=seconds)
    return wrk(
        server.url("/"),
        connections=connections,
        seconds=seconds,
        script=POST_BEARER,
        script_args=[str(requests_file)],
    )


# report --------------------------------------------------------------------------------


def rows(figures: dict) -> list[dict]:
    if "skipped" in figures:
        return []
    out = _uncached_rows(figures["uncached"])
    if "l1_hit" in figures:
        out += _l1_rows(figures["l1_hit"])
    return out


def _uncached_rows(figures: dict) -> list[dict]:
    busy, single, targets = figures["busy"], figures["single"], figures["targets"]
    return [
        {
            "scenario": "HTTP authorize, uncached (no cache), 32 connections: throughput vs "
            "`GET /health/live`",
            "measured": cell(busy["subject"]),
            "baseline": cell(busy["floor"]),
            **_spread_ratio(busy["throughput_share"], share=True),
            "target": f"≥ {UNCACHED_TARGET:.0%}",
            "met": targets["throughput_share"]["met"],
        },
        {
            "scenario": "HTTP authorize, uncached, 1 connection: p50 vs the floor's",
            "measured": f"p50 {single['subject']['p50_ms']:.2f} ms",
            "baseline": f"p50 {single['floor']['p50_ms']:.2f} ms",
            **_spread_ratio(single["p50_ratio"]),
            "target": UNCACHED_SINGLE_P50_TARGET,
            "met": targets["single_p50_ratio"]["met"],
        },
    ]


def _l1_rows(figures: dict) -> list[dict]:
    busy, single, targets = figures["busy"], figures["single"], figures["targets"]
    return [
        {
            "scenario": "HTTP authorize, L1 hit, no Redis, 32 connections: throughput vs "
            "`GET /health/live`",
            "measured": cell(busy["subject"]),
            "baseline": cell(busy["floor"]),
            **_spread_ratio(busy["throughput_share"], share=True),
            "target": f"≥ {L1_TARGET:.0%}",
            "met": targets["throughput_share"]["met"],
        },
        {
            "scenario": "HTTP authorize, L1 hit, no Redis, 32 connections: p99 vs the floor's",
            "measured": f"{busy['subject']['p99_ms']:.1f} ms",
            "baseline": f"{busy['floor']['p99_ms']:.1f} ms",
            **_spread_ratio(busy["p99_ratio"]),
            "target": L1_P99_TARGET,
            "met": targets["p99_ratio"]["met"],
        },
        {
            "scenario": "HTTP authorize, L1 hit, no Redis, 1 connection: p50",
            "measured": f"p50 {single['subject']['p50_ms']:.2f} ms",
            "baseline": f"floor p50 {single['floor']['p50_ms']:.2f} ms",
            "ratio": single["p50_ms"]["median"],
            "spread": (single["p50_ms"]["min"], single["p50_ms"]["max"]),
            "ratio_unit": " ms",
            "target": f"≤ {L1_SINGLE_P50_MS} ms",
            "met": targets["single_p50_ms"]["met"],
        },
    ]


def _spread_ratio(ratio: dict, share: bool = False) -> dict:
    return {
        "ratio": ratio["median"],
        "spread": (ratio["min"], ratio["max"]),
        "ratio_is_share": share,
    }


def cell(load: dict) -> str:
    failed = load["non_2xx"] + load["socket_errors"]
    return (
        f"{load['requests_per_second']:,.0f} req/s, p50 {load['p50_ms']:.1f} ms, "
        f"p99 {load['p99_ms']:.1f} ms" + (f", {failed:,} failed" if failed else "")
    )


def notes(figures: dict) -> list[str]:
    if "skipped" in figures:
        return [f"- HTTP scenario not run: {figures['skipped'].strip()}"]
    uncached = figures["uncached"]
    return [
        f"- HTTP authorize rows: one gunicorn server per variant (2 workers x 4 threads), "
        f"{uncached['pairs']} granted pairs; each figure is {uncached['busy']['rounds']} "
        f"rounds of {uncached['slice_seconds']} s slices, authorize and the floor in turn; "
        "the ratio is the median of the rounds' ratios, (min-max) their spread.",
        *(
            _cpu_note(name, figures[variant]["busy"])
            for variant, name in (("uncached", "uncached"), ("l1_hit", "L1 hit"))
            if variant in figures
        ),
    ]


def _cpu_note(name: str, busy: dict) -> str:
    cpu = busy.get("cpu_per_request")
    if not cpu:
        return f"- CPU per request ({name}): not measured in this run."
    subject, floor = cpu["subject"], cpu["floor"]
    return (
        f"- CPU per request at {busy['connections']} connections, {name} (median slice): "
        f"authorize {subject['app_us']:.0f} µs in the gunicorn workers and "
        f"{subject['postgres_us']:.0f} µs in Postgres; the floor {floor['app_us']:.0f} µs in "
        "the workers. wrk runs on the same cores."
    )


def _app_env(cached: bool) -> dict:
    """The app's environment: a fresh secret, no Redis, no rate limits, cache on or off."""
    return {
        "APP_ENV": "development",
        "JWT_SECRET": secrets.token_hex(32),
        "LOG_LEVEL": "WARNING",
        "REDIS_URL": "",
        "RATE_LIMIT_ENABLED": "false",
        "CACHE_ENABLED": "true" if cached else "false",
    }


def _requests(url: str, env: dict, pairs: list[tuple[str, str, str]]) -> str:
    """One "<path> <token>" line per pair; each user gets a live session and a signed token."""
    from backend.auth.tokens import TokenSigner
    from backend.config import load_settings

    settings = load_settings({"DATABASE_URL": url}, environ=env)
    signer = TokenSigner(settings)
    users = sorted({user for user, _, _ in pairs})
    with psycopg.connect(url) as conn:
        sessions = dict(
            conn.execute("select * from bench.open_sessions(%s::uuid[])", (users,)).fetchall()
        )
    now = int(time.time())
    tokens = {
        user: signer.sign(
            {
                "sub": user,
                "role": "authenticated",
                "aud": settings.JWT_AUDIENCE,
                "iss": settings.issuer,
                "iat": now,
                "exp": now + 3600,
                "session_id": str(sessions[uuid.UUID(user)]),
                "aal": "aal1",
            }
        )
        for user in users
    }
    return "".join(
        f"/api/v1/generations/{generation}/authorize {tokens[user]}\n"
        for user, generation, _ in pairs
    )


def _probe(server: Server, requests_file: Path) -> str | None:
    """One authorize request by hand: None when it answers a granted decision."""
    path, token = requests_file.read_text(encoding="utf-8").splitlines()[0].split()
    request = urllib.request.Request(  # noqa: S310 - our own http:// server
        server.url(path),
        data=b"{}",
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - our own http URL  # noqa: S310
            body = response.read().decode()
    except urllib.error.HTTPError as error:
        return f"POST {path} answered {error.code}: {error.read().decode()[:300]}"
    return (
        None
        if '"access_granted": true' in body.replace('":true', '": true')
        else f"unexpected answer {body[:300]}"
    )
