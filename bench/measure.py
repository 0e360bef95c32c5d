"""Timing loops shared by the scenarios: subject and baseline interleaved, warm-up discarded.

Interleaving (A, B, B, A, ...) spreads the machine's noise evenly over both sides, so
their ratio is fair even when the absolute figures drift during a run.
"""

from __future__ import annotations

from collections.abc import Sequence

from bench.postgrest import Caller

WARMUP_FRACTION = 0.1


def interleaved(caller: Caller, subject: Sequence[str], baseline: Sequence[str], iterations: int):
    """Run prepared batches round-robin; return (subject_ns, baseline_ns, subject_rows_by_index).

    subject[i % len] and baseline[i % len] are sent once per iteration, alternating which
    goes first; the first WARMUP_FRACTION of iterations are not recorded.
    """
    warmup = int(iterations * WARMUP_FRACTION)
    subject_ns: list[int] = []
    baseline_ns: list[int] = []
    indexes: list[int] = []
    for i in range(warmup + iterations):
        pick = i % len(subject)
        if i % 2:
            _, base = caller.run(baseline[pick % len(baseline)])
            _, took = caller.run(subject[pick])
        else:
            _, took = caller.run(subject[pick])
            _, base = caller.run(baseline[pick % len(baseline)])
        if i >= warmup:
            subject_ns.append(took)
            baseline_ns.append(base)
            indexes.append(pick)
    return subject_ns, baseline_ns, indexes
