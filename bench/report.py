"""The report folder, bench/results/: report.md (the table, notes and plans), the PNG plots
beside it, and results.json (every figure measured).

A run rewrites results.json and report.md as each scenario finishes, so a run stopped
later still leaves its figures; the plots are drawn once, at the end.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench import anchors
from bench.explain import outline
from bench.queries import PAGE_SIZE
from bench.scenarios import public_count

RESULTS = Path(__file__).resolve().parent / "results"
REPORT, DATA = "report.md", "results.json"
TIMES = "\N{MULTIPLICATION SIGN}"
FEEDS = {"list_page": "the default list", "public_page": "the public feed"}
# the anchor of a scenario's rows when a row does not name its own
MODULE_ANCHORS = {
    "http_authorize": anchors.ORIGINAL_AUTHORIZE,
    "http_cache": anchors.POSTGREST,
    "hit_rate": anchors.ORIGINAL_HIT_RATE,
    "casbin": anchors.CASBIN,
    "public_count": anchors.RLS_GUIDE,
}


def write(results: dict, plots: bool = False) -> tuple[Path, Path]:
    """results.json and report.md; with plots, the PNGs too (report.md then shows them)."""
    RESULTS.mkdir(exist_ok=True)
    json_path, md_path = RESULTS / DATA, RESULTS / REPORT
    json_path.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    images = []
    if plots:
        from bench import plots as drawing  # matplotlib loads only when plots are drawn

        images = drawing.draw(results, RESULTS)
    md_path.write_text(markdown(results, images), encoding="utf-8")
    return json_path, md_path


def markdown(results: dict, images: list[tuple[str, str]] = ()) -> str:
    lines = [
        f"Measured by `make bench` ({results['scale']}) on {results['machine']}, "
        f"{results.get('finished_at', 'still running')}.",
        *(
            [f"**Stopped early** ({results['stopped_by']}): what follows is what was measured."]
            if "stopped_by" in results
            else []
        ),
        "Times are per request in µs (p50 / p95 / p99) unless stated; ratios compare figures "
        "taken in the same run. The anchor is a reference figure to read a row against (the "
        "original service's claims and measurements, published figures of similar systems); "
        "the target is what this service must meet.",
        "",
        "| figure | measured | baseline | ratio | anchor | target | |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [_row(row) for row in rows(results)]
    lines += ["", *notes(results), ""]
    for title, name in images:
        lines += [f"### {title}", "", f"![{title}]({name})", ""]
    lines += plan_section(results)
    return "\n".join(lines) + "\n"


def rows(results: dict) -> list[dict]:
    """One table row per judged figure, in reading order."""
    table = []
    for stage, figures in results.get("stages", {}).items():
        label = f"{int(stage):,} generations"
        if "authorize" in figures:
            table.append(
                _ratio_row(
                    f"`authorize_generation()` vs `select 1` request, {label}",
                    figures["authorize"],
                    anchors.ORIGINAL_AUTHORIZE,
                )
            )
        for feed, name in FEEDS.items():
            if feed in figures:
                table.append(
                    _ratio_row(
                        f"first page ({PAGE_SIZE} items) of {name} through RLS vs explicit "
                        f"filter as service role, {label}",
                        figures[feed],
                        anchors.POSTGREST,
                    )
                )
    for name, growth in results.get("growth", {}).items():
        table.append(
            {
                "scenario": f"growth {growth['from']:,} → {growth['to']:,} generations: {name}",
                "measured": f"{growth['to_p50']:.0f} µs p50",
                "baseline": f"{growth['from_p50']:.0f} µs p50",
                "ratio": growth["ratio"],
                "anchor": anchors.RLS_GUIDE,
                "target": growth["target"],
                "met": growth["met"],
            }
        )
    for name, module in scenario_modules().items():
        if name in results:
            table += _anchored(module.rows(results[name]), name)
    if "public_count" in results:
        table += _anchored(public_count.rows(results["public_count"]), "public_count")
    return table


def _anchored(rows: list[dict], name: str) -> list[dict]:
    for row in rows:
        row.setdefault("anchor", MODULE_ANCHORS.get(name, anchors.NONE))
    return rows


def scenario_modules() -> dict:
    """Scenarios that render their own rows() and notes(), in reading order."""
    from bench.scenarios import (
        casbin_cost,
        hit_rate,
        http_authorize,
        http_cache,
        http_concurrency,
        live_events,
        login,
        memory,
        pipeline,
        propagation,
        tokens,
    )

    return {
        "tokens": tokens,
        "http_authorize": http_authorize,
        "http_concurrency": http_concurrency,
        "login": login,
        "http_cache": http_cache,
        "memory": memory,
        "hit_rate": hit_rate,
        "casbin": casbin_cost,
        "propagation": propagation,
        "pipeline": pipeline,
        "live_events": live_events,
    }


def _ratio_row(scenario: str, figures: dict, anchor: str) -> dict:
    judged = figures["ratio"]
    return {
        "scenario": scenario,
        "measured": _latency_cell(figures["subject"]),
        "baseline": _latency_cell(figures["baseline"]),
        "ratio": judged["p50"],
        "anchor": anchor,
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
    anchor = row.get("anchor", anchors.NONE)
    cells = [row["scenario"], row["measured"], row["baseline"], ratio, anchor, target, verdict]
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
        "a first page probes each reachable project once for its newest row, reads a page of "
        "own work and of shares, and reads again only the projects that reach the page: its "
        "cost follows the number of sources, not these counts."
    ]
