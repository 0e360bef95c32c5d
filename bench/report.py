"""bench/results/latest.json (everything) and latest.md (the table the README shows)."""

from __future__ import annotations

import json
from pathlib import Path

from bench.explain import outline
from bench.scenarios import public_count

RESULTS = Path(__file__).resolve().parent / "results"
TIMES = "\N{MULTIPLICATION SIGN}"
FEEDS = {"list_page": "the default list", "public_page": "the public feed"}


def write(results: dict) -> tuple[Path, Path]:
    RESULTS.mkdir(exist_ok=True)
    json_path, md_path = RESULTS / "latest.json", RESULTS / "latest.md"
    json_path.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    md_path.write_text(markdown(results), encoding="utf-8")
    return json_path, md_path


def markdown(results: dict) -> str:
    lines = [
        f"Measured by `make bench` ({results['scale']}) on {results['machine']}, "
        f"{results.get('finished_at', 'still running')}.",
        "Times are per request in µs (p50 / p95 / p99); ratios compare p50s taken in the same run.",
        "",
        "| scenario | measured | baseline | ratio | target | |",
        "|---|---|---|---|---|---|",
    ]
    lines += [_row(row) for row in rows(results)]
    lines += ["", *notes(results), "", *plan_section(results)]
    return "\n".join(lines) + "\n"


def rows(results: dict) -> list[dict]:
    """One table row per judged figure, in reading order."""
    table = []
    for stage, figures in results.get("stages", {}).items():
        label = f"{int(stage):,} generations"
        if "authorize" in figures:
            table.append(
                _ratio_row(
                    f"`authorize_generation()` vs `select 1` request, {label}", figures["authorize"]
                )
            )
        for feed, name in FEEDS.items():
            if feed in figures:
                table.append(
                    _ratio_row(
                        f"first page of {name} through RLS vs explicit filter as service role, "
                        f"{label}",
                        figures[feed],
                    )
                )
    for name, growth in results.get("growth", {}).items():
        table.append(
            {
                "scenario": f"growth {growth['from']:,} → {growth['to']:,} generations: {name}",
                "measured": f"{growth['to_p50']:.0f} µs p50",
                "baseline": f"{growth['from_p50']:.0f} µs p50",
                "ratio": growth["ratio"],
                "target": growth["target"],
                "met": growth["met"],
            }
        )
    for name, module in scenario_modules().items():
        if name in results:
            table += module.rows(results[name])
    if "public_count" in results:
        table += public_count.rows(results["public_count"])
    return table


def scenario_modules() -> dict:
    """Scenarios that render their own rows() and notes(), in reading order."""
    from bench.scenarios import (
        casbin_cost,
        hit_rate,
        http_authorize,
        http_cache,
        live_events,
        memory,
        pipeline,
        propagation,
    )

    return {
        "http_authorize": http_authorize,
        "http_cache": http_cache,
        "memory": memory,
        "hit_rate": hit_rate,
        "casbin": casbin_cost,
        "propagation": propagation,
        "pipeline": pipeline,
        "live_events": live_events,
    }


def _ratio_row(scenario: str, figures: dict) -> dict:
    judged = figures["ratio"]
    return {
        "scenario": scenario,
        "measured": _latency_cell(figures["subject"]),
        "baseline": _latency_cell(figures["baseline"]),
        "ratio": judged["p50"],
        "target": judged["target"],
        "met": judged["met"],
    }


def _row(row: dict) -> str:
    target = row["target"] if isinstance(row["target"], str) else f"≤ {row['target']}{TIMES}"
    if "ratio_text" in row:
        ratio = row["ratio_text"]
    else:
        ratio = _ratio_text(row["ratio"], row)
        if "spread" in row:  # a median of paired rounds: show how far the rounds ranged
            low, high = (_ratio_text(value, row) for value in row["spread"])
            ratio += f" ({low}\N{EN DASH}{high})"
    # met is None for a figure reported without a target
    verdict = "" if row["met"] is None else "met" if row["met"] else "**missed**"
    cells = [row["scenario"], row["measured"], row["baseline"], ratio, target, verdict]
    return "| " + " | ".join(cells) + " |"


def _ratio_text(value: float, row: dict) -> str:
    if row.get("ratio_is_share"):
        return f"{value:.0%}"
    return f"{value:.2f}{row.get('ratio_unit', TIMES)}"


def _latency_cell(summary: dict) -> str:
    return f"{summary['p50']:.0f} / {summary['p95']:.0f} / {summary['p99']:.0f}"


def notes(results: dict) -> list[str]:
    out = []
    dataset = results.get("dataset", {})
    if dataset:
        last = dataset[max(dataset, key=int)]
        out.append(
            f"Dataset: {last['users']:,} users ({last['suspended_users']:,} suspended), "
            f"{last['teams']:,} teams ({last['team_members']:,} memberships), "
            f"{last['projects']:,} projects ({last['team_projects']:,} team, "
            f"{last['public_projects']:,} public; {last['project_team_links']:,} team links), "
            f"{last['generations']:,} generations ({last['public_generations']:,} public), "
            f"{last['generation_shares']:,} shares; access drift after loading: "
            f"{last['access_drift']}."
        )
    if "access_drift" in results:
        out.append(
            f"- `private.check_access()` after the whole workload: {results['access_drift']} "
            "rows of drift."
        )
    out += growth_note(results)
    for name, module in scenario_modules().items():
        if name in results:
            out += module.notes(results[name])
    if "public_count" in results:
        out += public_count.notes(results["public_count"])
    for stage, figures in results.get("stages", {}).items():
        if "authorize" in figures:
            methods = ", ".join(
                f"{method} {summary['p50']:.0f}"
                for method, summary in figures["authorize"]["by_method"].items()
            )
            out.append(
                f"- {int(stage):,} generations, authorize p50 by path (µs): {methods}; "
                f"wrong answers: {figures['authorize']['wrong_answers']}."
            )
        for feed, name in FEEDS.items():
            if feed in figures:
                page = figures[feed]
                visible = page["visible_per_user"]
                out.append(
                    f"- {int(stage):,} generations, {name}: {page['users']} users whose default "
                    f"list holds {visible['min']:,} to {visible['max']:,} generations "
                    f"(median {visible['median']:,}); "
                    f"pages differing between RLS and explicit: {page['pages_differing']}."
                )
    return out


def plan_section(results: dict) -> list[str]:
    """Outlines of the plans at the largest stage: what the figures are made of."""
    stages = results.get("stages", {})
    if not stages:
        return []
    figures = stages[max(stages, key=int)]
    out = []
    for feed, title in FEEDS.items():
        for name, plan in figures.get(feed, {}).get("plans", {}).items():
            heading = f"First page of {title}, {name.replace('_', ' ')}:"
            out += [heading, "```", *outline(plan), "```"]
    inner = [
        notice
        for notice in figures.get("authorize", {}).get("plans", [])
        if "with target as" in notice
    ]
    if inner:
        lines = inner[0].splitlines()
        start = next(i for i, line in enumerate(lines) if "(cost=" in line or "(actual" in line)
        plan = lines[start:]
        out += [
            "authorize_generation(): plan of its inner query (private.generation_access):",
            "```",
        ]
        out += [*outline(plan), "```"]
    return out


def growth_note(results: dict) -> list[str]:
    """How much more each sampled user's default list holds at the last stage."""
    medians = [
        figures["list_page"]["visible_per_user"]["median"]
        for figures in results.get("stages", {}).values()
        if "list_page" in figures
    ]
    if len(medians) < 2 or not medians[0]:
        return []
    return [
        f"- The median sampled user's default list holds {medians[0]:,} generations at the "
        f"first stage and {medians[-1]:,} at the last ({medians[-1] / medians[0]:.0f}{TIMES}); "
        "a first page reads at most one page per source (own work, each reachable project, "
        "shares), so its cost follows the number of sources, not these counts."
    ]
