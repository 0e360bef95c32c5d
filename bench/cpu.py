"""Where an HTTP figure's time went: CPU per request of the server and of Postgres.

Around each wrk slice, ``CpuMeter`` reads the CPU time (user + system, from
/proc/<pid>/stat) of every gunicorn worker and of every Postgres backend connected to the
benchmark's database, and divides what the slice spent by its requests. Postgres must run
on this machine, as it does for ``make bench``; elsewhere its share reads 0.

    meter = CpuMeter(server, database_url)
    paired = alternate(meter.around("subject", subject), meter.around("floor", floor), 5)
    meter.medians()  # {"subject": {"app_us": 1080, "postgres_us": 290}, "floor": {...}}
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable
from pathlib import Path

import psycopg

from bench.http import LoadResult
from harness.servers import Server

TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")
BACKENDS = (
    "select pid from pg_stat_activity"
    " where datname = pg_catalog.current_database() and pid <> pg_catalog.pg_backend_pid()"
)


def cpu_seconds(pids: list[int]) -> float:
    """User plus system CPU time of these processes so far (one that ended counts 0)."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / TICKS_PER_SECOND


class CpuMeter:
    """CPU per request of each side of a paired HTTP figure, slice by slice."""

    def __init__(self, server: Server, database_url: str) -> None:
        self.server = server
        self.database_url = database_url
        self.slices: dict[str, list[dict[str, float]]] = {}

    def around(self, side: str, load: Callable[[], LoadResult]) -> Callable[[], LoadResult]:
        """``load``, measured: each call adds one slice's CPU per request to ``side``."""

        def measured() -> LoadResult:
            app, postgres = self.server.worker_pids(), self._backends()
            app_before, postgres_before = cpu_seconds(app), cpu_seconds(postgres)
            result = load()
            spent_app = cpu_seconds(app) - app_before
            spent_postgres = cpu_seconds(postgres) - postgres_before
            requests = max(result.requests, 1)
            self.slices.setdefault(side, []).append(
                {
                    "app_us": round(spent_app / requests * 1e6),
                    "postgres_us": round(spent_postgres / requests * 1e6),
                }
            )
            return result

        return measured

    def medians(self) -> dict[str, dict[str, float]]:
        """Each side's median slice, per measure."""
        return {
            side: {key: statistics.median(s[key] for s in slices) for key in slices[0]}
            for side, slices in self.slices.items()
        }

    def _backends(self) -> list[int]:
        with psycopg.connect(self.database_url) as conn:
            return [pid for (pid,) in conn.execute(BACKENDS).fetchall()]
