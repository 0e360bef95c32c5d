"""The report's PNG plots, drawn from the results dict with matplotlib's Agg canvas.

Each plot draws only from figures the run measured and is skipped when they are missing
(a run of chosen scenarios draws what it can). Figures are built without pyplot, so no
global state or display is involved and the drawing is the same on any machine.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

DPI = 110
PERCENTILES = ("p50", "p95", "p99")
FEEDS = {"list_page": "default list", "public_page": "public feed"}


def draw(results: dict, folder: Path) -> list[tuple[str, str]]:
    """Every plot the results allow, as (title, file name); old plots are removed first."""
    for old in folder.glob("*.png"):
        old.unlink()
    drawn = []
    for name, (title, plot) in PLOTS.items():
        figure = plot(results)
        if figure is not None:
            FigureCanvasAgg(figure).print_png(str(folder / f"{name}.png"))
            drawn.append((title, f"{name}.png"))
    return drawn


def latency_by_path(results: dict) -> Figure | None:
    """p50/p95/p99 of each measured request at the largest stage, grouped by path."""
    stages = results.get("stages", {})
    if not stages:
        return None
    size = max(stages, key=int)
    figures = stages[size]
    paths: dict[str, dict] = {}
    if "authorize" in figures:
        for method, summary in figures["authorize"]["by_method"].items():
            paths[f"authorize\n{method}"] = summary
        paths["select 1\n(baseline)"] = figures["authorize"]["baseline"]
    for feed, label in FEEDS.items():
        if feed in figures:
            paths[f"{label}\nthrough RLS"] = figures[feed]["subject"]
            paths[f"{label}\nexplicit"] = figures[feed]["baseline"]
    if not paths:
        return None
    figure = Figure(figsize=(max(7, 1.1 * len(paths)), 4.8), dpi=DPI)
    axes = figure.add_subplot()
    width = 0.27
    for offset, percentile in enumerate(PERCENTILES):
        positions = [index + (offset - 1) * width for index in range(len(paths))]
        values = [summary[percentile] for summary in paths.values()]
        axes.bar(positions, values, width, label=percentile)
    axes.set_xticks(range(len(paths)), list(paths), fontsize=7)
    axes.set_yscale("log")
    axes.set_ylabel("µs per request (log scale)")
    axes.set_title(
        f"Latency per path, {int(size):,} generations (PostgREST-style requests, one round trip)"
    )
    axes.legend()
    axes.grid(axis="y", which="both", alpha=0.3)
    figure.tight_layout()
    return figure


def throughput_by_concurrency(results: dict) -> Figure | None:
    """Uncached HTTP authorize and the floor: req/s and latency at each connection count."""
    sweep = results.get("http_concurrency", {}).get("by")
    if not sweep:
        return None
    counts = [int(count) for count in sweep]
    figure = Figure(figsize=(10, 4.5), dpi=DPI)
    rate, latency = figure.subplots(1, 2)
    for key, label in (("throughput", "authorize, uncached"), ("floor_throughput", "floor")):
        medians = [level[key]["median"] for level in sweep.values()]
        below = [m - level[key]["min"] for m, level in zip(medians, sweep.values(), strict=True)]
        above = [level[key]["max"] - m for m, level in zip(medians, sweep.values(), strict=True)]
        rate.errorbar(counts, medians, yerr=[below, above], marker="o", capsize=3, label=label)
    rate.set_title("Throughput (median slice; bars: rounds' min-max)")
    rate.set_ylabel("requests/s")
    for side, label in (("subject", "authorize"), ("floor", "floor")):
        for percentile, style in (("p50_ms", "-"), ("p99_ms", "--")):
            values = [level[side][percentile] for level in sweep.values()]
            latency.plot(counts, values, style, marker="o", label=f"{label} {percentile[:3]}")
    latency.set_title("Latency")
    latency.set_ylabel("ms (log scale)")
    latency.set_yscale("log")
    for axes in (rate, latency):
        axes.set_xscale("log", base=2)
        axes.set_xticks(counts, [str(count) for count in counts])
        axes.set_xlabel("wrk connections")
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
    figure.suptitle("HTTP authorize (cache off) against concurrency, one gunicorn server")
    figure.tight_layout()
    return figure


def cost_by_size(results: dict) -> Figure | None:
    """p50 of each measured request at each stage of the generations table."""
    stages = results.get("stages", {})
    if len(stages) < 2:
        return None
    sizes = sorted(stages, key=int)
    series = {
        "authorize_generation()": ("authorize", "subject"),
        "select 1 (baseline)": ("authorize", "baseline"),
        "default list, RLS": ("list_page", "subject"),
        "default list, explicit": ("list_page", "baseline"),
        "public feed, RLS": ("public_page", "subject"),
        "public feed, explicit": ("public_page", "baseline"),
    }
    figure = Figure(figsize=(9.5, 4.8), dpi=DPI)
    axes = figure.add_subplot()
    plotted = 0
    for label, (scenario, side) in series.items():
        if all(scenario in stages[size] for size in sizes):
            values = [stages[size][scenario][side]["p50"] for size in sizes]
            axes.plot([int(size) for size in sizes], values, marker="o", label=label)
            plotted += 1
    if not plotted:
        return None
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xticks([int(size) for size in sizes], [f"{int(size):,}" for size in sizes])
    axes.set_xlabel("generations in the table (log scale)")
    axes.set_ylabel("p50 µs per request (log scale)")
    axes.set_title("Cost against data size")
    axes.grid(which="both", alpha=0.3)
    axes.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    figure.tight_layout()
    return figure


def hit_rate_over_time(results: dict) -> Figure | None:
    """Hit rate per epoch (one permission change, then its reads) and overall, over time."""
    hit_rate = results.get("hit_rate", {})
    series = hit_rate.get("series")
    if not series:
        return None
    seconds = [point["seconds"] for point in series]
    per_epoch = [point["hits"] / max(point["reads"], 1) for point in series]
    running, hits, reads = [], 0, 0
    for point in series:
        hits, reads = hits + point["hits"], reads + point["reads"]
        running.append(hits / max(reads, 1))
    figure = Figure(figsize=(8, 4.5), dpi=DPI)
    axes = figure.add_subplot()
    axes.plot(seconds, per_epoch, linewidth=0.8, alpha=0.6, label="per change (its reads)")
    axes.plot(seconds, running, linewidth=2, label="since the start")
    if "target" in hit_rate:
        axes.axhline(hit_rate["target"], color="grey", linestyle="--", label="target")
    axes.set_ylim(min(0.8, min(per_epoch) - 0.02), 1.005)
    axes.yaxis.set_major_formatter(PercentFormatter(xmax=1))
    axes.set_xlabel("seconds into the measured run")
    axes.set_ylabel("answers served from the cache")
    axes.set_title("Hit rate over time, mixed workload (99% reads, 1% permission changes)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    return figure


PLOTS = {
    "latency_by_path": ("Latency percentiles per path", latency_by_path),
    "throughput_by_concurrency": ("Throughput against concurrency", throughput_by_concurrency),
    "cost_by_size": ("Cost against data size", cost_by_size),
    "hit_rate_over_time": ("Hit rate over time", hit_rate_over_time),
}
