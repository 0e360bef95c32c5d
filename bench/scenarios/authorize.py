"""authorize_generation() in a PostgREST-style request vs the same request doing `select 1`.

Both sides are one round trip carrying begin, role and claims, the statement, commit; so
the ratio is what the authorization decision adds to the cheapest possible request.
Pairs are sampled over every access path (bench/sql/samples.sql) and shuffled.
"""

from __future__ import annotations

import random
from collections import defaultdict

import psycopg

from bench import explain
from bench.measure import interleaved
from bench.postgrest import Caller, user_claims
from bench.stats import ratio, summarize

TARGET = 3.0  # authorize_generation() at most 3x a select 1 round trip


def samples(url: str, per_path: int, seed: int = 7) -> list[tuple[str, str, str]]:
    with psycopg.connect(url) as conn:
        conn.execute("select setseed(0.7)")
        rows = conn.execute("select * from bench.authorize_samples(%s)", (per_path,)).fetchall()
    pairs = [(str(user), str(generation), method) for user, generation, method in rows]
    random.Random(seed).shuffle(pairs)  # noqa: S311 - an ordering, not a secret
    return pairs


def run(url: str, pairs: list[tuple[str, str, str]], iterations: int) -> dict:
    caller = Caller(url)
    try:
        subject = [
            caller.batch("authenticated", user_claims(user), caller.statement("authorize", (gen,)))
            for user, gen, _ in pairs
        ]
        baseline = [
            caller.batch("authenticated", user_claims(user), caller.statement("round_trip"))
            for user, _, _ in pairs
        ]
        wrong = _check_answers(caller, subject, pairs)
        took, base, picks = interleaved(caller, subject, baseline, iterations)
    finally:
        caller.close()
    measured, floor = summarize(took), summarize(base)
    by_method = defaultdict(list)
    for elapsed, pick in zip(took, picks, strict=True):
        by_method[pairs[pick][2]].append(elapsed)
    return {
        "subject": measured.as_dict(),
        "baseline": floor.as_dict(),
        "ratio": ratio(measured, floor, TARGET).as_dict(),
        "by_method": {
            method: summarize(values).as_dict() for method, values in sorted(by_method.items())
        },
        "pairs": len(pairs),
        "wrong_answers": wrong,
    }


def _check_answers(caller: Caller, subject: list[str], pairs: list[tuple[str, str, str]]) -> int:
    """Every sampled pair answers with the path the database's own rule predicts."""
    wrong = 0
    for batch, (_, _, expected) in zip(subject, pairs, strict=True):
        rows, _ = caller.run(batch)
        answer = rows[0][0]
        method = answer["access_method"] if answer["access_granted"] else "denied"
        wrong += method != expected
    return wrong


def measure(url: str, scale, verbose: bool) -> dict:
    """Sample pairs, time them, and keep the decision's inner plans for one granted pair."""
    pairs = samples(url, scale.authorize_samples_per_path)
    figures = run(url, pairs, scale.authorize_iterations)
    figures["plans"] = _inner_plans(url, pairs)
    if verbose:
        print("\n".join(figures["plans"]))
    return figures


def _inner_plans(url: str, pairs: list[tuple[str, str, str]]) -> list[str]:
    user, generation, _ = next((pair for pair in pairs if pair[2] == "generation_share"), pairs[0])
    caller = Caller(url)
    try:
        statement = caller.statement("authorize", (generation,))
        return explain.nested_plans(
            caller, caller.batch("authenticated", user_claims(user), statement)
        )
    finally:
        caller.close()
