"""Decision cost: pycasbin's RBAC with domains in process vs our decision (DB and L1 hit).

The same question, "may this user read this generation?", answered three ways:

- pycasbin (the RBAC library Flask developers reach for), in process, on a model built
  from this dataset: a role per (user, team) domain with the role hierarchy inside each
  team (owner > admin > editor > viewer), resources mapped to team domains by policies
  for project-team links and generation shares, direct ownership of generations and
  projects, public projects, and generation -> project grouping. A suspended user is
  refused before casbin is asked, as an app would check status outside RBAC. (Modelled
  instead as a role every active user holds in one domain, that domain's 10,000 links
  make pycasbin's first enforce take minutes: its domain role manager is built lazily,
  quadratically.) Casbin is timed after one warm-up pass over the pairs. It holds every team and
  every active member, the links and shares the sampled pairs depend on, and other links
  up to `scale.casbin_policies` (~7 per team). A full port would hold every link, share
  and generation, so the casbin figure is a lower bound of its cost here.
- our uncached decision: `authorize_generation()` in a PostgREST-style request, one full
  round trip to Postgres (bench/scenarios/authorize.py's measurement on the same pairs).
- an L1 hit: `Cache.get_or_load` of the app's cache, in process, the entries loaded.

Casbin's answers are checked against the database's on every sampled pair.

Targets: the DB decision faster than casbin's enforce; an L1 hit at least
1,000x faster than casbin's enforce (p50 against p50).
"""

from __future__ import annotations

import time

import psycopg

from bench.progress import say, step
from bench.scenarios import authorize
from bench.scenarios.authorize import samples
from bench.stats import summarize

L1_SPEEDUP_TARGET = 1_000
DB_SPEEDUP_TARGET = 1.0
BUDGET_SECONDS = 60  # casbin's timed decisions stop here, however many were asked for
L1_CALLS = 100_000
L1_BATCH = 100

MODEL = """
[request_definition]
r = sub, obj, act

[policy_definition]
p = sub, dom, obj, act

[role_definition]
g = _, _, _
g2 = _, _

[policy_effect]
e = some(where (p.eft == allow))

[matchers]
m = r.act == p.act && (r.obj == p.obj || g2(r.obj, p.obj)) && \
    (r.sub == p.sub || p.sub == "*" || g(r.sub, p.sub, p.dom))
"""
HIERARCHY = (("owner", "admin"), ("admin", "editor"), ("editor", "viewer"))
NO_DOMAIN = "-"


def run(url: str, scale, verbose: bool) -> dict:
    pairs = samples(url, max(2, scale.casbin_decisions // 7 + 1), seed=11)
    truth = _truth(url, pairs)
    with step("building the pycasbin model from the dataset"):
        enforcer, sizes = build_enforcer(url, [g for _, g, _ in pairs], scale.casbin_policies)
    say(f"pycasbin holds {sizes['policies']:,} policies and {sizes['role_links']:,} role links")
    answers = {(u, g): bool(enforcer.enforce(u, f"gen:{g}", "read")) for u, g, _ in pairs}
    disagreements = [
        {"user": u, "generation": g, "casbin": answer, "database": truth[(u, g)]}
        for (u, g), answer in answers.items()
        if answer != truth[(u, g)]
    ]
    # suspended users are refused before casbin is asked: timing them would time nothing
    pairs = [pair for pair in pairs if pair[0] in enforcer.active]
    with step(f"timing pycasbin enforce on {len(pairs)} decisions of active users"):
        casbin_ns = _time_casbin(enforcer, pairs)
    by_answer = {
        answer: summarize(
            [ns for ns, (u, g, _) in zip(casbin_ns, pairs, strict=False) if truth[(u, g)] == answer]
        ).as_dict()
        for answer in (True, False)
    }
    with step("timing our decision: authorize_generation() in one round trip"):
        database = authorize.run(url, pairs, max(300, scale.authorize_iterations // 3))
    with step(f"timing L1 hits: Cache.get_or_load x {L1_CALLS:,}"):
        l1_ns = _time_l1(pairs, truth)
    figures = _judge(summarize(casbin_ns), database, summarize(l1_ns))
    figures.update(
        casbin_granted=by_answer[True],
        casbin_denied=by_answer[False],
        pairs=len(pairs),
        casbin_decisions=len(casbin_ns),
        casbin_sizes=sizes,
        casbin_version=_casbin_version(),
        disagreements=len(disagreements),
        disagreement_examples=disagreements[:10],
    )
    say(
        f"decision p50: pycasbin {figures['casbin']['p50']:,.0f} µs, database "
        f"{figures['database']['p50']:,.0f} µs, L1 hit {figures['l1_hit']['p50']:.2f} µs; "
        f"casbin disagrees with the database on {len(disagreements)} of {len(pairs)} pairs"
    )
    if verbose:
        print(figures)
    return figures


def _truth(url: str, pairs) -> dict[tuple[str, str], bool]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "select * from bench.truth(%s::uuid[], %s::uuid[])",
            ([u for u, _, _ in pairs], [g for _, g, _ in pairs]),
        ).fetchall()
    return {(str(u), str(g)): answer["access_granted"] for u, g, answer in rows}


def build_enforcer(url: str, generations: list[str], links: int):
    with psycopg.connect(url) as conn:
        conn.execute("select setseed(0.5)")
        facts = conn.execute(
            "select * from bench.casbin_facts(%s::uuid[], %s)", (generations, links)
        ).fetchall()
    policies, roles, groups, active = _rules(facts)
    enforcer = Decider(_enforcer(policies, roles, groups), active)
    sizes = {
        "policies": len(enforcer.enforcer.get_policy()),
        "role_links": len(roles) + len(groups),
        "teams": sum(1 for kind, *_ in facts if kind == "team"),
        "link_policies": sum(1 for kind, *_ in facts if kind == "link"),
    }
    return enforcer, sizes


def _rules(facts) -> tuple[list, list, list, set]:
    """Policies (sub, dom, obj, act), role links (g), generation -> project links (g2), and
    the active users."""
    policies, roles, groups, active = [], [], [], set()
    for kind, a, b, c in facts:
        if kind == "member":
            roles.append([a, b, f"team:{c}"])
        elif kind == "active":
            active.add(a)
        elif kind == "team":
            roles += [[high, low, f"team:{a}"] for high, low in HIERARCHY]
        elif kind == "link":
            policies.append(["viewer", f"team:{b}", f"proj:{a}", "read"])
        elif kind == "share":
            policies.append(["viewer", f"team:{b}", f"gen:{a}", "read"])
        elif kind == "generation":
            groups.append([f"gen:{a}", f"proj:{b}"])
            if c:
                policies.append([c, NO_DOMAIN, f"gen:{a}", "read"])
        elif kind == "project":
            if c:
                policies.append([c, NO_DOMAIN, f"proj:{a}", "read"])
            if b == "public":
                policies.append(["*", NO_DOMAIN, f"proj:{a}", "read"])
    return policies, roles, groups, active


class Decider:
    """casbin's decision as an app would make it: a suspended user is refused before casbin
    is asked (status is no RBAC rule), then casbin's enforce."""

    def __init__(self, enforcer, active: set[str]) -> None:
        self.enforcer = enforcer
        self.active = active

    def enforce(self, user: str, obj: str, act: str) -> bool:
        return user in self.active and self.enforcer.enforce(user, obj, act)


def _enforcer(policies: list, roles: list, groups: list):
    """An enforcer loaded the way a storage adapter loads one (casbin.persist.load_policy_line):
    rule by rule into the model, then the role graph built once. (Adding rules through
    add_policies checks each against every rule already held: minutes at this size.)"""
    try:
        import casbin
        from casbin import persist
    except ImportError as error:
        raise RuntimeError(
            "pycasbin is not installed: `make bench` installs it (pip install -e '.[bench]')"
        ) from error

    class RulesAdapter(persist.Adapter):
        def load_policy(self, model):
            for ptype, rules in (("p", policies), ("g", roles), ("g2", groups)):
                for rule in rules:
                    persist.load_policy_line(", ".join([ptype, *rule]), model)

    model = casbin.Model()
    model.load_model_from_text(MODEL)
    return casbin.Enforcer(model, RulesAdapter())


def _time_casbin(enforcer, pairs) -> list[int]:
    timings = []
    deadline = time.monotonic() + BUDGET_SECONDS
    for user, generation, _ in pairs:
        started = time.perf_counter_ns()
        enforcer.enforce(user, f"gen:{generation}", "read")
        timings.append(time.perf_counter_ns() - started)
        if time.monotonic() > deadline:
            break
    return timings


def _time_l1(pairs, truth) -> list[int]:
    """Per-call cost of an L1 hit, from batches of L1_BATCH calls (timer cost amortised)."""
    from backend.cache import Cache

    cache = Cache(l1_size=10_000, redis_client=None)
    cache.trust_again()
    keys = [f"authz:generation:{u}:{g}" for u, g, _ in pairs]
    for key, (u, g, _) in zip(keys, pairs, strict=True):
        answer = {"access_granted": truth[(u, g)]}
        cache.get_or_load(key, lambda answer=answer, u=u: (answer, [f"user:{u}"]))
    if any(cache.get_or_load(key, _never)[1] != "l1" for key in keys):
        raise RuntimeError("the L1 timing would not measure hits: an entry was not cached")
    per_call = []
    for start in range(0, L1_CALLS, L1_BATCH):
        batch = [keys[(start + i) % len(keys)] for i in range(L1_BATCH)]
        began = time.perf_counter_ns()
        for key in batch:
            cache.get_or_load(key, _never)
        per_call.append((time.perf_counter_ns() - began) // L1_BATCH)
    return per_call


def _never():
    raise AssertionError("an L1 hit must not load")


def _casbin_version() -> str:
    from importlib.metadata import version

    return version("pycasbin")


def _judge(casbin_summary, database: dict, l1_summary) -> dict:
    db = database["subject"]
    casbin_p50, l1_p50 = casbin_summary.p50, l1_summary.p50
    return {
        "casbin": casbin_summary.as_dict(),
        "database": db,
        "database_wrong_answers": database["wrong_answers"],
        "l1_hit": {key: round(value, 3) for key, value in l1_summary.as_dict().items()},
        "db_speedup": round(casbin_p50 / db["p50"], 2),
        "db_target": DB_SPEEDUP_TARGET,
        "db_met": casbin_p50 / db["p50"] > DB_SPEEDUP_TARGET,
        "l1_speedup": round(casbin_p50 / l1_p50),
        "l1_target": L1_SPEEDUP_TARGET,
        "l1_met": casbin_p50 / l1_p50 >= L1_SPEEDUP_TARGET,
    }


# report --------------------------------------------------------------------------------


def rows(figures: dict) -> list[dict]:
    casbin_cell = _cell(figures["casbin"])
    sizes = figures["casbin_sizes"]
    label = (
        f"pycasbin {figures['casbin_version']} RBAC with domains ({sizes['policies']:,} policies)"
    )
    return [
        {
            "scenario": f"decision cost: our uncached DB decision (one round trip) vs {label}",
            "measured": _cell(figures["database"]),
            "baseline": casbin_cell,
            "ratio_text": f"{figures['db_speedup']:.1f}{_TIMES} faster",
            "target": "faster",
            "met": figures["db_met"],
        },
        {
            "scenario": f"decision cost: an L1 hit (`Cache.get_or_load`) vs {label}",
            "measured": f"{figures['l1_hit']['p50']:.2f} / {figures['l1_hit']['p99']:.2f}"
            " (p50 / p99)",
            "baseline": casbin_cell,
            "ratio_text": f"{figures['l1_speedup']:,}{_TIMES} faster",
            "target": f"≥ {L1_SPEEDUP_TARGET:,}{_TIMES} faster",
            "met": figures["l1_met"],
        },
    ]


_TIMES = "\N{MULTIPLICATION SIGN}"


def _cell(summary: dict) -> str:
    return f"{summary['p50']:,.0f} / {summary['p95']:,.0f} / {summary['p99']:,.0f}"


def notes(figures: dict) -> list[str]:
    sizes = figures["casbin_sizes"]
    return [
        f"- Decision cost: {figures['pairs']} sampled pairs of active users over every access "
        "path; pycasbin "
        f"timed on {figures['casbin_decisions']} of them, holding {sizes['teams']:,} teams, "
        f"{sizes['policies']:,} policies ({sizes['link_policies']:,} team links) and "
        f"{sizes['role_links']:,} role and grouping links; casbin disagreed with the "
        f"database on {figures['disagreements']} pairs; the database's own answers were "
        f"wrong on {figures['database_wrong_answers']}. Times in µs (p50 / p95 / p99). "
        f"Casbin p50 on granted pairs {figures['casbin_granted']['p50']:,.0f} µs (it stops at "
        f"the first allowing policy), on denied pairs {figures['casbin_denied']['p50']:,.0f} µs "
        "(every policy is evaluated)."
    ]
