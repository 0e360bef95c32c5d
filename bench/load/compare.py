"""The regression check: a run's figures against a stored baseline of the same shape.

A run fails when any scenario had an unexpected error, when an endpoint of the baseline
was not exercised, or when an endpoint's p95 is more than ``max_p95_slowdown`` worse than
the baseline's (0.5: 50% slower) and at least ``min_p95_increase_ms`` slower in absolute
terms (so a 2 ms -> 4 ms wobble on a shared machine is not called a regression).
Scenarios or endpoints only in the run are listed as new and pass.

    python -m bench.load.compare RUN.json BASELINE.json [--max-slowdown 0.5]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Row:
    scenario: str
    endpoint: str
    baseline_p95: float | None
    run_p95: float | None
    verdict: str  # ok, new, SLOWER, MISSING, ERRORS

    @property
    def failed(self) -> bool:
        return self.verdict in ("SLOWER", "MISSING", "ERRORS")

    def change(self) -> str:
        if not self.baseline_p95 or self.run_p95 is None:
            return ""
        return f"{(self.run_p95 / self.baseline_p95 - 1) * 100:+.0f}%"


def compare(
    run: dict, baseline: dict, max_slowdown: float, min_increase_ms: float = 0.0
) -> list[Row]:
    rows = []
    for scenario, figures in sorted(run["scenarios"].items()):
        expected = baseline.get("scenarios", {}).get(scenario, {}).get("endpoints", {})
        endpoints = figures["endpoints"]
        for name in sorted(set(expected) | set(endpoints)):
            rows.append(
                _row(
                    scenario,
                    name,
                    expected.get(name),
                    endpoints.get(name),
                    max_slowdown,
                    min_increase_ms,
                )
            )
        if figures["unexpected_errors"]:
            kinds = {k: n for k, n in figures["unexpected_by_kind"].items() if n}
            rows.append(Row(scenario, f"unexpected errors {kinds}", 0, None, "ERRORS"))
    return rows


def _row(scenario, name, before, after, max_slowdown, min_increase_ms) -> Row:
    before_p95 = before.get("p95_ms") if before else None
    after_p95 = after.get("p95_ms") if after else None
    if after is None or not after.get("requests"):
        verdict = "MISSING" if before else "ok"
    elif before is None:
        verdict = "new"
    elif (
        before_p95 is not None
        and after_p95 > before_p95 * (1 + max_slowdown)
        and after_p95 - before_p95 >= min_increase_ms
    ):
        verdict = "SLOWER"
    else:
        verdict = "ok"
    if after and after.get("unexpected"):
        verdict = "ERRORS"
    return Row(scenario, name, before_p95, after_p95, verdict)


def table(rows: list[Row], max_slowdown: float) -> str:
    header = ("scenario", "endpoint", "baseline p95 ms", "run p95 ms", "change", "verdict")
    lines = [header] + [
        (
            row.scenario,
            row.endpoint,
            _ms(row.baseline_p95),
            _ms(row.run_p95),
            row.change(),
            row.verdict,
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
        for line in lines
    ]
    text.insert(1, "  ".join("-" * width for width in widths))
    failed = sum(row.failed for row in rows)
    text.append(
        f"{failed} failing row(s); a p95 more than {max_slowdown:.0%} above the baseline fails"
        if failed
        else f"no regression (p95 within {max_slowdown:.0%} of the baseline, no unexpected error)"
    )
    return "\n".join(text)


def _ms(value: float | None) -> str:
    return "" if value is None else f"{value:,.1f}"


def check(run: dict, baseline: dict, max_slowdown: float, min_increase_ms: float) -> bool:
    """Print the table; True when nothing failed."""
    rows = compare(run, baseline, max_slowdown, min_increase_ms)
    print(table(rows, max_slowdown))
    return not any(row.failed for row in rows)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("baseline", type=Path)
    parser.add_argument("--max-slowdown", type=float, default=1.0)
    parser.add_argument("--min-increase-ms", type=float, default=10.0)
    args = parser.parse_args(argv)
    run, baseline = (json.loads(path.read_text()) for path in (args.run, args.baseline))
    sys.exit(0 if check(run, baseline, args.max_slowdown, args.min_increase_ms) else 1)


if __name__ == "__main__":
    main()
