"""Hit rate and stale answers on a mixed workload: 99% authorize reads, 1% permission changes.

Two app instances (gunicorn, 1 worker x 4 threads each, so each is one L1 and one
invalidation listener) share Postgres and a private Redis, as two servers behind a load
balancer would. The workload (bench/sql/cache.sql, bench.cache_workload): `hit_rate_users`
active team members, each looking at `hit_rate_per_user` generations (own ones, ones from
projects they reach, ones shared with their teams, a public one, and ones they may not
read). Reads go through the real HTTP servers, each to a random instance, from 4 client
threads; the (user, generation) pair of each read is drawn from a Zipf distribution
(s = ZIPF_S) over a random ranking of the pairs, so a few pairs are hot and most are cold.

Every pair is read once first (warm-up, not counted). Then the run is a sequence of
epochs: one permission change, committed by the database owner straight in SQL (the same
rows and triggers as the API: remove or re-add a team member, unshare or re-share a
generation, change a member's role, change a project's visibility), then 99 reads. Before
the next change, every answer of the epoch is compared with the database's own
`authorize_generation` for that user, asked while the data is exactly as the reads saw it.
An answer that allows more than the database does is a stale grant; one that allows less is
a stale denial. Either is counted "within the propagation bound" when the read was sent
less than PROPAGATION_BOUND_S after the change committed (the target allows 100 ms for a
change to reach every instance), and as a bug otherwise.

After the run, every pair is read once on each instance and compared again: this checks
every answer either instance's L1, or Redis, still holds.

Targets: hit rate >= 95% (answers with `cache_hit`, from L1 or L2); no stale answer, grant
or denial, whenever it was read.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg

from bench.progress import say, step
from bench.scenarios.cache_support import (
    Client,
    RedisServer,
    app_env,
    grants_more,
    same_decision,
    tokens_for,
)
from harness.servers import Server

HIT_RATE_TARGET = 0.95
ZIPF_S = 1.0
READS_PER_CHANGE = 99
PROPAGATION_BOUND_S = 0.1
CLIENT_THREADS = 4
ROLES = ("viewer", "editor", "admin")
VISIBILITIES = ("private", "team", "public")
MAX_EXAMPLES = 20


def run(url: str, scale, verbose: bool) -> dict:
    rng = random.Random(42)  # noqa: S311 - a workload, not a secret
    pairs = _workload(url, scale, rng)
    users = sorted({user for user, _ in pairs})
    generations = sorted({generation for _, generation in pairs})
    say(f"workload: {len(users):,} users, {len(generations):,} generations, {len(pairs):,} pairs")
    tokens = tokens_for(url, users)
    changer = Changer(url, users, generations, rng)
    with RedisServer() as store:
        env = app_env(store.url)
        with (
            Server(url, env=env, workers=1, threads=4) as first,
            Server(url, env=env, workers=1, threads=4) as second,
            Readers([first.port, second.port], tokens) as readers,
        ):
            checker = Checker(url)
            with step(f"warm-up: every pair read once ({len(pairs):,} reads)"):
                warm = readers.read([(pair, rng.randrange(2)) for pair in pairs])
                checker.check(warm, change=None)
            warmup = checker.summary()
            checker.reset_counts()
            figures = _measured_run(scale, pairs, rng, readers, changer, checker)
            figures["warmup_wrong"] = (
                warmup["stale_grants"]["total"] + warmup["stale_denials"]["total"]
            )
            with step("final check: every pair read on both instances"):
                time.sleep(0.5)
                final = readers.read([(pair, side) for pair in pairs for side in (0, 1)])
                figures["final_check"] = checker.final(final)
            figures["instances"] = readers.cache_stats()
        checker.close()
    changer.close()
    figures.update(
        users=len(users),
        generations=len(generations),
        pairs=len(pairs),
        zipf_s=ZIPF_S,
        change_kinds=changer.kinds,
        target=HIT_RATE_TARGET,
        met=figures["hit_rate"] >= HIT_RATE_TARGET and _stale_answers(figures) == 0,
    )
    _say(figures)
    if verbose:
        print(figures)
    return figures


def _workload(url: str, scale, rng: random.Random) -> list[tuple[str, str]]:
    with psycopg.connect(url) as conn:
        conn.execute("select setseed(0.42)")
        rows = conn.execute(
            "select * from bench.cache_workload(%s, %s)",
            (scale.hit_rate_users, scale.hit_rate_per_user),
        ).fetchall()
    pairs = [(str(user), str(generation)) for user, generation in rows]
    rng.shuffle(pairs)  # the order is the Zipf ranking
    return pairs


def _measured_run(scale, pairs, rng, readers, changer, checker) -> dict:
    weights = list(itertools.accumulate(1 / (rank + 1) ** ZIPF_S for rank in range(len(pairs))))
    changes = scale.hit_rate_reads // READS_PER_CHANGE
    label = f"{changes * READS_PER_CHANGE:,} reads and {changes:,} permission changes"
    series = []  # per epoch: when it ended, its reads and how many were cache hits
    began = time.monotonic()
    with step(label):
        for _ in range(changes):
            change = changer.apply()
            drawn = rng.choices(pairs, cum_weights=weights, k=READS_PER_CHANGE)
            records = readers.read([(pair, rng.randrange(2)) for pair in drawn])
            checker.check(records, change)
            series.append(
                {
                    "seconds": round(time.monotonic() - began, 3),
                    "reads": len(records),
                    "hits": sum(bool(record["answer"]["cache_hit"]) for record in records),
                }
            )
    seconds = time.monotonic() - began
    figures = checker.summary()
    figures["series"] = series
    figures["seconds"] = round(seconds, 1)
    figures["reads_per_second"] = round(figures["reads"] / seconds)
    figures["changes"] = changes
    return figures


class Readers:
    """Client threads, each with a keep-alive connection to every instance."""

    def __init__(self, ports: list[int], tokens: dict[str, str]) -> None:
        self.ports = ports
        self.tokens = tokens
        self.local = threading.local()
        self.pool = ThreadPoolExecutor(CLIENT_THREADS)
        self.clients: list[Client] = []
        self.lock = threading.Lock()

    def __enter__(self) -> Readers:
        return self

    def __exit__(self, *exc) -> None:
        self.pool.shutdown()
        for client in self.clients:
            client.close()

    def read(self, reads: list) -> list[dict]:
        """Each (pair, instance) read once, spread over the threads, answers in order."""
        chunks = [reads[i::CLIENT_THREADS] for i in range(CLIENT_THREADS)]
        results = self.pool.map(self._read_chunk, chunks)
        return [record for chunk in results for record in chunk]

    def _read_chunk(self, reads) -> list[dict]:
        clients = self._clients()
        out = []
        for (user, generation), side in reads:
            sent = time.monotonic()
            answer = clients[side].authorize(generation, self.tokens[user])
            out.append(
                {
                    "user": user,
                    "generation": generation,
                    "instance": side,
                    "sent": sent,
                    "answer": answer,
                }
            )
        return out

    def _clients(self) -> list[Client]:
        clients = getattr(self.local, "clients", None)
        if clients is None:
            clients = [Client(port) for port in self.ports]
            self.local.clients = clients
            with self.lock:
                self.clients += clients
        return clients

    def cache_stats(self) -> list[dict]:
        stats = []
        for port in self.ports:
            client = Client(port)
            try:
                status, body = client.call("GET", "/api/v1/health/cache", token="")
                stats.append(body if status == 200 else {"status": status})
            finally:
                client.close()
        return stats


class Changer:
    """The 1%: permission changes over the workload's users and generations, in SQL."""

    def __init__(self, url: str, users: list[str], generations: list[str], rng) -> None:
        self.conn = psycopg.connect(url, autocommit=True)
        self.rng = rng
        self.members = [
            [str(t), str(u), r] for t, u, r in self._rows("bench.workload_memberships", users)
        ]
        self.shares = [
            [str(g), str(t), r] for g, t, r in self._rows("bench.workload_shares", generations)
        ]
        self.projects = [[str(p), v] for p, v in self._rows("bench.workload_projects", generations)]
        self.removed_members: list = []
        self.removed_shares: list = []
        self.kinds: dict[str, int] = {}

    def _rows(self, function: str, ids: list[str]):
        statement = f"select * from {function}(%s::uuid[])"  # noqa: S608 - our function names
        return self.conn.execute(statement, (ids,)).fetchall()

    def apply(self) -> dict:
        family = self.rng.choice(("membership", "share", "role", "visibility"))
        change = getattr(self, f"_{family}")()
        change["committed"] = time.monotonic()
        self.kinds[change["kind"]] = self.kinds.get(change["kind"], 0) + 1
        return change

    def _call(self, function: str, *arguments) -> None:
        placeholders = ", ".join(["%s"] * len(arguments))
        self.conn.execute(f"select {function}({placeholders})", arguments)

    def _membership(self) -> dict:
        if self.removed_members and (not self.members or self.rng.random() < 0.5):
            removed = self.removed_members
            team, user, role = removed.pop(self.rng.randrange(len(removed)))
            self._call("bench.add_member", team, user, role)
            self.members.append([team, user, role])
            return {"kind": "add team member", "team": team, "user": user, "role": role}
        team, user, role = self.members.pop(self.rng.randrange(len(self.members)))
        self._call("bench.remove_member", team, user)
        self.removed_members.append([team, user, role])
        return {"kind": "remove team member", "team": team, "user": user}

    def _share(self) -> dict:
        if self.removed_shares and (not self.shares or self.rng.random() < 0.5):
            generation, team, role = self.removed_shares.pop(
                self.rng.randrange(len(self.removed_shares))
            )
            self._call("bench.share", generation, team, role)
            self.shares.append([generation, team, role])
            return {"kind": "share", "generation": generation, "team": team, "role": role}
        generation, team, role = self.shares.pop(self.rng.randrange(len(self.shares)))
        self._call("bench.unshare", generation, team)
        self.removed_shares.append([generation, team, role])
        return {"kind": "unshare", "generation": generation, "team": team}

    def _role(self) -> dict:
        member = self.rng.choice(self.members)
        member[2] = self.rng.choice([r for r in ROLES if r != member[2]])
        self._call("bench.set_member_role", *member)
        return {"kind": "change role", "team": member[0], "user": member[1], "role": member[2]}

    def _visibility(self) -> dict:
        project = self.rng.choice(self.projects)
        project[1] = self.rng.choice([v for v in VISIBILITIES if v != project[1]])
        self._call("bench.set_visibility", *project)
        return {"kind": "visibility", "project": project[0], "visibility": project[1]}

    def close(self) -> None:
        self.conn.close()


class Checker:
    """Compares served answers with the database's, and counts hits."""

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(url, autocommit=True)
        self.reset_counts()

    def reset_counts(self) -> None:
        self.reads = 0
        self.hits = 0
        # by the answer given: a denial is tagged with its project, as a grant is
        self.by_answer = {kind: {"reads": 0, "hits": 0} for kind in ("granted", "denied")}
        self.stale = {
            name: {"within_bound": 0, "beyond_bound": 0, "examples": []}
            for name in ("stale_grants", "stale_denials")
        }

    def truth(self, pairs) -> dict:
        users, generations = zip(*pairs, strict=True) if pairs else ((), ())
        rows = self.conn.execute(
            "select * from bench.truth(%s::uuid[], %s::uuid[])", (list(users), list(generations))
        ).fetchall()
        return {(str(u), str(g)): answer for u, g, answer in rows}

    def check(self, records: list[dict], change: dict | None) -> None:
        truth = self.truth(sorted({(r["user"], r["generation"]) for r in records}))
        for record in records:
            hit = bool(record["answer"]["cache_hit"])
            self.reads += 1
            self.hits += hit
            kind = self.by_answer["granted" if record["answer"]["access_granted"] else "denied"]
            kind["reads"] += 1
            kind["hits"] += hit
            expected = truth[(record["user"], record["generation"])]
            if not same_decision(record["answer"], expected):
                self._stale(record, expected, change)

    def _stale(self, record: dict, expected: dict, change: dict | None) -> None:
        name = "stale_grants" if grants_more(record["answer"], expected) else "stale_denials"
        age = record["sent"] - change["committed"] if change else None
        within = age is not None and age < PROPAGATION_BOUND_S
        counts = self.stale[name]
        counts["within_bound" if within else "beyond_bound"] += 1
        if len(counts["examples"]) < MAX_EXAMPLES:
            counts["examples"].append(
                {
                    "user": record["user"],
                    "generation": record["generation"],
                    "instance": record["instance"],
                    "served": _brief(record["answer"]),
                    "database": _brief(expected),
                    "cache_hit": record["answer"]["cache_hit"],
                    "ms_after_change": round(age * 1000, 1) if age is not None else None,
                    "last_change": {k: v for k, v in (change or {}).items() if k != "committed"},
                }
            )

    def summary(self) -> dict:
        return {
            "reads": self.reads,
            "hits": self.hits,
            "hit_rate": round(self.hits / max(self.reads, 1), 4),
            "by_answer": {
                kind: {**counts, "hit_rate": round(counts["hits"] / max(counts["reads"], 1), 4)}
                for kind, counts in self.by_answer.items()
            },
            **{
                name: {**counts, "total": counts["within_bound"] + counts["beyond_bound"]}
                for name, counts in self.stale.items()
            },
        }

    def final(self, records: list[dict]) -> dict:
        truth = self.truth(sorted({(r["user"], r["generation"]) for r in records}))
        cached = [r for r in records if r["answer"]["cache_hit"]]
        wrong = [
            r
            for r in records
            if not same_decision(r["answer"], truth[(r["user"], r["generation"])])
        ]
        wrong_cached = [r for r in wrong if r["answer"]["cache_hit"]]
        return {
            "answers": len(records),
            "cached_answers": len(cached),
            "wrong": len(wrong),
            "wrong_cached": len(wrong_cached),
            "stale_grants": sum(
                grants_more(r["answer"], truth[(r["user"], r["generation"])]) for r in wrong
            ),
            "examples": [
                {
                    "user": r["user"],
                    "generation": r["generation"],
                    "instance": r["instance"],
                    "served": _brief(r["answer"]),
                    "database": _brief(truth[(r["user"], r["generation"])]),
                    "cache_hit": r["answer"]["cache_hit"],
                }
                for r in wrong[:MAX_EXAMPLES]
            ],
        }

    def close(self) -> None:
        self.conn.close()


def _brief(answer: dict) -> str:
    if not answer["access_granted"]:
        return "denied"
    return f"{answer['effective_role']} via {answer['access_method']}"


def _say(figures: dict) -> None:
    grants, denials = figures["stale_grants"], figures["stale_denials"]
    final = figures["final_check"]
    say(
        f"hit rate {figures['hit_rate']:.2%} over {figures['reads']:,} reads "
        f"(target >= {HIT_RATE_TARGET:.0%}); stale grants {grants['beyond_bound']} beyond and "
        f"{grants['within_bound']} within {PROPAGATION_BOUND_S * 1000:.0f} ms of a change; stale "
        f"denials {denials['beyond_bound']} beyond, {denials['within_bound']} within; final check: "
        f"{final['wrong']} of {final['answers']:,} answers wrong ({final['wrong_cached']} cached)"
    )


# report --------------------------------------------------------------------------------


def _stale_answers(figures: dict) -> int:
    """Answers that differed from the database's: during the run, and at the final check."""
    during = figures["stale_grants"]["total"] + figures["stale_denials"]["total"]
    return during + figures["final_check"]["wrong"]


def rows(figures: dict) -> list[dict]:
    grants, denials = figures["stale_grants"], figures["stale_denials"]
    final = figures["final_check"]
    stale_total = _stale_answers(figures)
    return [
        {
            "scenario": f"hit rate, mixed workload: {figures['users']:,} users, "
            f"{figures['generations']:,} generations, 99% authorize / 1% permission changes, "
            "2 instances",
            "measured": f"{figures['hits']:,} of {figures['reads']:,} answers cached",
            "baseline": "",
            "ratio_text": f"{figures['hit_rate']:.1%}",
            "target": f"≥ {HIT_RATE_TARGET:.0%}",
            "met": figures["hit_rate"] >= HIT_RATE_TARGET,
        },
        {
            "scenario": "stale answers on that workload (every answer checked against "
            "`authorize_generation`, then every cached answer after the run)",
            "measured": f"grants: {grants['beyond_bound']} later than "
            f"{PROPAGATION_BOUND_S * 1000:.0f} ms after a change, {grants['within_bound']} "
            f"within; denials: {denials['beyond_bound']} later, {denials['within_bound']} "
            f"within; {final['wrong']} at the final check",
            "baseline": "",
            "ratio_text": str(stale_total),
            "anchor": "",
            "target": "0",
            "met": stale_total == 0,
        },
    ]


def notes(figures: dict) -> list[str]:
    kinds = ", ".join(f"{kind} {count}" for kind, count in sorted(figures["change_kinds"].items()))
    denials = figures["stale_denials"]
    final = figures["final_check"]
    return [
        f"- Mixed workload: {figures['pairs']:,} (user, generation) pairs, Zipf s = "
        f"{figures['zipf_s']} over pairs, reads through HTTP to 2 instances (1 worker each) "
        f"sharing Postgres and Redis, {figures['reads_per_second']:,} reads/s; "
        f"{figures['changes']:,} changes ({kinds}). Stale denials (an answer allowing less "
        f"than the database): {denials['beyond_bound']} beyond the bound, "
        f"{denials['within_bound']} within. Final check: {final['answers']:,} answers, "
        f"{final['cached_answers']:,} from the cache, {final['wrong']} differing from the "
        "database. Hit rate by answer: "
        + ", ".join(
            f"{kind} {counts['hit_rate']:.1%} of {counts['reads']:,}"
            for kind, counts in figures["by_answer"].items()
        )
        + " (a change drops only the answers tagged with what it touched: the user, the"
        " generation or the project, for denials as for grants)."
    ]
