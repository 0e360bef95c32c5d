"""Revocation propagation across two instances: revoke through A, time until B refuses.

Two gunicorn servers (2 workers x 4 threads each, as the Procfile runs them) share
Postgres and a private Redis. Each trial takes a member whose only way to a generation is
a share with one of their teams (bench.revocable_shares), and:

1. asks instance B for the member's decision on one keep-alive connection until B answers
   from its cache (`cache_hit`), so the grant sits in that B worker's L1;
2. polls B on that connection, back to back, from a second thread, while the main thread
   revokes through instance A's API: `DELETE /generations/{id}/share/{team}` as the
   generation's creator, or `DELETE /teams/{id}/members/{user}` as the team's owner,
   alternately;
3. stops polling at B's first denial, and checks that the database denies too;
4. restores the share or the membership (in SQL) and waits until B grants again.

The revocation commits while A handles the DELETE. To know when, the benchmark LISTENs on
the app's invalidation channel itself (CommitClock): Postgres delivers a NOTIFY to every
listener at commit, so the moment the benchmark hears the trial's notice (the generation's
for an unshare, the member's for a removal) is the commit as the instances learn of it.
Reported per trial: commit -> B's first denial (judged), and the brackets that need no
clock: "denied - A answered" (lower bound) and "denied - request sent" (upper bound).
Also reported: the polls B still answered with a grant after A had answered.

Target: p99 <= 100 ms.
"""

from __future__ import annotations

import json
import threading
import time

import psycopg

from bench.progress import say, step
from bench.scenarios.cache_support import CHANNEL, Client, RedisServer, app_env, tokens_for
from bench.stats import percentile
from harness.servers import Server

TARGET_P99_MS = 100.0
POLL_TIMEOUT_S = 5.0
KINDS = ("unshare", "remove member")


def run(url: str, scale, verbose: bool) -> dict:
    cases = _cases(url, scale.propagation_trials)
    if not cases:
        return {"skipped": "no share is any member's only access to a generation"}
    people = [c[key] for c in cases for key in ("member", "creator", "owner")]
    tokens = tokens_for(url, people)
    trials, invalid = [], []
    with RedisServer() as store:
        env = app_env(store.url)
        with (
            Server(url, env=env) as first,
            Server(url, env=env) as second,
            psycopg.connect(url, autocommit=True) as conn,
            CommitClock(url) as clock,
            step(f"{scale.propagation_trials} revocations through A, polled on B"),
        ):
            for number in range(scale.propagation_trials):
                case = cases[number % len(cases)]
                kind = KINDS[number % len(KINDS)]
                outcome = _trial(first.port, second.port, conn, tokens, case, kind, clock)
                (trials if outcome.get("valid") else invalid).append(outcome)
    figures = _summarize(trials)
    figures["invalid_trials"] = invalid[:10]
    figures["invalid_count"] = len(invalid)
    say(
        f"revocation A -> B: commit to B's refusal p50 {figures['commit_ms']['p50']:.1f} ms, "
        f"p99 {figures['commit_ms']['p99']:.1f} ms (target p99 <= {TARGET_P99_MS:.0f} ms); "
        f"from the DELETE being sent p99 {figures['upper_ms']['p99']:.1f} ms; grants B served "
        f"after A answered: {figures['stale_polls_after_answer']} in {len(trials)} trials"
    )
    if verbose:
        print(figures)
    return figures


def _cases(url: str, count: int) -> list[dict]:
    with psycopg.connect(url) as conn:
        conn.execute("select setseed(0.9)")
        rows = conn.execute("select * from bench.revocable_shares(%s)", (count,)).fetchall()
    keys = ("generation", "team", "share_role", "member", "member_role", "creator", "owner")
    return [dict(zip(keys, map(str, row), strict=True)) for row in rows]


class CommitClock(threading.Thread):
    """LISTENs on the app's invalidation channel and stamps each notice on arrival."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.conn = psycopg.connect(url, autocommit=True)
        self.conn.execute(f"listen {CHANNEL}")
        self.heard: list[tuple[float, dict]] = []
        self.stop = threading.Event()

    def __enter__(self) -> CommitClock:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.join(timeout=5)
        self.conn.close()

    def run(self) -> None:
        while not self.stop.is_set():
            for notice in self.conn.notifies(timeout=0.2):
                self.heard.append((time.monotonic(), json.loads(notice.payload)))

    def first_after(self, since: float, scope: str, ident: str) -> float | None:
        """When the first (scope, id) notice after `since` arrived, or None."""
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            for at, notice in list(self.heard):
                if at >= since and notice.get("scope") == scope and notice.get("id") == ident:
                    return at
            time.sleep(0.01)
        return None


def _trial(
    a_port: int, b_port: int, conn, tokens: dict, case: dict, kind: str, clock: CommitClock
) -> dict:
    generation, member = case["generation"], case["member"]
    poller = Client(b_port)
    revoker = Client(a_port)
    try:
        if not _until(poller, generation, tokens[member], lambda a: a["cache_hit"]):
            return {"valid": False, "why": "B never served the grant from its cache", **case}
        polls = _Poller(poller, generation, tokens[member])
        polls.start()
        time.sleep(0.02)  # a few grants on record before the revocation
        sent = time.monotonic()
        status = _revoke(revoker, tokens, case, kind)
        answered = time.monotonic()
        polls.join(POLL_TIMEOUT_S + 1)
        polls.stop.set()
        polls.join()
        if status != 204:
            return {"valid": False, "why": f"revoke answered {status}", "kind": kind, **case}
        database_denies = not _database_grants(conn, member, generation)
        _restore(conn, case, kind)
        _until(poller, generation, tokens[member], lambda a: a["access_granted"])
    finally:
        poller.close()
        revoker.close()
    if not database_denies:
        return {"valid": False, "why": "the database still grants", "kind": kind, **case}
    if polls.denied_at is None:
        # B kept granting what the database refuses: a stale grant, the bug this hunts
        return {"valid": True, "never_denied": True, "kind": kind, **case}
    stale = [at for at, granted in polls.log if granted and at > answered]
    scope, ident = ("generation", generation) if kind == "unshare" else ("user", member)
    committed = clock.first_after(sent, scope, ident)
    return {
        "valid": True,
        "kind": kind,
        "commit_ms": (polls.denied_at - committed) * 1000 if committed else None,
        "lower_ms": (polls.denied_at - answered) * 1000,
        "upper_ms": (polls.denied_at - sent) * 1000,
        "api_ms": (answered - sent) * 1000,
        "stale_polls": len(stale),
        "polls": len(polls.log),
    }


class _Poller(threading.Thread):
    """Asks B back to back; records (answer time, granted) until the first denial."""

    def __init__(self, client: Client, generation: str, token: str) -> None:
        super().__init__(daemon=True)
        self.client, self.generation, self.token = client, generation, token
        self.log: list[tuple[float, bool]] = []
        self.denied_at: float | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + POLL_TIMEOUT_S
        while not self.stop.is_set() and time.monotonic() < deadline:
            answer = self.client.authorize(self.generation, self.token)
            at = time.monotonic()
            self.log.append((at, answer["access_granted"]))
            if not answer["access_granted"]:
                self.denied_at = at
                return


def _until(client: Client, generation: str, token: str, condition, tries: int = 200) -> bool:
    for _ in range(tries):
        if condition(client.authorize(generation, token)):
            return True
        time.sleep(0.005)
    return False


def _revoke(client: Client, tokens: dict, case: dict, kind: str) -> int:
    if kind == "unshare":
        path = f"/api/v1/generations/{case['generation']}/share/{case['team']}"
        status, _ = client.call("DELETE", path, tokens[case["creator"]])
    else:
        path = f"/api/v1/teams/{case['team']}/members/{case['member']}"
        status, _ = client.call("DELETE", path, tokens[case["owner"]])
    return status


def _restore(conn, case: dict, kind: str) -> None:
    if kind == "unshare":
        conn.execute(
            "select bench.share(%s, %s, %s)", (case["generation"], case["team"], case["share_role"])
        )
    else:
        conn.execute(
            "select bench.add_member(%s, %s, %s)",
            (case["team"], case["member"], case["member_role"]),
        )


def _database_grants(conn, user: str, generation: str) -> bool:
    row = conn.execute("select bench.authorize_as(%s, %s)", (user, generation)).fetchone()
    return row[0]["access_granted"]


def _summarize(all_trials: list[dict]) -> dict:
    never_denied = [t for t in all_trials if t.get("never_denied")]
    trials = [t for t in all_trials if not t.get("never_denied")]

    def spread(key: str, chosen: list[dict] | None = None) -> dict:
        values = sorted(t[key] for t in (trials if chosen is None else chosen))
        return {
            "p50": round(percentile(values, 50), 2),
            "p99": round(percentile(values, 99), 2),
            "max": round(values[-1], 2) if values else None,
        }

    timed = [t for t in trials if t["commit_ms"] is not None]
    commit = spread("commit_ms", timed)
    return {
        "trials": len(trials),
        "by_kind": {kind: sum(t["kind"] == kind for t in trials) for kind in KINDS},
        "commit_ms": commit,
        "commit_timed": len(timed),
        "upper_ms": spread("upper_ms"),
        "lower_ms": spread("lower_ms"),
        "api_ms": spread("api_ms"),
        "stale_polls_after_answer": sum(t["stale_polls"] for t in trials),
        "trials_with_stale_polls": sum(t["stale_polls"] > 0 for t in trials),
        "polls": sum(t["polls"] for t in trials),
        "never_denied": len(never_denied),
        "never_denied_examples": never_denied[:10],
        "target_p99_ms": TARGET_P99_MS,
        "met": bool(timed)
        and len(timed) == len(trials)
        and not never_denied
        and commit["p99"] <= TARGET_P99_MS,
    }


# report --------------------------------------------------------------------------------


def rows(figures: dict) -> list[dict]:
    if "skipped" in figures:
        return []
    commit, upper, lower = figures["commit_ms"], figures["upper_ms"], figures["lower_ms"]
    return [
        {
            "scenario": f"revocation through instance A refused by instance B "
            f"({figures['trials']} trials): commit to B's first refusal",
            "measured": f"p50 {commit['p50']:.1f} ms, p99 {commit['p99']:.1f} ms "
            f"(bracket without a clock: p99 {lower['p99']:.1f} from A's answer to "
            f"{upper['p99']:.1f} from the request)",
            "baseline": "",
            "ratio": commit["p99"],
            "ratio_unit": " ms",
            "target": f"p99 ≤ {TARGET_P99_MS:.0f} ms",
            "met": figures["met"],
        }
    ]


def notes(figures: dict) -> list[str]:
    if "skipped" in figures:
        return [f"- Revocation propagation not run: {figures['skipped']}"]
    kinds = ", ".join(f"{kind} {count}" for kind, count in figures["by_kind"].items())
    return [
        f"- Revocation propagation: 2 instances (2 workers x 4 threads each) sharing Postgres "
        f"and Redis; the commit is when the benchmark's own LISTEN hears the notice "
        f"({figures['commit_timed']} of {figures['trials']} trials timed so); trials: {kinds}; "
        f"the revoking API call took p50 "
        f"{figures['api_ms']['p50']:.1f} ms; B answered {figures['polls']:,} polls, "
        f"{figures['stale_polls_after_answer']} of them grants after A had answered the "
        f"revocation (in {figures['trials_with_stale_polls']} trials); trials where B still "
        f"granted {POLL_TIMEOUT_S:.0f} s later: {figures['never_denied']}; invalid trials "
        f"(set-up failed or the database still granted): {figures['invalid_count']}."
    ]
