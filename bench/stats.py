"""Latency samples to summaries and ratios."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Summary:
    """Latency of one measured operation, in microseconds."""

    n: int
    mean: float
    p50: float
    p95: float
    p99: float

    def as_dict(self) -> dict:
        return {key: round(value, 1) for key, value in asdict(self).items()}


def summarize(nanoseconds: list[int]) -> Summary:
    micros = sorted(value / 1000 for value in nanoseconds)
    return Summary(
        n=len(micros),
        mean=statistics.fmean(micros),
        p50=percentile(micros, 50),
        p95=percentile(micros, 95),
        p99=percentile(micros, 99),
    )


def percentile(ordered: list[float], pct: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not ordered:
        return float("nan")
    rank = max(1, round(pct / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass(frozen=True)
class Ratio:
    """measured / baseline at p50 and at the mean, judged against a target (lower is better)."""

    p50: float
    mean: float
    target: float

    @property
    def met(self) -> bool:
        return self.p50 <= self.target

    def as_dict(self) -> dict:
        return {
            "p50": round(self.p50, 2),
            "mean": round(self.mean, 2),
            "target": self.target,
            "met": self.met,
        }


def ratio(measured: Summary, baseline: Summary, target: float) -> Ratio:
    return Ratio(p50=measured.p50 / baseline.p50, mean=measured.mean / baseline.mean, target=target)
