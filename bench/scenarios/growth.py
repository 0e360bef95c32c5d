"""Growth: how each measured request's p50 changes from the first stage to the last.

A good plan reads the same few index pages at 10,000 generations and at 1,000,000; a
ratio near 1 says the cost does not depend on the table's size.
"""

from __future__ import annotations

from bench.queries import PAGE_SIZE

TARGET = 1.5  # at most 1.5x slower at 100x the data

MEASURED = {
    "authorize_generation()": ("authorize", "subject"),
    f"first page ({PAGE_SIZE} items) of the default list through RLS": ("list_page", "subject"),
    f"first page ({PAGE_SIZE} items) of the public feed through RLS": ("public_page", "subject"),
    f"first page ({PAGE_SIZE} items) of the default list, explicit filter (baseline)": (
        "list_page",
        "baseline",
    ),
}


def compare(stages: dict, sizes: tuple[int, int]) -> dict:
    first, last = (stages.get(str(size), {}) for size in sizes)
    out = {}
    for name, (scenario, side) in MEASURED.items():
        if scenario in first and scenario in last:
            before, after = first[scenario][side]["p50"], last[scenario][side]["p50"]
            out[name] = {
                "from": sizes[0],
                "to": sizes[1],
                "from_p50": before,
                "to_p50": after,
                "ratio": round(after / before, 2),
                "target": TARGET,
                "met": after / before <= TARGET,
            }
    return out
