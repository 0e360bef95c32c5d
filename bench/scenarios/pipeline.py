"""The FAL pipeline's costs on the fake FAL, measured by bench/pipeline.py's code.

Two scenarios share one run of it (one database of its own, one fake FAL):

- ``pipeline``: our submit job against the fake's own submit latency; signed webhooks
  handled per second in-process against the liveness route; submits per second drained by
  the job engine with 1 and with 2 worker processes.
- ``live_events``: a signed FAL webhook POSTed to a real gunicorn until the SSE ``status``
  event it causes reaches a client following the generation there, against the webhook
  POST's own response time.

The issue behind these figures sets no targets: they are reported, not judged.
"""

from __future__ import annotations

from bench.progress import say, step

SCENARIOS = ("pipeline", "live_events")
# which sections of bench.pipeline.measure() each scenario needs
SECTIONS = {"pipeline": ("submission", "webhooks", "engine"), "live_events": ("live_events",)}
NO_TARGET = "none set"
TIMES = "\N{MULTIPLICATION SIGN}"


def sections_for(chosen) -> tuple[str, ...]:
    return tuple(section for name in SCENARIOS if name in chosen for section in SECTIONS[name])


def run(scale, chosen) -> dict:
    """{scenario name: its figures} for the chosen pipeline scenarios, from one run."""
    # imported here: bench.pipeline points fal-client at the fake FAL when it is imported
    from bench import pipeline

    sections = sections_for(chosen)
    with step(f"FAL pipeline on the fake FAL: {', '.join(sections)}"):
        figures = pipeline.measure(scale.pipeline_generations, scale.live_event_trials, sections)
    for line in pipeline.text_lines(figures):
        say(line)
    results = {}
    if "pipeline" in chosen:
        results["pipeline"] = {key: figures[key] for key in SECTIONS["pipeline"]}
    if "live_events" in chosen:
        results["live_events"] = figures["live_events"]
    return results


def latency_cell(summary: dict) -> str:
    return f"{summary['p50']:.0f} / {summary['p95']:.0f} / {summary['p99']:.0f}"


def rows(figures: dict) -> list[dict]:
    submit, hooks, engine = figures["submission"], figures["webhooks"], figures["engine"]
    ratio = submit["subject"]["p50"] / submit["baseline"]["p50"]
    one, two = engine["1"], engine["2"]
    return [
        {
            "scenario": "our FAL submit job (read, breaker, fal-client submit, record) vs the "
            "fake FAL's submit to a bare httpx client",
            "measured": latency_cell(submit["subject"]),
            "baseline": latency_cell(submit["baseline"]),
            "ratio_text": f"{ratio:.2f}{TIMES} (+{submit['overhead_p50_us'] / 1000:.2f} ms p50)",
            "target": NO_TARGET,
            "met": None,
        },
        {
            "scenario": "signed FAL webhooks (verify, parse, record) vs `GET health/live`, "
            "in-process, one thread",
            "measured": f"{hooks['subject_per_second']:,.0f} req/s",
            "baseline": f"{hooks['baseline_per_second']:,.0f} req/s",
            "ratio": hooks["ratio"],
            "ratio_is_share": True,
            "target": NO_TARGET,
            "met": None,
        },
        {
            "scenario": f"job engine: generations submitted to FAL, 2 worker processes vs 1 "
            f"({one['count']} generations)",
            "measured": f"{two['submits_per_second']:,.0f} submits/s",
            "baseline": f"{one['submits_per_second']:,.0f} submits/s",
            "ratio": two["submits_per_second"] / one["submits_per_second"],
            "target": NO_TARGET,
            "met": None,
        },
    ]


def notes(figures: dict) -> list[str]:
    submit, engine = figures["submission"], figures["engine"]
    return [
        f"- FAL pipeline: {submit['subject']['n']} submits and webhooks on the fake FAL "
        f"(HTTPS on loopback); the submit overhead is our job's p50 minus the fake's p50; the "
        f"job engine's clock runs from the commit of {engine['1']['count']} generations until "
        f"the last is queued at FAL: 1 worker {engine['1']['seconds']:.2f} s, 2 workers "
        f"{engine['2']['seconds']:.2f} s."
    ]


def live_rows(figures: dict) -> list[dict]:
    return [
        {
            "scenario": f"signed FAL webhook POST to its SSE `status` event at a client "
            f"following the generation (gunicorn, {figures['trials']} trials) vs the POST's "
            "own response",
            "measured": latency_cell(figures["subject"]),
            "baseline": latency_cell(figures["baseline"]),
            "ratio": figures["ratio_p50"],
            "target": NO_TARGET,
            "met": None,
        }
    ]


def live_notes(figures: dict) -> list[str]:
    subject = figures["subject"]
    return [
        f"- Webhook to live event: p50 {subject['p50'] / 1000:.2f} ms, p99 "
        f"{subject['p99'] / 1000:.2f} ms from sending the webhook to reading the event, on "
        "gunicorn (2 workers x 4 threads); the stream and the webhook use separate "
        "connections, and the event reaches the stream through Postgres NOTIFY."
    ]
