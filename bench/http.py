"""HTTP scenarios' tools: the tests' gunicorn launcher (``harness.servers.Server``), and wrk
with its figures parsed.

    with Server(database_url, env={...}) as server:
        floor = wrk(server.url("/api/v1/health/live"), connections=32, seconds=15)
        authorize = wrk(server.url("/"), connections=32, seconds=15,
                        script=POST_BEARER, script_args=[requests_file])

The server is gunicorn with the gthread worker, as the Procfile runs it: 2 workers x 4
threads on this 2-core machine unless told otherwise.

An HTTP figure is never one run against another run made later: the machine is shared and
its speed drifts over seconds. ``alternate`` runs the subject and its floor in short slices,
in turn, and each round gives one paired ratio; a row reports the median of those ratios and
their spread (min-max)::

    paired = alternate(lambda: wrk(subject_url, ...), lambda: wrk(floor_url, ...), rounds=5)
    paired.ratio("requests_per_second")  # {"median": 0.52, "min": 0.48, "max": 0.55, ...}
"""

from __future__ import annotations

import re
import statistics
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

POST_BEARER = Path(__file__).resolve().parent / "wrk" / "post_bearer.lua"
POST_JSON = Path(__file__).resolve().parent / "wrk" / "post_json.lua"


@dataclass(frozen=True)
class LoadResult:
    """What wrk measured: throughput, latency percentiles in ms, and failures."""

    requests_per_second: float
    requests: int
    p50_ms: float
    p75_ms: float
    p90_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int

    def as_dict(self) -> dict:
        return {
            key: round(value, 2) if isinstance(value, float) else value
            for key, value in self.__dict__.items()
        }


def wrk(
    url: str,
    *,
    connections: int,
    seconds: int,
    threads: int = 2,
    script: Path | None = None,
    script_args: list[str] | None = None,
) -> LoadResult:
    """Run wrk --latency against url and parse its report."""
    command = [
        "wrk",
        f"-t{min(threads, connections)}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
    ]
    if script:
        command += ["-s", str(script)]
    command.append(url)
    if script_args:
        command += ["--", *script_args]
    done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=seconds + 60)  # noqa: S603
    return parse_wrk(done.stdout)


LATENCY = re.compile(r"^\s*(50|75|90|99)%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)
TO_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def parse_wrk(report: str) -> LoadResult:
    percentiles = {
        int(pct): float(value) * TO_MS[unit] for pct, value, unit in LATENCY.findall(report)
    }
    rate = re.search(r"Requests/sec:\s+([\d.]+)", report)
    total = re.search(r"(\d+) requests in", report)
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", report)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", report
    )
    if not (rate and total and len(percentiles) == 4):
        raise RuntimeError(f"could not read wrk's report:\n{report}")
    return LoadResult(
        requests_per_second=float(rate.group(1)),
        requests=int(total.group(1)),
        p50_ms=percentiles[50],
        p75_ms=percentiles[75],
        p90_ms=percentiles[90],
        p99_ms=percentiles[99],
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(count) for count in errors.groups()) if errors else 0,
    )


MIN_ROUNDS = 3
SLICE_SECONDS = 3  # one slice of one side; a round is a slice of each
PERCENTILES = ("p50_ms", "p75_ms", "p90_ms", "p99_ms")


@dataclass(frozen=True)
class Paired:
    """A subject and its floor, measured in alternating slices: one pair per round."""

    subject: list[LoadResult]
    floor: list[LoadResult]

    def ratios(self, metric: str) -> list[float]:
        """subject / floor of one metric, per round; a round whose floor slice measured
        nothing (no request answered within it) gives no ratio."""
        return [
            getattr(subject, metric) / getattr(floor, metric)
            for subject, floor in zip(self.subject, self.floor, strict=True)
            if getattr(floor, metric) > 0
        ]

    def ratio(self, metric: str) -> dict:
        """The median of the paired ratios, and their spread (its rounds: those with one)."""
        ratios = self.ratios(metric)
        if not ratios:
            raise RuntimeError(f"no round's floor slice measured {metric}: no ratio to give")
        return spread(ratios)

    def subject_spread(self, metric: str) -> dict:
        """The subject's own figure (an absolute target): its median slice and spread."""
        return spread([getattr(subject, metric) for subject in self.subject])

    def as_dict(self) -> dict:
        return {
            "rounds": len(self.subject),
            "subject": combine(self.subject),
            "floor": combine(self.floor),
            "subject_slices": [load.as_dict() for load in self.subject],
            "floor_slices": [load.as_dict() for load in self.floor],
        }


def alternate(
    subject: Callable[[], LoadResult], floor: Callable[[], LoadResult], rounds: int
) -> Paired:
    """Run subject and floor slices in turn, swapping which goes first every round.

    The swap (subject-floor, floor-subject, ...) keeps a steady drift in the machine's
    speed from favouring either side.
    """
    if rounds < MIN_ROUNDS:
        raise ValueError(f"a paired figure needs at least {MIN_ROUNDS} rounds, not {rounds}")
    subjects: list[LoadResult] = []
    floors: list[LoadResult] = []
    for round_number in range(rounds):
        if round_number % 2:
            floors.append(floor())
            subjects.append(subject())
        else:
            subjects.append(subject())
            floors.append(floor())
    return Paired(subjects, floors)


def rounds_and_slice(seconds: int) -> tuple[int, int]:
    """Rounds, and seconds per slice, for ``seconds`` of load on each side (3 rounds or more)."""
    rounds = max(MIN_ROUNDS, seconds // SLICE_SECONDS)
    return rounds, max(1, seconds // rounds)


def spread(values: list[float]) -> dict:
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
        "rounds": len(values),
    }


def combine(loads: list[LoadResult]) -> dict:
    """Slices as one figure: the median slice's throughput and percentiles, summed counts."""
    combined = {
        "requests": sum(load.requests for load in loads),
        "requests_per_second": round(
            statistics.median(load.requests_per_second for load in loads), 1
        ),
        "non_2xx": sum(load.non_2xx for load in loads),
        "socket_errors": sum(load.socket_errors for load in loads),
    }
    for key in PERCENTILES:
        combined[key] = round(statistics.median(getattr(load, key) for load in loads), 3)
    return combined
