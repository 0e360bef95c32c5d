"""Every request of a scenario, as locust reports it, turned into the run's figures.

Per endpoint name: requests, p50/p95/p99 and max latency (ms, nearest rank over every
sample), requests per second over the scenario's run, the expected 4xx by status, and the
unexpected errors by kind: ``5xx``, ``unexpected_4xx``, ``timeout``, ``connection``,
``wrong_answer`` (a planned status whose body breaks the rule), ``task_error`` (the
scenario's own code raised).
"""

from __future__ import annotations

from collections import Counter, defaultdict

from bench.stats import percentile

UNEXPECTED_KINDS = (
    "5xx",
    "unexpected_4xx",
    "timeout",
    "connection",
    "wrong_answer",
    "task_error",
)
SAMPLES_KEPT = 20  # unexpected errors quoted in the results, the first ones seen
TASK_ERRORS = "(task code)"


class Recorder:
    """Listens to locust's request and user_error events."""

    def __init__(self) -> None:
        self.times: dict[str, list[float]] = defaultdict(list)
        self.expected: dict[str, Counter] = defaultdict(Counter)
        self.unexpected: dict[str, Counter] = defaultdict(Counter)
        self.samples: list[str] = []

    def attach(self, events) -> None:
        events.request.add_listener(self.on_request)
        events.user_error.add_listener(self.on_user_error)

    def on_request(self, name, response_time, response=None, exception=None, **_ignored):
        self.times[name].append(float(response_time))
        status = getattr(response, "status_code", 0) or 0
        if exception is None:
            if status >= 400:
                self.expected[name][str(status)] += 1
            return
        kind = classify(status, exception)
        self.unexpected[name][kind] += 1
        self.sample(f"{name}: {kind}: {exception!r}"[:400])

    def on_user_error(self, user_instance, exception, tb, **_ignored):
        self.unexpected[TASK_ERRORS]["task_error"] += 1
        self.sample(f"{type(user_instance).__name__}: {exception!r}"[:400])

    def sample(self, line: str) -> None:
        if len(self.samples) < SAMPLES_KEPT:
            self.samples.append(line)

    def summary(self, seconds: float) -> dict:
        names = sorted(set(self.times) | set(self.unexpected))
        endpoints = {name: self.endpoint(name, seconds) for name in names}
        unexpected = Counter()
        for counts in self.unexpected.values():
            unexpected.update(counts)
        requests = sum(len(times) for times in self.times.values())
        return {
            "elapsed_seconds": round(seconds, 2),
            "requests": requests,
            "requests_per_second": round(requests / seconds, 1) if seconds else 0.0,
            "expected_4xx": sum(sum(c.values()) for c in self.expected.values()),
            "unexpected_errors": sum(unexpected.values()),
            "unexpected_by_kind": {kind: unexpected[kind] for kind in UNEXPECTED_KINDS},
            "unexpected_samples": list(self.samples),
            "endpoints": endpoints,
        }

    def endpoint(self, name: str, seconds: float) -> dict:
        ordered = sorted(self.times.get(name, ()))
        figures = {
            "requests": len(ordered),
            "requests_per_second": round(len(ordered) / seconds, 2) if seconds else 0.0,
        }
        if ordered:
            for pct in (50, 95, 99):
                figures[f"p{pct}_ms"] = round(percentile(ordered, pct), 1)
            figures["max_ms"] = round(ordered[-1], 1)
        figures["expected_4xx"] = dict(sorted(self.expected[name].items()))
        figures["unexpected"] = dict(sorted(self.unexpected[name].items()))
        return figures


def classify(status: int, exception: BaseException) -> str:
    kind = getattr(exception, "kind", None)  # a flow says what went wrong itself
    if kind in UNEXPECTED_KINDS:
        return kind
    if type(exception).__name__ == "WrongAnswer":
        return "wrong_answer"
    if status >= 500:
        return "5xx"
    if 400 <= status < 500:
        return "unexpected_4xx"
    text = f"{type(exception).__name__} {exception}".lower()
    return "timeout" if "timeout" in text or "timed out" in text else "connection"
